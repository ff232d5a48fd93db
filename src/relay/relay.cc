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
#include "protocol/msgpack_io.hpp"
#include "protocol/peer_session.hpp"

// Draft in libzmq 4.3 (set at run time; a libzmq without it answers EINVAL and the relay falls
// back to timeouts).
#ifndef ZMQ_ROUTER_NOTIFY
#define ZMQ_ROUTER_NOTIFY 97
#define ZMQ_NOTIFY_CONNECT 1
#define ZMQ_NOTIFY_DISCONNECT 2
#endif

namespace lrts::relay {

namespace {

constexpr size_t kBatchBytes = 1u << 20;  // an upstream batch is sent once it holds this much
constexpr size_t kBatchItems = 4096;
constexpr size_t kMaxSubs = 1'000'000;
// Upstream silent this long (no RELAY_ACK): try the next address.
constexpr Duration kMinUpstreamSilence = seconds(10);
// A worker's memory figure changes all the time: sent with its other changes, or this often.
constexpr Duration kMemoryEvery = seconds(10);

// A worker (or relay) connected here.
struct Sub {
  std::string routing_id;
  std::string identity;  // its member name (--auth)
  bool relay = false;    // its key is a relay's
  TimePoint last_heard{};
  TimePoint last_ack{};
  uint32_t told_ms = 0;
  protocol::RelayBeat beat;  // its last heartbeat
  protocol::RelayBeat sent;  // as last summarised
  TimePoint memory_sent{};
  bool has_beat = false;
  bool changed = false;  // listed in changed_
  // The scheduler welcomed it through this relay's current upstream connection. Until then its
  // heartbeats go up (the scheduler answers "hello required" to a worker it does not know
  // here: one that came from a relay that died, or whose welcome went down another link).
  bool welcomed = false;
};

// The type of a message, read from its first elements without decoding the rest.
int peek_type(std::string_view bytes) {
  protocol::mp::Reader r(bytes);
  const uint32_t n = r.array();
  if (!r.ok() || n < 2) return -1;
  if (r.uint() != protocol::kVersion || !r.ok()) return -1;
  const uint64_t type = r.uint_max(255);
  return r.ok() ? static_cast<int>(type) : -1;
}

class Relay {
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
    int notify = ZMQ_NOTIFY_DISCONNECT;
    notify_ = zmq_setsockopt(down_.get(), ZMQ_ROUTER_NOTIFY, &notify, sizeof notify) == 0;
    if (auto s = down_.bind(ep->zmq); !s) return fail(s.error());
    endpoint_ = down_.last_endpoint();
    net::raise_descriptor_limit();
    connect_upstream(Clock::now());
    uid_ = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
    LRTS_INFO(
        "relay {:016x} listening on {} for workers, carrying them to {} ({}); a worker that "
        "leaves is noticed {}",
        uid_, endpoint_, upstreams_[up_index_].zmq,
        upstreams_.size() > 1 ? "then the others listed" : "the only upstream",
        notify_ ? "when its connection ends" : "after its timeout (no ROUTER_NOTIFY here)");
    return loop();
  }

 private:
  int fail(const std::string& text) {
    LRTS_ERROR("{}", text);
    return 2;
  }

  // A new upstream connection (or scheduler run) knows none of our workers: their heartbeats
  // go up until each is welcomed again.
  void forget_welcomes() {
    for (auto& [sub, s] : subs_) s.welcomed = false;
  }

  void connect_upstream(TimePoint now) {
    forget_welcomes();
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
    if (auto s = up_.connect(ep.zmq); !s) LRTS_ERROR("upstream {}: {}", ep.zmq, s.error());
    up_since_ = now;
  }

  Duration upstream_silence() const {
    return std::max<Duration>(kMinUpstreamSilence, 3 * milliseconds(summary_ms_));
  }

  int loop() {
    listener_ = std::make_unique<net::ListenerGuard>(ctx_, down_, endpoint_);
    SignalPipe signals{SIGINT, SIGTERM};
    net::ZmqFrame identity, payload, extra;
    TimePoint next_summary = Clock::now();
    TimePoint next_sweep = Clock::now() + seconds(1);
    TimePoint next_stats = Clock::now() + options_.stats_interval;
    for (;;) {
      TimePoint now = Clock::now();
      TimePoint deadline = std::min({next_summary, next_sweep, next_stats,
                                     listener_->next_deadline(), up_guard_->next_deadline()});
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
                    sig == SIGINT ? "SIGINT" : "SIGTERM", subs_.size());
          return 0;
        }
      }
      if (items[3].revents & ZMQ_POLLIN) listener_->on_readable(now);
      listener_->on_tick(now);
      if (items[4].revents & ZMQ_POLLIN) up_guard_->on_readable(now);
      up_guard_->on_tick(now);
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
      flush_up();
      for (int n = 0; n < 1024 && up_.recv(payload); ++n) from_upstream(payload.view(), now);
      if (now >= next_sweep) {
        next_sweep = now + seconds(1);
        sweep(now);
      }
      if (now >= next_summary) {
        next_summary = now + milliseconds(summary_ms_);
        send_summary(now);
      }
      if (now - std::max(up_heard_, up_since_) > upstream_silence()) {
        up_index_ = (up_index_ + 1) % upstreams_.size();
        LRTS_WARN("no answer from upstream for {} s; trying {}",
                  to_ms(now - std::max(up_heard_, up_since_)) / 1000, upstreams_[up_index_].zmq);
        connect_upstream(now);
      }
      if (now >= next_stats) {
        next_stats = now + options_.stats_interval;
        LRTS_INFO(
            "stats: {} worker(s); {} message(s) up in {} batch(es), {} down; {} heartbeat(s) "
            "absorbed; {} worker(s) gone",
            subs_.size(), up_messages_, up_batches_, down_messages_, heartbeats_, gone_total_);
      }
    }
  }

  void from_worker(std::string_view routing_id, net::ZmqFrame& payload, TimePoint now) {
    if (payload.size() == 0) {
      // ROUTER_NOTIFY: this connection ended.
      if (auto it = sub_by_id_.find(std::string(routing_id)); it != sub_by_id_.end()) {
        drop_sub(it->second);
      }
      return;
    }
    const net::Member* member = nullptr;
    if (auth_) {
      member = auth_->member_of(payload, now);
      if (!member) return;  // revoked since it connected
      if (member->role != net::Role::kWorker && member->role != net::Role::kRelay) {
        refuse(routing_id, "only worker and relay keys connect to a relay");
        return;
      }
    }
    const std::string rid(routing_id);
    auto it = sub_by_id_.find(rid);
    uint32_t sub;
    if (it == sub_by_id_.end()) {
      if (subs_.size() >= kMaxSubs) return refuse(routing_id, "this relay holds the most workers");
      sub = next_sub_++;
      if (next_sub_ == 0) next_sub_ = 1;
      Sub& s = subs_[sub];
      s.routing_id = rid;
      if (member) {
        s.identity = member->name;
        s.relay = member->role == net::Role::kRelay;
      }
      sub_by_id_.emplace(rid, sub);
    } else {
      sub = it->second;
    }
    Sub& s = subs_[sub];
    s.last_heard = now;  // anything a worker sends counts as a heartbeat
    const int type = peek_type(payload.view());
    if (type == static_cast<int>(protocol::MsgType::kWorkerHeartbeat) && s.welcomed) {
      auto m = protocol::decode<protocol::ToScheduler>(payload.view(), options_.max_message_bytes);
      if (m && std::holds_alternative<protocol::WorkerHeartbeat>(*m)) {
        const auto& hb = std::get<protocol::WorkerHeartbeat>(*m);
        ++heartbeats_;
        s.beat = {sub, hb.capacity, hb.running, hb.memory_bytes, hb.draining};
        s.has_beat = true;
        const bool differs = s.beat.capacity != s.sent.capacity ||
                             s.beat.running != s.sent.running || s.beat.draining != s.sent.draining;
        const bool memory =
            s.beat.memory_bytes != s.sent.memory_bytes && now - s.memory_sent >= kMemoryEvery;
        if ((differs || memory) && !s.changed) {
          s.changed = true;
          changed_.push_back(sub);
        }
        ack_heartbeat(s, now);
        return;
      }
      // Malformed: the scheduler answers it.
    }
    if ((type == static_cast<int>(protocol::MsgType::kRelayed) ||
         type == static_cast<int>(protocol::MsgType::kRelaySummary)) &&
        auth_ && !s.relay) {
      return refuse(routing_id, "this key is not a relay key: it cannot relay workers");
    }
    up_batch_.push_back({sub, s.identity, s.relay || !auth_, std::string(payload.view())});
    up_bytes_ += payload.size();
    ++up_messages_;
    if (up_bytes_ >= kBatchBytes || up_batch_.size() >= kBatchItems) flush_up();
  }

  // The relay answers heartbeats as the scheduler would: one in ten, or at once with a new
  // interval.
  void ack_heartbeat(Sub& s, TimePoint now) {
    if (epoch_ == 0) return;  // not heard from the scheduler yet
    if (s.told_ms == worker_hb_ms_ &&
        now - s.last_ack < protocol::kHeartbeatAckEvery * milliseconds(worker_hb_ms_)) {
      return;
    }
    s.told_ms = worker_hb_ms_;
    s.last_ack = now;
    buf_.clear();
    protocol::encode(protocol::HeartbeatAck{epoch_, worker_hb_ms_}, buf_);
    if (down_.send_to(s.routing_id, buf_) == net::SendResult::kUnreachable) {
      // It went away between its heartbeat and our answer.
    }
  }

  void refuse(std::string_view routing_id, std::string_view text) {
    uint64_t suppressed = 0;
    if (log_limit_.allow(std::string(text), Clock::now(), &suppressed)) {
      LRTS_WARN("refused a peer: {}{}", text,
                suppressed ? " (" + std::to_string(suppressed) + " more not logged)" : "");
    }
    buf_.clear();
    protocol::encode(protocol::ErrorMsg{protocol::ErrorCode::kForbidden, text}, buf_);
    (void)down_.send_to(routing_id, buf_);
  }

  struct UpItem {
    uint32_t sub;
    std::string identity;
    bool relay;
    std::string message;
  };

  void flush_up() {
    if (up_batch_.empty()) return;
    protocol::Relayed r;
    r.items.reserve(up_batch_.size());
    for (const auto& i : up_batch_) r.items.push_back({i.sub, i.identity, i.relay, i.message});
    buf_.clear();
    protocol::encode(r, buf_);
    send_up(buf_);
    ++up_batches_;
    up_batch_.clear();
    up_bytes_ = 0;
  }

  void send_up(std::string_view bytes) {
    if (up_.send(bytes) != net::SendResult::kSent) {
      uint64_t suppressed = 0;
      if (log_limit_.allow("up full", Clock::now(), &suppressed)) {
        LRTS_WARN("upstream not reachable: messages dropped (workers send them again){}",
                  suppressed ? " (" + std::to_string(suppressed) + " more times)" : "");
      }
    }
  }

  void from_upstream(std::string_view bytes, TimePoint now) {
    auto m = protocol::decode<protocol::ToRelay>(bytes, options_.max_message_bytes + (1u << 20));
    if (!m) {
      uint64_t suppressed = 0;
      if (log_limit_.allow("bad up", now, &suppressed)) {
        LRTS_WARN("dropped a bad message from upstream: {}", m.error().text);
      }
      return;
    }
    up_heard_ = now;
    if (const auto* down = std::get_if<protocol::RelayDown>(&*m)) {
      for (const auto& item : down->items) {
        auto it = subs_.find(item.sub);
        if (it == subs_.end()) continue;  // gone: the scheduler hears so in the summary
        ++down_messages_;
        if (peek_type(item.message) == static_cast<int>(protocol::MsgType::kWorkerWelcome)) {
          it->second.welcomed = true;
        }
        if (down_.send_to(it->second.routing_id, item.message) == net::SendResult::kUnreachable) {
          drop_sub(item.sub);
        }
      }
    } else if (const auto* ack = std::get_if<protocol::RelayAck>(&*m)) {
      if (epoch_ != ack->scheduler_epoch && epoch_ != 0) {
        LRTS_INFO("the scheduler restarted (new epoch): its workers say hello again");
        forget_welcomes();
      }
      epoch_ = ack->scheduler_epoch;
      if (ack->heartbeat_ms) summary_ms_ = ack->heartbeat_ms;
      if (ack->worker_heartbeat_ms) worker_hb_ms_ = ack->worker_heartbeat_ms;
      if (ack->worker_timeout_ms) worker_timeout_ = milliseconds(ack->worker_timeout_ms);
    } else if (const auto* err = std::get_if<protocol::ErrorMsg>(&*m)) {
      uint64_t suppressed = 0;
      if (log_limit_.allow("error " + std::to_string(static_cast<int>(err->code)), now,
                           &suppressed)) {
        LRTS_ERROR("upstream: {}", err->text);
      }
    }
  }

  void drop_sub(uint32_t sub) {
    auto it = subs_.find(sub);
    if (it == subs_.end()) return;
    sub_by_id_.erase(it->second.routing_id);
    subs_.erase(it);
    gone_.push_back(sub);
    ++gone_total_;
  }

  // Workers silent past their timeout are gone (with ROUTER_NOTIFY, those whose connection
  // ended are gone already).
  void sweep(TimePoint now) {
    const Duration limit = worker_timeout_;
    std::vector<uint32_t> silent;
    for (const auto& [sub, s] : subs_) {
      if (now - s.last_heard > limit) silent.push_back(sub);
    }
    for (uint32_t sub : silent) drop_sub(sub);
  }

  void send_summary(TimePoint now) {
    protocol::RelaySummary m;
    m.relay_uid = uid_;
    m.workers = static_cast<uint32_t>(subs_.size());
    size_t taken = 0;
    for (; taken < changed_.size() && m.beats.size() < kBatchItems * 4; ++taken) {
      auto it = subs_.find(changed_[taken]);
      if (it == subs_.end()) continue;
      Sub& s = it->second;
      s.changed = false;
      if (s.beat.memory_bytes != s.sent.memory_bytes) s.memory_sent = now;
      s.sent = s.beat;
      m.beats.push_back(s.beat);
    }
    changed_.erase(changed_.begin(), changed_.begin() + static_cast<std::ptrdiff_t>(taken));
    const size_t n_gone = std::min<size_t>(gone_.size(), protocol::kMaxRelayItems);
    m.gone.assign(gone_.begin(), gone_.begin() + static_cast<std::ptrdiff_t>(n_gone));
    gone_.erase(gone_.begin(), gone_.begin() + static_cast<std::ptrdiff_t>(n_gone));
    buf_.clear();
    protocol::encode(m, buf_);
    send_up(buf_);
  }

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
  TimePoint up_heard_{};
  std::string endpoint_;
  bool notify_ = false;
  uint64_t uid_ = 0;
  // What the scheduler said in its last RELAY_ACK.
  uint64_t epoch_ = 0;
  uint32_t summary_ms_ = 1000;
  uint32_t worker_hb_ms_ = 1000;
  Duration worker_timeout_ = seconds(10);

  std::unordered_map<uint32_t, Sub> subs_;
  std::unordered_map<std::string, uint32_t> sub_by_id_;
  uint32_t next_sub_ = 1;
  std::vector<uint32_t> changed_;
  std::vector<uint32_t> gone_;
  std::vector<UpItem> up_batch_;
  size_t up_bytes_ = 0;
  std::string buf_;
  uint64_t up_messages_ = 0, up_batches_ = 0, down_messages_ = 0, heartbeats_ = 0, gone_total_ = 0;
  LogLimiter log_limit_{seconds(60), 1, 64};
};

}  // namespace

int run_relay(const RelayOptions& options) { return Relay(options).run(); }

}  // namespace lrts::relay
