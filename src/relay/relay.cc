#include "relay/relay.hpp"

#include <signal.h>
#include <zmq.h>

#include <algorithm>
#include <memory>
#include <random>
#include <unordered_map>

#include "common/log.hpp"
#include "common/log_limit.hpp"
#include "common/signals.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/listener.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "relay/relay_core.hpp"

namespace lrts::relay {

namespace {

class Relay final : public RelayLink {
 public:
  explicit Relay(const RelayOptions& o) : options_(o) {}

  int run() {
    auto ep = net::bind_endpoint(options_.address, options_.port);
    if (!ep) return fail(ep.error());
    if (auto s = net::check_exposure(options_.address, !options_.auth_dir.empty(),
                                     options_.insecure, "relay");
        !s) {
      return fail(s.error());
    }
    std::string up_list;
    for (const auto& u : options_.upstream) up_list += (up_list.empty() ? "" : ",") + u;
    auto ups = net::connect_endpoints(up_list, options_.upstream_port);
    if (!ups) return fail("--scheduler-address: " + ups.error());
    upstreams_ = std::move(*ups);
    if (!options_.auth_dir.empty()) {
      auto auth = net::Authenticator::create(ctx_, options_.auth_dir);
      if (!auth) return fail(auth.error());
      auth_ = std::move(*auth);
      auto client = net::load_client_auth(options_.auth_dir, net::Role::kRelay);
      if (!client) return fail(client.error());
      client_auth_ = std::make_unique<net::ClientAuth>(std::move(*client));
      auth_->secure_server(down_);
    }
    down_.set_int(ZMQ_ROUTER_MANDATORY, 1);
    down_.set_int(ZMQ_BACKLOG, 4096);
    down_.set_int(ZMQ_SNDHWM, 100000);
    down_.set_int(ZMQ_RCVHWM, 100000);
    down_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    const int64_t max_msg = static_cast<int64_t>(options_.max_message_bytes) + 1024;
    zmq_setsockopt(down_.get(), ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
    if (auto s = down_.bind(ep->zmq); !s) return fail(s.error());
    endpoint_ = down_.last_endpoint();
    net::raise_descriptor_limit();
    uid_ = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
    core_ = std::make_unique<RelayCore>(RelayCoreOptions{uid_, options_.max_message_bytes}, *this);
    connect_upstream(Clock::now());
    LRTS_INFO(
        "relay {:016x} listening on {} for workers, carrying them to {} ({}); a worker that "
        "leaves is noticed {}",
        uid_, endpoint_, upstreams_[up_index_].zmq,
        upstreams_.size() > 1 ? "then the others listed" : "the only upstream",
        "when its connection ends");
    return loop();
  }

 private:
  int fail(const std::string& text) {
    LRTS_ERROR("{}", text);
    return 2;
  }

  // RelayLink
  bool to_worker(std::string_view routing_id, std::string_view bytes) override {
    return down_.send_to(routing_id, bytes) != net::SendResult::kUnreachable;
  }
  void to_upstream(std::string_view bytes) override {
    if (up_.send(bytes) != net::SendResult::kSent) {
      uint64_t suppressed = 0;
      if (log_limit_.allow("up full", Clock::now(), &suppressed)) {
        LRTS_WARN("upstream not reachable: messages dropped (workers send them again){}",
                  suppressed ? " (" + std::to_string(suppressed) + " more times)" : "");
      }
    }
  }

  void connect_upstream(TimePoint now) {
    core_->new_upstream();
    up_guard_.reset();
    up_ = net::ZmqSocket(ctx_, ZMQ_DEALER);
    const net::Endpoint& ep = upstreams_[up_index_];
    up_.set_int(ZMQ_IPV6, ep.ipv6 ? 1 : 0);
    up_.set_int(ZMQ_SNDHWM, 10000);  // what cannot go is dropped: workers send it again
    up_.set_int(ZMQ_RCVHWM, 0);
    up_.set_int(ZMQ_RECONNECT_IVL, 100);
    up_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    up_.set_int(ZMQ_LINGER, 0);
    if (client_auth_) net::secure_client(up_, *client_auth_);
    up_guard_ = std::make_unique<net::HandshakeGuard>(ctx_, up_, ep.zmq, "the upstream");
    up_reconnects_seen_ = 0;
    if (auto s = up_.connect(ep.zmq); !s) LRTS_ERROR("upstream {}: {}", ep.zmq, s.error());
    up_since_ = now;
  }

  int loop() {
    listener_ = std::make_unique<net::ListenerGuard>(ctx_, down_, endpoint_,
                                                     /*track_disconnects=*/true);
    SignalPipe signals{SIGINT, SIGTERM};
    net::ZmqFrame identity, payload, extra;
    TimePoint next_stats = Clock::now() + options_.stats_interval;
    for (;;) {
      TimePoint now = Clock::now();
      TimePoint deadline = std::min({core_->next_deadline(), next_stats, listener_->next_deadline(),
                                     up_guard_->next_deadline(), failover_deadline()});
      if (auth_) deadline = std::min(deadline, auth_->next_deadline());
      const long timeout = std::max<long>(0, to_ms(deadline - now) + 1);
      void* zap = auth_ ? auth_->socket() : nullptr;
      void* lmon = listener_->monitor_socket();
      void* umon = up_guard_->monitor_socket();
      zmq_pollitem_t items[6] = {{down_.get(), 0, ZMQ_POLLIN, 0},
                                 {up_.get(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                                 {lmon, lmon ? 0 : -1, lmon ? short{ZMQ_POLLIN} : short{0}, 0},
                                 {umon, umon ? 0 : -1, umon ? short{ZMQ_POLLIN} : short{0}, 0},
                                 {zap, zap ? 0 : -1, zap ? short{ZMQ_POLLIN} : short{0}, 0}};
      if (zmq_poll(items, 6, timeout) < 0 && zmq_errno() != EINTR) {
        LRTS_ERROR("poll failed: {}", net::zmq_error_text());
        return 1;
      }
      now = Clock::now();
      if (items[2].revents & ZMQ_POLLIN) {
        for (int sig : signals.drain()) {
          LRTS_INFO("received {}; relay stopping ({} worker(s) reconnect elsewhere)",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", core_->workers());
          return 0;
        }
      }
      // Connections that ended: named now (a descriptor reused by a new connection is mapped
      // to it only by the messages that follow), ended after this round's messages (what a
      // worker said last, its goodbye, goes up first).
      if (items[3].revents & ZMQ_POLLIN) listener_->on_readable(now);
      ended_.clear();
      for (int fd : listener_->take_disconnected()) {
        if (auto it = id_by_fd_.find(fd); it != id_by_fd_.end()) {
          ended_.push_back(std::move(it->second));
          id_by_fd_.erase(it);
        }
      }
      listener_->on_tick(now);
      if (items[4].revents & ZMQ_POLLIN) up_guard_->on_readable(now);
      up_guard_->on_tick(now);
      if (up_guard_->reconnects() != up_reconnects_seen_) {
        up_reconnects_seen_ = up_guard_->reconnects();  // libzmq reconnected upstream
        core_->new_upstream();
      }
      if (auth_) {
        if (items[5].revents & ZMQ_POLLIN) auth_->on_readable(now);
        auth_->on_tick(now);
      }
      for (int n = 0; n < 4096; ++n) {
        if (!down_.recv(identity)) break;
        if (!identity.more()) continue;
        if (!down_.recv(payload)) break;
        bool more = payload.more();
        while (more && down_.recv(extra)) more = extra.more();
        from_worker(identity.view(), payload, now);
      }
      core_->flush();
      for (const auto& id : ended_) core_->connection_ended(id);
      for (int n = 0; n < 1024 && up_.recv(payload); ++n) core_->from_upstream(payload.view(), now);
      core_->on_tick(now);
      if (now >= failover_deadline()) {
        const std::string from = upstreams_[up_index_].zmq;
        up_index_ = (up_index_ + 1) % upstreams_.size();
        LRTS_WARN("{} {}; trying {}",
                  up_guard_->link_up() ? "no answer from upstream" : "no link to upstream", from,
                  upstreams_[up_index_].zmq);
        connect_upstream(now);
      }
      if (now >= next_stats) {
        next_stats = now + options_.stats_interval;
        const RelayStats& st = core_->stats();
        LRTS_INFO(
            "stats: {} worker(s); {} message(s) up in {} batch(es), {} down; {} heartbeat(s) "
            "absorbed; {} worker(s) gone",
            core_->workers(), st.up_messages, st.up_batches, st.down_messages, st.heartbeats,
            st.gone);
      }
    }
  }

  // The next upstream address is tried when this one says nothing for upstream_silence(), or,
  // with several listed, when the link has been down kFailoverDown.
  TimePoint failover_deadline() const {
    const TimePoint silent =
        std::max(core_->upstream_heard(), up_since_) + core_->upstream_silence();
    if (upstreams_.size() < 2 || up_guard_->link_up()) return silent;
    return std::min(silent, std::max(up_guard_->down_since(), up_since_) + kFailoverDown);
  }

  void from_worker(std::string_view routing_id, net::ZmqFrame& payload, TimePoint now) {
    // Which connection it came on, to learn when that connection ends.
    if (const int fd = zmq_msg_get(payload.raw(), ZMQ_SRCFD); fd >= 0) {
      auto [it, fresh] = id_by_fd_.try_emplace(fd, routing_id);
      if (!fresh && it->second != routing_id) it->second.assign(routing_id);
    }
    Sender from{{}, true};
    if (auth_) {
      const net::Member* member = auth_->member_of(payload, now);
      if (!member) return;  // revoked since it connected
      if (member->role != net::Role::kWorker && member->role != net::Role::kRelay) {
        return core_->refuse(routing_id, "only worker and relay keys connect to a relay", now);
      }
      from.identity = member->name;
      from.relay = member->role == net::Role::kRelay;
    }
    core_->from_worker(routing_id, payload.view(), from, now);
  }

  static constexpr Duration kFailoverDown = seconds(2);

  RelayOptions options_;
  net::ZmqContext ctx_;
  std::unique_ptr<net::Authenticator> auth_;  // before the sockets: it answers their handshakes
  std::unique_ptr<net::ClientAuth> client_auth_;
  net::ZmqSocket down_{ctx_, ZMQ_ROUTER};
  net::ZmqSocket up_{ctx_, ZMQ_DEALER};
  std::unique_ptr<net::HandshakeGuard> up_guard_;
  std::unique_ptr<net::ListenerGuard> listener_;
  std::vector<net::Endpoint> upstreams_;
  size_t up_index_ = 0;
  TimePoint up_since_{};
  std::string endpoint_;
  std::unordered_map<int, std::string> id_by_fd_;  // connection descriptor -> routing id
  std::vector<std::string> ended_;                 // connections that ended this round
  uint64_t up_reconnects_seen_ = 0;
  uint64_t uid_ = 0;
  std::unique_ptr<RelayCore> core_;
  LogLimiter log_limit_{seconds(60), 1, 64};
};

}  // namespace

int run_relay(const RelayOptions& options) { return Relay(options).run(); }

}  // namespace lrts::relay
