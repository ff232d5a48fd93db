#include "client/progress_watch.hpp"

#include <nlohmann/json.hpp>

#include "net/endpoint.hpp"
#include "protocol/codec.hpp"

namespace lrts::client {

Result<std::unique_ptr<ProgressWatch>> ProgressWatch::open(const std::string& address, int port,
                                                           const std::string& auth_dir,
                                                           const std::string& application_id) {
  auto ep = net::connect_endpoint(address, port);
  if (!ep) return Error{ep.error()};
  std::unique_ptr<ProgressWatch> w(new ProgressWatch());
  w->application_id_ = application_id;
  w->sock_.set_int(ZMQ_LINGER, 0);
  w->sock_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
  w->sock_.set_int(ZMQ_SNDHWM, 2);
  w->sock_.set_int(ZMQ_RECONNECT_IVL, 200);
  if (!auth_dir.empty()) {
    auto auth = net::load_client_auth(auth_dir, net::Role::kAdmin);
    if (!auth) return Error{auth.error()};
    net::secure_client(w->sock_, *auth);
  }
  w->handshakes_ =
      std::make_unique<net::HandshakeGuard>(w->ctx_, w->sock_, ep->zmq, "the progress server");
  if (auto s = w->sock_.connect(ep->zmq); !s) return Error{s.error()};
  return w;
}

TimePoint ProgressWatch::next_deadline() const {
  return std::min(next_subscribe_, handshakes_->next_deadline());
}

void ProgressWatch::pump(TimePoint now) {
  handshakes_->on_readable(now);
  handshakes_->on_tick(now);
  if (now >= next_subscribe_) {
    protocol::Subscribe sub;
    sub.application_id = application_id_;
    sub.all = application_id_.empty();
    buf_.clear();
    protocol::encode(sub, buf_);
    sock_.send(buf_);
    next_subscribe_ = now + seconds(2);
  }
  net::ZmqFrame frame;
  for (int n = 0; n < 1024 && sock_.recv(frame); ++n) {
    auto decoded = protocol::decode<protocol::ToProgressSubscriber>(frame.view());
    if (!decoded) continue;
    const auto& update = std::get<protocol::ProgressUpdate>(*decoded);
    if (update.snapshot) in_snapshot_ = true;
    for (const auto& b : update.bars) store(b);
    ++updates_;
    if (in_snapshot_ && !update.more) {
      answered_ = true;
      in_snapshot_ = false;
    }
  }
}

void ProgressWatch::store(const protocol::BarState& b) {
  auto it = bars_.find(b.key);
  if (it == bars_.end()) {
    if (bars_.size() >= kMaxTasks) {
      // Full: forget a task whose bars are all closed (or, failing that, any).
      auto victim = bars_.begin();
      for (auto i = bars_.begin(); i != bars_.end(); ++i) {
        bool open = false;
        for (const auto& x : i->second) open |= !x.closed();
        if (!open) {
          victim = i;
          break;
        }
      }
      bars_.erase(victim);
    }
    it = bars_.emplace(b.key, std::vector<protocol::BarState>{}).first;
  }
  auto& v = it->second;
  if (!v.empty() && b.attempt > v.front().attempt) v.clear();  // a new attempt's bars
  if (!v.empty() && b.attempt < v.front().attempt) return;     // an older attempt's, late
  for (auto& x : v) {
    if (x.bar_no == b.bar_no) {
      x = b;
      return;
    }
  }
  if (v.size() < 256) v.push_back(b);
}

const std::vector<protocol::BarState>* ProgressWatch::bars_of(const protocol::TaskKey& key) const {
  auto it = bars_.find(key);
  return it == bars_.end() ? nullptr : &it->second;
}

namespace {

const char* phase_label(protocol::BarPhase p) {
  switch (p) {
    case protocol::BarPhase::kOpen:
      return "open";
    case protocol::BarPhase::kTimedOut:
      return "timed_out";
    default:
      return protocol::phase_name(p);
  }
}

}  // namespace

std::string bar_json(const protocol::BarState& b) {
  nlohmann::json j{{"bar", b.bar_no},
                   {"attempt", b.attempt},
                   {"description", b.description},
                   {"unit", b.unit},
                   {"count", b.count},
                   {"total", b.total},
                   {"phase", phase_label(b.phase)},
                   {"rate", b.rate},
                   {"eta_s", b.eta_seconds >= 0 ? nlohmann::json(b.eta_seconds) : nullptr},
                   {"elapsed_s", static_cast<double>(b.elapsed_ms) / 1000.0}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace lrts::client
