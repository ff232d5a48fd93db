#include "tui/viewer.hpp"

#include <signal.h>

#include <memory>

#include "common/log.hpp"
#include "common/signals.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/progress_messages.hpp"
#include "tui/view.hpp"

namespace lrts::tui {

int run_viewer(const ViewerOptions& options) {
  auto ep = net::connect_endpoint(options.address, options.port);
  if (!ep) {
    std::fprintf(stderr, "lrts progress: %s\n", ep.error().c_str());
    return 2;
  }
  SignalPipe signals{SIGINT, SIGTERM};
  net::ZmqContext ctx;
  net::ZmqSocket sock(ctx, ZMQ_DEALER);
  sock.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
  sock.set_int(ZMQ_SNDHWM, 2);  // subscriptions wait for the server; at most two queue
  sock.set_int(ZMQ_RECONNECT_IVL, 200);
  if (!options.auth_dir.empty()) {
    auto auth = net::load_client_auth(options.auth_dir, net::Role::kViewer);
    if (!auth) {
      std::fprintf(stderr, "lrts progress: %s\n", auth.error().c_str());
      return 2;
    }
    net::secure_client(sock, *auth);
  }
  auto handshakes =
      std::make_unique<net::HandshakeGuard>(ctx, sock, ep->zmq, "the progress server");
  if (auto s = sock.connect(ep->zmq); !s) {
    std::fprintf(stderr, "lrts progress: %s\n", s.error().c_str());
    return 2;
  }
  ViewOptions vo;
  vo.fd = 1;
  vo.capture_output = false;
  TerminalView view(vo);
  view.set_stage(options.application_id.empty() ? "Watching " + ep->zmq
                                                : "Watching application " + options.application_id);
  view.count_bars(true);
  view.set_connection("connecting to the progress server at " + ep->zmq + " ...");
  view.start();
  // The server answers every subscription with a snapshot (empty or not): until one comes, say
  // so, and after a few seconds say that nothing answers.
  bool answered = false;
  const TimePoint give_notice = Clock::now() + seconds(3);
  bool noticed = false;

  protocol::Subscribe sub;
  sub.application_id = options.application_id;
  sub.all = options.application_id.empty();
  std::string buf;
  const TimePoint end =
      options.run_for.count() > 0 ? Clock::now() + options.run_for : TimePoint::max();
  TimePoint next_subscribe = Clock::now();
  net::ZmqFrame frame;
  for (;;) {
    TimePoint now = Clock::now();
    if (now >= end) break;
    if (now >= next_subscribe) {
      buf.clear();
      protocol::encode(sub, buf);
      sock.send(buf);  // renewed, so a restarted server learns of us again
      next_subscribe = now + seconds(2);
    }
    if (!answered && !noticed && now >= give_notice) {
      noticed = true;
      view.set_connection("no progress server answers at " + ep->zmq +
                          " (is `lrts progress-server` running there?)");
    }
    TimePoint deadline = std::min(next_subscribe, end);
    if (!answered && !noticed) deadline = std::min(deadline, give_notice);
    if (handshakes) deadline = std::min(deadline, handshakes->next_deadline());
    void* mon = handshakes ? handshakes->monitor_socket() : nullptr;
    zmq_pollitem_t items[3] = {{sock.get(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                               {mon, mon ? 0 : -1, mon ? short{ZMQ_POLLIN} : short{0}, 0}};
    if (zmq_poll(items, 3, std::max<long>(0, to_ms(deadline - now) + 1)) < 0 &&
        zmq_errno() != EINTR) {
      break;
    }
    if (handshakes) {
      if (items[2].revents & ZMQ_POLLIN) {
        const uint64_t before = handshakes->failures();
        handshakes->on_readable(Clock::now());
        if (handshakes->failures() != before) {
          view.set_connection("the progress server at " + ep->zmq +
                              " refused this key or did not complete a secure handshake "
                              "(check --auth); trying again");
        }
      }
      handshakes->on_tick(Clock::now());
    }
    if (items[1].revents & ZMQ_POLLIN) {
      bool stop = false;
      for (int sig : signals.drain()) stop |= sig == SIGINT || sig == SIGTERM;
      if (stop) break;
    }
    while (sock.recv(frame)) {
      auto decoded = protocol::decode<protocol::ToProgressSubscriber>(frame.view());
      if (!decoded) continue;
      const auto& update = std::get<protocol::ProgressUpdate>(*decoded);
      if (!answered) {
        answered = true;
        view.set_connection("");
      }
      std::vector<ProgressSnapshot> changed;
      for (const auto& b : update.bars) {
        changed.push_back(to_snapshot(b));
      }
      view.update(changed);
    }
  }
  view.stop();
  if (!answered) {
    std::fprintf(stderr, "lrts progress: no progress server answered at %s\n", ep->zmq.c_str());
    return 1;
  }
  return 0;
}

}  // namespace lrts::tui
