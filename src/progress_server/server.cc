#include "progress_server/server.hpp"

#include <signal.h>

#include <algorithm>
#include <list>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "common/log.hpp"
#include "common/log_limit.hpp"
#include "common/metrics.hpp"
#include "common/signals.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/http_server.hpp"
#include "net/listener.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::progress_server {

namespace {

constexpr size_t kMaxBarsPerUpdate = 4096;
// Every table a peer can grow is bounded: subscribers (each with at most
// kMaxSubscribedSessions sessions), the session -> application map (least recently heard of
// forgotten first), and workers (silent ones forgotten).
constexpr size_t kMaxSubscribers = 10'000;
constexpr size_t kMaxOwners = 1u << 18;
constexpr size_t kMaxWorkers = 100'000;

struct Subscriber {
  std::string key;  // with --auth, an application key: it sees only its applications' bars
  std::string application_id;
  std::unordered_set<uint64_t> sessions;
  bool all = false;
  TimePoint last_seen{};
};

}  // namespace

struct ProgressServer::Impl {
  ProgressServerOptions options;
  net::ZmqContext ctx;
  std::unique_ptr<net::Authenticator> auth;
  net::ZmqSocket router{ctx, ZMQ_ROUTER};
  std::string endpoint;
  uint64_t epoch = 0;
  ProgressStore store;
  std::unordered_map<std::string, Subscriber> subscribers;
  // The application of each session, from workers (who learn it with each task) and from
  // applications' subscriptions: for viewers that ask for one application's tasks.
  struct Owner {
    std::string app;
    std::list<uint64_t>::iterator order;
    // With --auth: the worker keys that named this session (they run its tasks); only they may
    // send its bars.
    std::vector<std::string> named_by;
  };
  static constexpr size_t kMaxNamers = 64;
  std::unordered_map<uint64_t, Owner> owners;
  std::list<uint64_t> owner_order;  // least recently heard of first
  // With --auth: the application key each session belongs to, from that key's own
  // subscriptions (an application lists its sessions, random 64-bit ids only it and the workers
  // running its tasks know); the first claim stands. Kept apart from `owners` so that workers
  // naming sessions cannot push claims out.
  struct Claim {
    std::string key;
    std::string app;
    std::list<uint64_t>::iterator order;
  };
  std::unordered_map<uint64_t, Claim> claims;
  std::list<uint64_t> claim_order;  // least recently renewed first
  // Workers by name: when one goes silent, its open bars end lost.
  struct Source {
    uint32_t id = 0;
    TimePoint last_seen{};
  };
  std::unordered_map<std::string, Source> workers;
  uint32_t next_source = 1;
  TimePoint next_worker_check = TimePoint::max();
  std::string buf;
  TimePoint next_push = TimePoint::max();
  TimePoint next_subscriber_check = TimePoint::max();
  uint64_t batches = 0;
  uint64_t bad = 0;
  net::PublishedText metrics_text;
  std::unique_ptr<net::HttpServer> metrics;  // --metrics-port
  TimePoint next_metrics = TimePoint::max();
  std::string render_metrics() const {
    metrics::TextWriter w;
    w.counter("lrts_progress_batches_received_total", "Progress batches received from workers.",
              static_cast<double>(batches));
    w.counter("lrts_bad_messages_total", "Messages dropped as malformed.",
              static_cast<double>(bad));
    w.gauge("lrts_progress_bars", "Bars held.", static_cast<double>(store.size()));
    w.gauge("lrts_progress_subscribers", "Applications and viewers subscribed.",
            static_cast<double>(subscribers.size()));
    return w.take();
  }
  LogLimiter log_limiter;

  explicit Impl(const ProgressServerOptions& o) : options(o), store(o.store) {}

  bool wants(const Subscriber& s, uint64_t session) const {
    if (!s.key.empty()) {  // an application key: only sessions it claimed, whatever it asked
      auto c = claims.find(session);
      if (c == claims.end() || c->second.key != s.key) return false;
      if (s.all || s.sessions.count(session)) return true;
      return !s.application_id.empty() && c->second.app == s.application_id;
    }
    if (s.all) return true;
    if (s.sessions.count(session)) return true;
    if (s.application_id.empty()) return false;
    if (auto c = claims.find(session); c != claims.end() && !c->second.app.empty()) {
      return c->second.app == s.application_id;
    }
    auto it = owners.find(session);
    return it != owners.end() && it->second.app == s.application_id;
  }

  // A session's application as a worker (`by`, with --auth) or a subscriber names it.
  void learn_owner(uint64_t session, std::string_view app, const net::Member* by = nullptr) {
    auto it = owners.find(session);
    if (it != owners.end()) {
      owner_order.splice(owner_order.end(), owner_order, it->second.order);
      Owner& o = it->second;
      if (!by) {
        if (o.app != app) o.app.assign(app);
      } else if (std::find(o.named_by.begin(), o.named_by.end(), by->name) == o.named_by.end() &&
                 o.named_by.size() < kMaxNamers) {
        o.named_by.push_back(by->name);
      }
      return;
    }
    if (owners.size() >= kMaxOwners) {
      owners.erase(owner_order.front());
      owner_order.pop_front();
    }
    owner_order.push_back(session);
    Owner o{std::string(app), std::prev(owner_order.end()), {}};
    if (by) o.named_by.push_back(by->name);
    owners.emplace(session, std::move(o));
  }

  // An application key lists `session` in its subscription (--auth).
  void claim(uint64_t session, std::string_view app, const net::Member& by, TimePoint now) {
    auto it = claims.find(session);
    if (it != claims.end()) {
      if (it->second.key != by.name) {
        ++bad;
        uint64_t suppressed = 0;
        if (log_limiter.allow("claim " + by.name, now, &suppressed)) {
          LRTS_WARN("'{}' listed a session that belongs to another key: not shown to it", by.name);
        }
        return;
      }
      claim_order.splice(claim_order.end(), claim_order, it->second.order);
      if (!app.empty() && it->second.app != app) it->second.app.assign(app);
      return;
    }
    if (claims.size() >= kMaxOwners) {
      claims.erase(claim_order.front());
      claim_order.pop_front();
    }
    claim_order.push_back(session);
    claims.emplace(session, Claim{by.name, std::string(app), std::prev(claim_order.end())});
  }

  bool named(uint64_t session, const net::Member& m) const {
    auto it = owners.find(session);
    if (it == owners.end()) return false;
    const auto& by = it->second.named_by;
    return std::find(by.begin(), by.end(), m.name) != by.end();
  }

  uint32_t source_of(std::string_view worker, TimePoint now) {
    auto it = workers.find(std::string(worker));
    if (it == workers.end()) {
      if (workers.size() >= kMaxWorkers) return 0;  // unnamed: never marked lost
      it = workers.emplace(std::string(worker), Source{next_source++, now}).first;
    }
    it->second.last_seen = now;
    next_worker_check = std::min(next_worker_check, now + options.worker_silence);
    return it->second.id;
  }

  // Workers not heard from within worker_silence: their open bars end lost.
  void check_workers(TimePoint now) {
    next_worker_check = TimePoint::max();
    for (auto it = workers.begin(); it != workers.end();) {
      if (it->second.last_seen + options.worker_silence <= now) {
        if (const size_t n = store.mark_lost(it->second.id, now)) {
          LRTS_INFO("worker '{}' silent for {} s: its {} open bar(s) end lost", it->first,
                    to_ms(options.worker_silence) / 1000, n);
          if (next_push == TimePoint::max()) next_push = now;
        }
        it = workers.erase(it);
        continue;
      }
      next_worker_check =
          std::min(next_worker_check, it->second.last_seen + options.worker_silence);
      ++it;
    }
  }

  void send_update(const std::string& peer, std::vector<protocol::BarState>& bars, bool snapshot) {
    protocol::ProgressUpdate up;
    up.server_epoch = epoch;
    up.snapshot = snapshot;
    size_t i = 0;
    do {
      up.bars.clear();
      for (; i < bars.size() && up.bars.size() < kMaxBarsPerUpdate; ++i) {
        up.bars.push_back(std::move(bars[i]));
      }
      up.more = i < bars.size();
      buf.clear();
      protocol::encode(up, buf);
      router.send_to(peer, buf);
      up.snapshot = false;
    } while (i < bars.size());
  }

  // Drops a message its sender's key does not allow (logged now and then).
  void refuse(const net::Member& m, const char* what, TimePoint now) {
    ++bad;
    uint64_t suppressed = 0;
    if (log_limiter.allow(std::string("role ") + m.name, now, &suppressed)) {
      LRTS_WARN("refused '{}' ({} key): it may not {}", m.name, net::role_name(m.role), what);
    }
  }

  void on_message(const std::string& peer, std::string_view bytes, TimePoint now,
                  const net::Member* member) {
    auto msg = protocol::decode<protocol::ToProgressServer>(bytes, options.max_message_bytes);
    if (!msg) {
      ++bad;
      uint64_t suppressed = 0;
      if (log_limiter.allow(std::to_string(static_cast<int>(msg.error().code)), now, &suppressed)) {
        LRTS_WARN(
            "dropped a bad message: {}{}", msg.error().text,
            suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
      }
      return;
    }
    if (auto* batch = std::get_if<protocol::ProgressBatch>(&*msg)) {
      if (member && member->role != net::Role::kWorker) return refuse(*member, "send bars", now);
      for (const auto& o : batch->owners) learn_owner(o.session, o.application_id, member);
      // With --auth the worker's name is qualified by its key: a key cannot speak for workers
      // of another, and only sends bars of sessions it named (whose tasks it runs).
      const uint32_t source =
          source_of(member ? member->name + "/" + std::string(batch->worker) : batch->worker, now);
      for (const auto& b : batch->bars) {
        if (member && !named(b.key.session, *member)) {
          ++bad;
          continue;
        }
        store.apply(b, now, source);
      }
      ++batches;
      buf.clear();
      protocol::encode(protocol::ProgressAck{batch->batch_seq, epoch}, buf);
      router.send_to(peer, buf);
      if (store.has_changes() && next_push == TimePoint::max()) {
        next_push = now + options.push_interval;
      }
    } else if (auto* sub = std::get_if<protocol::Subscribe>(&*msg)) {
      if (member && member->role == net::Role::kWorker) return refuse(*member, "subscribe", now);
      if (subscribers.size() >= kMaxSubscribers && !subscribers.count(peer)) {
        uint64_t suppressed = 0;
        if (log_limiter.allow("subscribers", now, &suppressed)) {
          LRTS_WARN("{} subscribers already: a new one is refused", kMaxSubscribers);
        }
        return;
      }
      auto [it, fresh] = subscribers.try_emplace(peer);
      Subscriber& s = it->second;
      std::unordered_set<uint64_t> sessions(sub->sessions.begin(), sub->sessions.end());
      const bool changed = fresh || s.all != sub->all || s.sessions != sessions ||
                           s.application_id != sub->application_id;
      s.key = member && member->role == net::Role::kApplication ? member->name : std::string();
      s.application_id.assign(sub->application_id);
      s.sessions = std::move(sessions);
      s.all = sub->all;
      s.last_seen = now;
      next_subscriber_check = std::min(next_subscriber_check, now + options.subscriber_timeout);
      // A subscriber names its own sessions' application; with --auth, an application key's
      // listing is what makes a session its own.
      if (member && member->role == net::Role::kApplication) {
        for (uint64_t session : sub->sessions) claim(session, sub->application_id, *member, now);
      } else if (!sub->application_id.empty() && !auth) {
        for (uint64_t session : sub->sessions) learn_owner(session, sub->application_id);
      }
      if (changed) {
        LRTS_INFO("subscriber {} ({})", fresh ? "joined" : "changed its filter",
                  s.all                      ? "all bars"
                  : s.application_id.empty() ? "by session"
                                             : s.application_id);
        auto snap = store.snapshot(now, [&](uint64_t session) { return wants(s, session); });
        send_update(peer, snap, true);
      }
    } else {
      subscribers.erase(peer);
    }
  }

  // Drops subscribers that stopped renewing, and what was learned from them.
  void expire_subscribers(TimePoint now) {
    next_subscriber_check = TimePoint::max();
    for (auto it = subscribers.begin(); it != subscribers.end();) {
      if (it->second.last_seen + options.subscriber_timeout <= now) {
        LRTS_INFO("subscriber gone silent; dropped");
        it = subscribers.erase(it);
        continue;
      }
      next_subscriber_check =
          std::min(next_subscriber_check, it->second.last_seen + options.subscriber_timeout);
      ++it;
    }
  }

  void push(TimePoint now) {
    next_push = TimePoint::max();
    auto changes = store.take_changes(now);
    if (changes.empty()) return;
    for (auto it = subscribers.begin(); it != subscribers.end();) {
      std::vector<protocol::BarState> mine;
      for (const auto& b : changes) {
        if (wants(it->second, b.key.session)) mine.push_back(b);
      }
      if (!mine.empty()) send_update(it->first, mine, false);
      ++it;
    }
  }
};

ProgressServer::ProgressServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProgressServer::~ProgressServer() = default;

Result<std::unique_ptr<ProgressServer>> ProgressServer::create(
    const ProgressServerOptions& options) {
  auto ep = net::bind_endpoint(options.address, options.port);
  if (!ep) return Error{ep.error()};
  if (auto s = net::check_exposure(options.address, !options.auth_dir.empty(), options.insecure,
                                   "progress server");
      !s) {
    return Error{s.error()};
  }
  auto impl = std::make_unique<Impl>(options);
  if (options.metrics_port > 0) {
    auto m =
        net::HttpServer::metrics(options.metrics_address, options.metrics_port, impl->metrics_text);
    if (!m) return Error{"--metrics-port: " + m.error()};
    impl->metrics = std::move(*m);
    impl->next_metrics = TimePoint{};
  }
  if (!options.auth_dir.empty()) {
    auto auth = net::Authenticator::create(impl->ctx, options.auth_dir);
    if (!auth) return Error{auth.error()};
    impl->auth = std::move(*auth);
    impl->auth->secure_server(impl->router);
  }
  impl->router.set_int(ZMQ_ROUTER_MANDATORY, 1);
  impl->router.set_int(ZMQ_SNDHWM, 10000);
  impl->router.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
  const int64_t max_msg = static_cast<int64_t>(options.max_message_bytes);
  zmq_setsockopt(impl->router.get(), ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
  if (auto s = impl->router.bind(ep->zmq); !s) return Error{s.error()};
  impl->endpoint = impl->router.last_endpoint();
  std::random_device rd;
  impl->epoch = (uint64_t{rd()} << 32) | rd();
  return std::unique_ptr<ProgressServer>(new ProgressServer(std::move(impl)));
}

int ProgressServer::run() {
  Impl& s = *impl_;
  net::raise_descriptor_limit();
  net::ListenerGuard listener(s.ctx, s.router, s.endpoint);
  SignalPipe signals{SIGINT, SIGTERM};
  LRTS_INFO("progress server listening on {}", s.endpoint);
  net::ZmqFrame identity, payload, extra;
  for (;;) {
    TimePoint now = Clock::now();
    const TimePoint deadline =
        std::min({s.next_push, s.store.next_expiry(), s.next_subscriber_check, s.next_worker_check,
                  s.next_metrics, listener.next_deadline(),
                  s.auth ? s.auth->next_deadline() : TimePoint::max()});
    const long timeout =
        deadline == TimePoint::max() ? -1 : std::max<long>(0, to_ms(deadline - now) + 1);
    void* mon = listener.monitor_socket();
    void* zap = s.auth ? s.auth->socket() : nullptr;
    zmq_pollitem_t items[4] = {{s.router.get(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                               {mon, mon ? 0 : -1, mon ? short{ZMQ_POLLIN} : short{0}, 0},
                               {zap, zap ? 0 : -1, zap ? short{ZMQ_POLLIN} : short{0}, 0}};
    if (zmq_poll(items, 4, timeout) < 0 && zmq_errno() != EINTR) {
      LRTS_ERROR("poll failed: {}", net::zmq_error_text());
      return 1;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      for (int sig : signals.drain()) {
        if (sig == SIGINT || sig == SIGTERM) {
          LRTS_INFO("received {}; progress server stopping ({} batches served, {} bars held)",
                    sig == SIGINT ? "SIGINT" : "SIGTERM", s.batches, s.store.size());
          return 0;
        }
      }
    }
    now = Clock::now();
    if (items[2].revents & ZMQ_POLLIN) listener.on_readable(now);
    listener.on_tick(now);
    if (s.auth) {
      if (items[3].revents & ZMQ_POLLIN) s.auth->on_readable(now);
      s.auth->on_tick(now);
    }
    for (int n = 0; n < 4096; ++n) {
      if (!s.router.recv(identity)) break;
      if (!identity.more() || !s.router.recv(payload)) continue;
      bool more = payload.more();
      while (more && s.router.recv(extra)) more = extra.more();
      if (payload.more()) {
        ++s.bad;
        continue;
      }
      const net::Member* member = nullptr;
      if (s.auth && !(member = s.auth->member_of(payload, now))) continue;  // revoked
      s.on_message(std::string(identity.view()), payload.view(), now, member);
    }
    if (now >= s.next_subscriber_check) s.expire_subscribers(now);
    if (now >= s.next_worker_check) s.check_workers(now);
    if (now >= s.next_push) s.push(now);
    s.store.expire(now);
    if (now >= s.next_metrics) {
      s.next_metrics = now + seconds(1);
      s.metrics_text.publish(s.render_metrics());
    }
  }
}

}  // namespace lrts::progress_server
