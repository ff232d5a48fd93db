#include "scheduler/server.hpp"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>

#include <deque>
#include <functional>
#include <random>
#include <unordered_map>
#include <unordered_set>

#include "common/log.hpp"
#include "common/signals.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/http_server.hpp"
#include "net/listener.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/relay_ids.hpp"
#include "scheduler/journal.hpp"
#include "scheduler/server_metrics.hpp"

namespace lrts::scheduler {

namespace {

// Time a loop round may spend answering queries, and how many may wait.
constexpr Duration kQueryBudget = milliseconds(2);
constexpr size_t kMaxPendingQueries = 4096;

class RouterTransport final : public Transport {
 public:
  RouterTransport(net::ZmqSocket& socket, Traffic& traffic) : socket_(socket), traffic_(traffic) {}
  void send_app(const PeerId& peer, const protocol::ToApp& message) override {
    buf_.clear();
    protocol::encode(message, buf_);
    traffic_.sent(std::visit([](const auto& m) { return m.kType; }, message), buf_.size());
    send(peer, buf_);
  }
  void send_worker(const PeerId& peer, const protocol::ToWorker& message) override {
    buf_.clear();
    protocol::encode(message, buf_);
    traffic_.sent(std::visit([](const auto& m) { return m.kType; }, message), buf_.size());
    send(peer, buf_);
  }
  void send_relay(const PeerId& peer, const protocol::ToRelay& message) override {
    buf_.clear();
    protocol::encode(message, buf_);
    traffic_.sent(std::visit([](const auto& m) { return m.kType; }, message), buf_.size());
    send(peer, buf_);
  }
  uint64_t dropped_full() const { return dropped_full_; }
  std::vector<PeerId> take_congested() override { return std::exchange(congested_, {}); }

  // Sends what waits for each relay, one batch each (call after the core's flush).
  void flush_relays() {
    for (auto& [relay, batch] : down_) {
      if (!batch.items.empty()) send_batch(relay, batch);
    }
    if (down_.size() > 256)
      std::erase_if(down_, [](const auto& e) { return e.second.items.empty(); });
  }

 private:
  // Messages for workers behind one relay, sent as one RELAY_DOWN.
  struct DownBatch {
    std::vector<std::pair<uint32_t, std::string>> items;
    std::vector<PeerId> peers;  // who they are for (a relay that does not read congests them all)
    size_t bytes = 0;
  };
  static constexpr size_t kBatchBytes = 1u << 20;
  static constexpr size_t kBatchItems = 4096;

  void send_batch(const std::string& relay, DownBatch& batch) {
    protocol::RelayDown down;
    down.items.reserve(batch.items.size());
    for (const auto& [sub, bytes] : batch.items) down.items.push_back({sub, bytes});
    std::string out;
    protocol::encode(down, out);
    if (socket_.send_to(relay, out) == net::SendResult::kWouldBlock) {
      for (auto& p : batch.peers) congested_.push_back(std::move(p));
      dropped_full_ += batch.items.size();
    }
    batch.items.clear();
    batch.peers.clear();
    batch.bytes = 0;
  }

  void send(const std::string& peer, std::string_view message) {
    if (protocol::is_relayed(peer)) return send_relayed(peer, message);
    send_direct(peer, message);
  }

  // Wrapped once per relay on the way, inner ones first; the first relay's batch collects them.
  void send_relayed(const std::string& peer, std::string_view message) {
    auto path = protocol::relay_path(peer);
    if (!path) return;
    std::string bytes(message);
    for (size_t i = path->subs.size(); i-- > 1;) {
      protocol::RelayDown one;
      one.items.push_back({path->subs[i], bytes});
      std::string wrapped;
      protocol::encode(one, wrapped);
      bytes = std::move(wrapped);
    }
    const std::string relay(path->relay);
    DownBatch& batch = down_[relay];
    batch.bytes += bytes.size();
    batch.items.emplace_back(path->subs[0], std::move(bytes));
    batch.peers.push_back(peer);
    if (batch.bytes >= kBatchBytes || batch.items.size() >= kBatchItems) send_batch(relay, batch);
  }

  void send_direct(std::string_view peer, std::string_view message) {
    switch (socket_.send_to(peer, message)) {
      case net::SendResult::kSent:
        return;
      case net::SendResult::kWouldBlock:
        // The peer does not read. Counted here and logged with the stats (an overloaded loop
        // should not log per message); the core drops the peer, which re-registers when it reads
        // again and so learns what it missed.
        if (congested_.empty() || congested_.back() != peer) congested_.emplace_back(peer);
        ++dropped_full_;
        return;
      case net::SendResult::kUnreachable:
        return;  // it went away
      case net::SendResult::kError:
        LRTS_WARN("send failed: {}", net::zmq_error_text());
        return;
    }
  }

  net::ZmqSocket& socket_;
  Traffic& traffic_;
  std::string buf_;
  std::unordered_map<std::string, DownBatch> down_;
  uint64_t dropped_full_ = 0;  // messages dropped because the peer's queue was full
  std::vector<PeerId> congested_;
};

}  // namespace

struct SchedulerServer::Impl {
  ServerOptions options;
  net::ZmqContext ctx;
  std::unique_ptr<net::Authenticator> auth;  // before the router: it answers its handshakes
  net::ZmqSocket router{ctx, ZMQ_ROUTER};
  Traffic traffic;
  RouterTransport transport{router, traffic};
  net::PublishedText metrics_text;
  std::unique_ptr<net::HttpServer> metrics;  // --metrics-port
  std::unique_ptr<Journal> journal;
  std::unique_ptr<BlobStore> blobs;
  std::unique_ptr<SchedulerCore> core;
  std::string endpoint;
  // Queries and controls wait here until the round's burst is scheduled (at most
  // kMaxPendingQueries; past that they are dropped and counted: the asker times out and asks
  // again).
  struct PendingQuery {
    PeerId peer;
    std::string bytes;
    std::string identity;
    Caller caller;  // its identity points into `identity` once taken out
  };
  std::deque<PendingQuery> queries;
  uint64_t dropped_queries = 0;
};

// One message from `peer`: queries and controls wait for the round's end, the rest goes to the
// core (which takes a relay's batches apart).
void SchedulerServer::deliver(const PeerId& peer, std::string_view bytes, const Caller& caller,
                              TimePoint now) {
  Impl& s = *impl_;
  auto msg = protocol::decode<protocol::ToScheduler>(bytes, s.options.max_message_bytes);
  if (!msg) return s.core->on_bad_message(peer, msg.error(), now);
  s.traffic.received(std::visit([](const auto& m) { return m.kType; }, *msg), bytes.size());
  if (std::holds_alternative<protocol::Query>(*msg) ||
      std::holds_alternative<protocol::Control>(*msg)) {
    if (s.queries.size() >= kMaxPendingQueries) {
      ++s.dropped_queries;
      return;
    }
    s.queries.push_back({peer, std::string(bytes), std::string(caller.identity), caller});
    return;
  }
  s.core->on_message(peer, *msg, now, caller);
}

SchedulerServer::SchedulerServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
SchedulerServer::~SchedulerServer() = default;

Result<std::unique_ptr<SchedulerServer>> SchedulerServer::create(const ServerOptions& options) {
  auto ep = net::bind_endpoint(options.address, options.port);
  if (!ep) return Error{ep.error()};
  if (auto s = net::check_exposure(options.address, !options.auth_dir.empty(), options.insecure,
                                   "scheduler");
      !s) {
    return Error{s.error()};
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  net::ZmqSocket& r = impl->router;
  if (!options.auth_dir.empty()) {
    auto auth = net::Authenticator::create(impl->ctx, options.auth_dir);
    if (!auth) return Error{auth.error()};
    impl->auth = std::move(*auth);
    impl->auth->secure_server(r);
    LRTS_INFO("--auth {}: CURVE on every connection, {} member key(s) accepted", options.auth_dir,
              impl->auth->members());
  }
  r.set_int(ZMQ_ROUTER_MANDATORY, 1);
  r.set_int(ZMQ_BACKLOG, 4096);  // thousands of workers may connect at once
  r.set_int(ZMQ_SNDHWM, 100000);
  r.set_int(ZMQ_RCVHWM, 100000);
  r.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
  const int64_t max_msg = static_cast<int64_t>(options.max_message_bytes) + 1024;
  zmq_setsockopt(r.get(), ZMQ_MAXMSGSIZE, &max_msg, sizeof max_msg);
  if (auto s = r.bind(ep->zmq); !s) return Error{s.error()};
  impl->endpoint = r.last_endpoint();
  CoreOptions core = options.core;
  core.authenticated = !options.auth_dir.empty();
  core.max_message_bytes = options.max_message_bytes;
  core.listen_endpoint = impl->endpoint;
  if (core.epoch == 1)
    core.epoch = std::random_device{}() | (uint64_t{std::random_device{}()} << 32);
  RecoveredState recovered;
  if (!options.state_dir.empty()) {
    auto journal = Journal::open({options.state_dir, options.journal_sync_full});
    if (!journal) return Error{journal.error()};
    auto blobs =
        FileBlobStore::open_dir(options.state_dir + "/payloads", options.journal_sync_full);
    if (!blobs) return Error{blobs.error()};
    impl->blobs = std::move(*blobs);
    const TimePoint t0 = Clock::now();
    auto state = (*journal)->load();
    if (!state) return Error{state.error()};
    LRTS_INFO(
        "journal {} (--no-journal keeps state in memory only): loaded {} task(s) and {} "
        "application(s) in {} ms",
        (*journal)->path(), state->tasks.size(), state->apps.size(), to_ms(Clock::now() - t0));
    recovered = std::move(*state);
    core.journal_path = (*journal)->path();
    impl->journal = std::move(*journal);
  }
  if (!impl->blobs) impl->blobs = std::make_unique<MemoryBlobStore>();
  if (options.metrics_port > 0) {
    auto m =
        net::HttpServer::metrics(options.metrics_address, options.metrics_port, impl->metrics_text);
    if (!m) return Error{"--metrics-port: " + m.error()};
    impl->metrics = std::move(*m);
    LRTS_INFO("metrics on http://{}:{}/metrics", options.metrics_address, options.metrics_port);
  }
  impl->core =
      std::make_unique<SchedulerCore>(core, impl->transport, *impl->blobs, impl->journal.get());
  if (impl->journal) {
    impl->core->restore(std::move(recovered), Clock::now());
    impl->journal->start();
  }
  return std::unique_ptr<SchedulerServer>(new SchedulerServer(std::move(impl)));
}

int SchedulerServer::run() {
  Impl& s = *impl_;
  // One descriptor per connected worker and application: allow as many as the system lets us,
  // and turn new connections away rather than spin when they run out.
  net::raise_descriptor_limit();
  net::ListenerGuard listener(s.ctx, s.router, s.endpoint);
  SignalPipe signals{SIGINT, SIGTERM};
  LRTS_INFO("scheduler listening on {}", s.endpoint);

  net::ZmqFrame identity, payload, extra;
  std::unordered_set<PeerId> revoked_told;
  std::deque<Impl::PendingQuery>& queries = s.queries;
  uint64_t logged_dropped_queries = 0;
  TimePoint next_stats = Clock::now() + s.options.stats_interval;
  const TimePoint started = Clock::now();
  TimePoint next_metrics = s.metrics ? started : TimePoint::max();
  CoreStats last_logged{};
  uint64_t logged_full = 0;
  for (;;) {
    TimePoint now = Clock::now();
    const TimePoint deadline =
        std::min({queries.empty() ? TimePoint::max() : now, s.core->next_deadline(), next_stats,
                  next_metrics, listener.next_deadline(),
                  s.auth ? s.auth->next_deadline() : TimePoint::max()});
    long timeout_ms = -1;
    if (deadline != TimePoint::max()) {
      timeout_ms = std::max<long>(0, to_ms(deadline - now) + 1);
    }
    void* zap = s.auth ? s.auth->socket() : nullptr;
    zmq_pollitem_t items[5] = {{s.router.get(), 0, ZMQ_POLLIN, 0},
                               {nullptr, signals.fd(), ZMQ_POLLIN, 0},
                               {listener.monitor_socket(), listener.monitor_socket() ? 0 : -1,
                                listener.monitor_socket() ? short{ZMQ_POLLIN} : short{0}, 0},
                               {zap, zap ? 0 : -1, zap ? short{ZMQ_POLLIN} : short{0}, 0},
                               {nullptr, s.journal ? s.journal->notify_fd() : -1, ZMQ_POLLIN, 0}};
    const int n_items = s.journal ? 5 : 4;
    if (zmq_poll(items, n_items, timeout_ms) < 0 && zmq_errno() != EINTR) {
      LRTS_ERROR("poll failed: {}", net::zmq_error_text());
      return 1;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      for (int sig : signals.drain()) {
        if (sig == SIGINT || sig == SIGTERM) {
          LRTS_INFO("received {}; scheduler stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
          if (s.journal) {
            s.journal->stop();  // everything appended is committed before we go
            const JournalStats js = s.journal->stats();
            LRTS_INFO("journal: {} transaction(s), {} record(s) written, {} coalesced away",
                      js.transactions, js.records, js.coalesced);
          }
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
    if (s.journal && (items[4].revents & ZMQ_POLLIN)) {
      s.journal->drain_notify();
      s.core->on_journal_committed(s.journal->committed());
    }
    // Drain a bounded burst, then flush: everything it produced leaves in batches.
    for (int n = 0; n < 4096; ++n) {
      if (!s.router.recv(identity)) break;
      if (!identity.more()) continue;  // cannot happen on a ROUTER; ignore
      if (!s.router.recv(payload)) break;
      bool extra_frames = payload.more();
      while (extra_frames && s.router.recv(extra)) extra_frames = extra.more();
      const PeerId peer(identity.view());
      Caller caller;
      if (s.auth) {
        const net::Member* member = s.auth->member_of(payload, now);
        if (!member) {
          // Revoked since it connected: dropped (it times out, its tasks run elsewhere), and
          // told so once per connection.
          if (revoked_told.size() >= 10'000) revoked_told.clear();
          if (revoked_told.insert(peer).second) {
            s.transport.send_app(
                peer, protocol::ErrorMsg{protocol::ErrorCode::kForbidden, "this key was revoked"});
          }
          continue;
        }
        caller.identity = member->name;
        caller.may_work = member->role == net::Role::kWorker;
        caller.may_apply = member->role == net::Role::kApplication;
        caller.may_view_all =
            member->role == net::Role::kViewer || member->role == net::Role::kAdmin;
        caller.may_operate = member->role == net::Role::kAdmin;
        caller.may_relay = member->role == net::Role::kRelay;
      }
      if (payload.more()) {
        s.core->on_bad_message(
            peer, {protocol::DecodeCode::kNotLrts, "message has more than one frame"}, now);
        continue;
      }
      if (protocol::is_relayed(peer)) continue;  // a routing id posing as a relayed peer
      deliver(peer, payload.view(), caller, now);
    }
    s.core->on_tick(now);
    s.core->flush(now);
    s.transport.flush_relays();
    // Queries after scheduling, for at most kQueryBudget a round (at least one): a flood of
    // them slows answers, not tasks.
    if (!queries.empty()) {
      const TimePoint until = Clock::now() + kQueryBudget;
      size_t n = 0;
      while (n < queries.size() && (n == 0 || Clock::now() < until)) {
        Impl::PendingQuery& q = queries[n++];
        auto msg = protocol::decode<protocol::ToScheduler>(q.bytes, s.options.max_message_bytes);
        if (!msg) continue;
        q.caller.identity = q.identity;
        s.core->on_message(q.peer, *msg, now, q.caller);
      }
      queries.erase(queries.begin(), queries.begin() + static_cast<std::ptrdiff_t>(n));
      s.core->flush(now);
      s.transport.flush_relays();
    }
    if (s.journal) s.journal->hand_off();

    if (now >= next_metrics) {
      // Rendered here, served by the HTTP thread: a scrape never touches the loop's state.
      next_metrics = now + seconds(1);
      const CoreStats st = s.core->stats();
      JournalStats js;
      if (s.journal) js = s.journal->stats();
      SchedulerGauges g;
      g.core = &st;
      g.activity = &s.core->activity();
      g.journal = s.journal ? &js : nullptr;
      g.journal_backlog = s.core->journal_appended() - (s.journal ? s.journal->committed() : 0);
      if (!s.journal) g.journal_backlog = 0;
      g.traffic = &s.traffic;
      g.dropped_full = s.transport.dropped_full();
      g.uptime_s = to_seconds(now - started);
      s.metrics_text.publish(render_metrics(g));
    }
    if (now >= next_stats) {
      next_stats = now + s.options.stats_interval;
      if (const auto [open, limit] = net::descriptor_use(); open * 10 > limit * 9) {
        LRTS_WARN(
            "{} of {} file descriptors in use: new workers and applications will be refused "
            "past the limit (raise it with ulimit -n)",
            open, limit);
      }
      if (s.dropped_queries != logged_dropped_queries) {
        LRTS_WARN("dropped {} query(ies): more than {} were waiting to be answered",
                  s.dropped_queries - logged_dropped_queries, kMaxPendingQueries);
        logged_dropped_queries = s.dropped_queries;
      }
      if (const uint64_t full = s.transport.dropped_full(); full != logged_full) {
        LRTS_WARN(
            "dropped {} message(s) to peers whose queue was full (they are sent again "
            "when it matters)",
            full - logged_full);
        logged_full = full;
      }
      const CoreStats st = s.core->stats();
      if (st.completed != last_logged.completed || st.submitted != last_logged.submitted ||
          st.workers != last_logged.workers) {
        LRTS_INFO(
            "stats: {} queued, {} running, {} awaiting delivery; {} submitted, {} completed, {} "
            "delivered, {} requeued, {} duplicate results dropped; {} workers, {} applications",
            st.queued, st.assigned, st.done, st.submitted, st.completed, st.delivered, st.requeued,
            st.duplicates, st.workers, st.apps);
        last_logged = st;
      }
    }
  }
}

}  // namespace lrts::scheduler
