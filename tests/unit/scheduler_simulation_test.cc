// Deterministic simulation of the scheduler core: seeded random sequences of submissions,
// assignments, results, heartbeats, worker crashes, cut-offs and returns, duplicated and
// reordered messages, journal commits and scheduler restarts from the journal — thousands of
// steps per seed, many seeds — with invariants checked after every step:
//   - the core's own consistency (no task both queued and running, counters, lists: verify());
//   - every result the application accepts is correct and within the attempt limit;
//   - at the end, after the faults stop, every task the scheduler acknowledged has ended exactly
//     once from the application's view (nothing accepted is forgotten).
// A failing seed prints itself; LRTS_SIM_SEED=<seed> replays just that one.
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "protocol/codec.hpp"
#include "protocol/msgpack_io.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {
namespace {

using namespace std::chrono_literals;
using protocol::MsgType;
using protocol::TaskKey;
using protocol::TaskStatus;

struct KeyLess {
  bool operator()(const TaskKey& a, const TaskKey& b) const {
    return a.session != b.session ? a.session < b.session : a.seq < b.seq;
  }
};

// What a worker computes for a task: a function of its key, so any result can be checked.
std::string expected_value(const TaskKey& k) {
  std::string out;
  protocol::mp::Writer(out).uint(k.seq * 7 + 1);
  return out;
}

// ---- journal: committed state kept like the SQLite journal would -----------------------------

class SimJournal final : public JournalSink {
 public:
  void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                      std::string_view fields, uint32_t max_retries, uint32_t timeout_ms) override {
    RecoveredTask t;
    t.key = key;
    t.app_id = app_id;
    t.name = name;
    t.fields = fields;
    t.max_retries = max_retries;
    t.timeout_ms = timeout_ms;
    pending_.push_back([t](State& s) { s.tasks[t.key] = t; });
  }
  void task_attempts(const TaskKey& key, uint32_t attempts) override {
    pending_.push_back([key, attempts](State& s) {
      if (auto it = s.tasks.find(key); it != s.tasks.end()) it->second.attempts = attempts;
    });
  }
  void task_finished(const TaskKey& key, TaskStatus status, std::string_view payload,
                     uint32_t attempt, std::string_view worker, uint64_t run_ns) override {
    std::string p(payload), w(worker);
    pending_.push_back([=](State& s) {
      if (auto it = s.tasks.find(key); it != s.tasks.end()) {
        it->second.done = true;
        it->second.status = status;
        it->second.result = p;
        it->second.attempts = attempt;
        it->second.worker = w;
        it->second.run_ns = run_ns;
      }
    });
  }
  void task_removed(const TaskKey& key) override {
    pending_.push_back([key](State& s) { s.tasks.erase(key); });
  }
  void app_registered(std::string_view app_id, uint64_t grace_ms) override {
    std::string id(app_id);
    pending_.push_back([id, grace_ms](State& s) { s.apps[id] = grace_ms; });
  }
  void app_removed(std::string_view app_id) override {
    std::string id(app_id);
    pending_.push_back([id](State& s) { s.apps.erase(id); });
  }

  // Makes the first `n` pending records durable, as a commit would.
  void commit(size_t n) {
    n = std::min(n, pending_.size());
    for (size_t i = 0; i < n; ++i) pending_[i](state_);
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    committed_ += n;
  }
  uint64_t committed() const { return committed_; }
  size_t uncommitted() const { return pending_.size(); }
  // A crash: what was not committed is gone; counting restarts with the new process.
  RecoveredState crash() {
    pending_.clear();
    committed_ = 0;
    RecoveredState out;
    for (const auto& [id, grace] : state_.apps) out.apps.push_back({id, grace});
    for (const auto& [k, t] : state_.tasks) out.tasks.push_back(t);
    return out;
  }

 private:
  struct State {
    std::map<std::string, uint64_t> apps;
    std::map<TaskKey, RecoveredTask, KeyLess> tasks;
  };
  State state_;
  std::vector<std::function<void(State&)>> pending_;
  uint64_t committed_ = 0;
};

// ---- the network ----------------------------------------------------------------------------

class SimTransport final : public Transport {
 public:
  void send_app(const PeerId& peer, const protocol::ToApp& message) override {
    protocol::encode(message, to_peer[peer].emplace_back());
  }
  void send_worker(const PeerId& peer, const protocol::ToWorker& message) override {
    protocol::encode(message, to_peer[peer].emplace_back());
  }
  std::map<std::string, std::deque<std::string>> to_peer;
};

// ---- the world ------------------------------------------------------------------------------

struct SimWorker {
  uint64_t uid = 0;
  std::string peer;
  uint32_t capacity = 2;
  bool up = true;         // the process runs
  bool connected = true;  // the network reaches it
  bool welcomed = false;
  struct Done {
    uint32_t attempt;
    TaskStatus status;
    std::string payload;
  };
  std::map<TaskKey, uint32_t, KeyLess> held;    // running: attempt
  std::map<TaskKey, Done, KeyLess> unacked;     // results not acknowledged
  std::deque<std::string> outbox;               // to the scheduler
  std::string last_results;                                  // for duplicating
};

struct SimApp {
  std::string app_id = "sim-app";
  uint64_t session = 1;
  std::string peer;
  bool up = true;
  bool connected = true;
  uint64_t next_seq = 1;
  std::map<TaskKey, uint32_t, KeyLess> unacked_submits;  // seq -> max_retries
  std::set<TaskKey, KeyLess> acked;                      // the scheduler holds these
  std::set<TaskKey, KeyLess> pending;                    // waiting for a result
  std::set<TaskKey, KeyLess> cancelled;
  std::map<TaskKey, uint32_t, KeyLess> max_retries;
  std::map<TaskKey, int, KeyLess> results;  // accepted results per key
  std::deque<std::string> outbox;
};

class Simulation {
 public:
  explicit Simulation(uint64_t seed) : rng_(seed) {
    options_.epoch = 1;
    options_.worker_timeout = 10s;
    options_.app_timeout = 10s;
    options_.app_grace = 3600s;
    options_.reclaim_grace = 5s;
    options_.result_resend = 5s;
    new_core(RecoveredState{}, /*restored=*/false);
    for (int i = 0; i < 4; ++i) add_worker();
    app_.peer = "app#" + std::to_string(peer_counter_++);
    say_app_hello();
  }

  // One random step of the world. Returns a failure description, or "" if all is well.
  std::string step(bool faults) {
    const int r = static_cast<int>(rng_() % 100);
    if (r < 14) {
      submit();
    } else if (r < 40) {
      work();
    } else if (r < 55) {
      deliver_to_scheduler();
    } else if (r < 70) {
      deliver_to_peers();
    } else if (r < 78) {
      advance_time(milliseconds(rng_() % 2500));
    } else if (r < 84) {
      journal_.commit(rng_() % 50);
      core_->on_journal_committed(journal_.committed());
      core_->flush(now_);
    } else if (r < 86) {
      if (!app_.pending.empty()) cancel();
    } else if (faults) {
      fault();
    }
    if (auto s = core_->verify(); !s) return "core invariant broken: " + s.error();
    return failure_;
  }

  // Faults stop; everyone comes back; run until every acknowledged task has its result.
  std::string settle() {
    for (auto& w : workers_) {
      if (!w.up) {
        w = SimWorker{};
        w.uid = next_uid_++;
        w.peer = "worker#" + std::to_string(peer_counter_++);
        worker_hello(w);
      } else if (!w.connected) {
        reconnect(w);
      }
    }
    if (!app_.connected) reconnect_app();
    for (int i = 0; i < 20000 && !done(); ++i) {
      work();
      deliver_to_scheduler();
      deliver_to_peers();
      if (i % 10 == 0) {
        journal_.commit(SIZE_MAX);
        core_->on_journal_committed(journal_.committed());
        advance_time(300ms);
      }
      if (auto s = core_->verify(); !s) return "core invariant broken: " + s.error();
      if (!failure_.empty()) return failure_;
    }
    if (!done()) {
      const TaskKey k = first_missing();
      const CoreStats st = core_->stats();
      std::string where;
      for (const auto& w : workers_) {
        if (w.held.count(k)) where += " held by " + w.peer;
        if (w.unacked.count(k)) where += " unacked at " + w.peer;
        if (!w.up) where += " [" + w.peer + " down]";
      }
      return std::to_string(app_.pending.size()) + " acknowledged task(s) never ended (e.g. seq " +
             std::to_string(k.seq) + " of session " + std::to_string(k.session) + ";" + where +
             "; core: " + std::to_string(st.queued) + " queued, " + std::to_string(st.assigned) +
             " assigned, " + std::to_string(st.done) + " done, " + std::to_string(st.workers) +
             " workers, " + std::to_string(st.apps) + " apps; restarts " +
             std::to_string(restarts_) + "; app session " + std::to_string(app_.session) +
             (app_.connected ? " connected" : " not connected") + ")";
    }
    for (const auto& k : app_.acked) {
      if (app_.results[k] != 1) return "task " + std::to_string(k.seq) + " ended " +
                                       std::to_string(app_.results[k]) + " times";
    }
    return "";
  }

  size_t results_accepted() const { return app_.results.size(); }

 private:
  // ---- scheduler ----
  void new_core(RecoveredState state, bool restored) {
    ++options_.epoch;
    transport_.to_peer.clear();  // what the dead scheduler had not sent is gone
    core_ = std::make_unique<SchedulerCore>(options_, transport_, &journal_);
    if (restored) core_->restore(std::move(state), now_);
  }

  void restart_scheduler() {
    new_core(journal_.crash(), true);
    ++restarts_;
  }

  void deliver(const std::string& peer, const std::string& bytes) {
    auto msg = protocol::decode<protocol::ToScheduler>(bytes);
    if (!msg) {
      failure_ = "a peer sent an undecodable message: " + msg.error().text;
      return;
    }
    core_->on_message(peer, *msg, now_);
  }

  void deliver_to_scheduler() {
    // Peers' messages, in order per peer, peers interleaved at random; now and then two
    // messages of one peer swap places.
    std::vector<std::pair<std::string*, std::deque<std::string>*>> queues;
    for (auto& w : workers_) {
      if (w.up && w.connected) queues.emplace_back(&w.peer, &w.outbox);
    }
    if (app_.up && app_.connected) queues.emplace_back(&app_.peer, &app_.outbox);
    std::shuffle(queues.begin(), queues.end(), rng_);
    for (auto [peer, q] : queues) {
      const size_t n = q->empty() ? 0 : 1 + rng_() % q->size();
      for (size_t i = 0; i < n && !q->empty(); ++i) {
        if (q->size() >= 2 && rng_() % 20 == 0) std::swap((*q)[0], (*q)[1]);
        std::string bytes = std::move(q->front());
        q->pop_front();
        deliver(*peer, bytes);
      }
    }
    core_->on_tick(now_);
    core_->flush(now_);
  }

  void deliver_to_peers() {
    for (auto& [peer, msgs] : transport_.to_peer) {
      SimWorker* w = worker_by_peer(peer);
      const bool is_app = peer == app_.peer;
      const bool reachable = is_app ? (app_.up && app_.connected) : (w && w->up && w->connected);
      while (!msgs.empty()) {
        std::string bytes = std::move(msgs.front());
        msgs.pop_front();
        if (!reachable) continue;  // lost on the wire
        if (is_app) {
          app_receive(bytes);
        } else if (w) {
          worker_receive(*w, bytes);
        }
      }
    }
  }

  // ---- time ----
  void advance_time(Duration d) {
    now_ += d;
    for (auto& w : workers_) {
      if (w.up && w.connected) send_worker(w, protocol::WorkerHeartbeat{w.capacity});
    }
    if (app_.up && app_.connected) send_app(protocol::AppHeartbeat{});
    deliver_to_scheduler();
  }

  // ---- workers ----
  SimWorker* worker_by_peer(const std::string& peer) {
    for (auto& w : workers_) {
      if (w.peer == peer) return &w;
    }
    return nullptr;
  }

  void add_worker() {
    SimWorker w;
    w.uid = next_uid_++;
    w.capacity = 1 + static_cast<uint32_t>(rng_() % 3);
    w.peer = "worker#" + std::to_string(peer_counter_++);
    workers_.push_back(std::move(w));
    worker_hello(workers_.back());
  }

  template <class M>
  void send_worker(SimWorker& w, const M& m) {
    std::string bytes;
    protocol::encode(m, bytes);
    w.outbox.push_back(std::move(bytes));
  }

  void worker_hello(SimWorker& w) {
    protocol::WorkerHello h;
    h.worker_uid = w.uid;
    h.name = w.peer;
    h.slots = w.capacity;
    h.capacity = w.capacity;
    h.services = {"svc"};
    for (const auto& [k, a] : w.held) h.held.push_back({k, a});
    w.welcomed = false;
    send_worker(w, h);
  }

  void resend_results(SimWorker& w) {
    if (w.unacked.empty()) return;
    protocol::WorkerResults r;
    r.capacity = w.capacity;
    for (const auto& [k, d] : w.unacked) r.items.push_back({k, d.attempt, d.status, d.payload, 0, 1});
    std::string bytes;
    protocol::encode(r, bytes);
    w.last_results = bytes;
    w.outbox.push_back(std::move(bytes));
  }

  void worker_receive(SimWorker& w, const std::string& bytes) {
    auto msg = protocol::decode<protocol::ToWorker>(bytes);
    if (!msg) {
      failure_ = "the scheduler sent an undecodable message: " + msg.error().text;
      return;
    }
    if (auto* wel = std::get_if<protocol::WorkerWelcome>(&*msg)) {
      w.welcomed = true;
      for (const auto& k : wel->cancel) cancel_held(w, k);
      resend_results(w);
    } else if (auto* a = std::get_if<protocol::Assign>(&*msg)) {
      bool resend = false;
      for (const auto& t : a->tasks) {
        auto done = w.unacked.find(t.key);
        if (done != w.unacked.end() && done->second.attempt >= t.attempt) {
          resend = true;  // answered with the result it holds, as the real worker does
          continue;
        }
        w.held[t.key] = t.attempt;
      }
      if (resend) resend_results(w);
    } else if (auto* ack = std::get_if<protocol::ResultAck>(&*msg)) {
      for (const auto& t : ack->acked) {
        auto it = w.unacked.find(t.key);
        if (it != w.unacked.end() && it->second.attempt <= t.attempt) w.unacked.erase(it);
      }
    } else if (auto* k = std::get_if<protocol::CancelTasks>(&*msg)) {
      for (const auto& key : k->keys) cancel_held(w, key);
    } else if (auto* e = std::get_if<protocol::ErrorMsg>(&*msg)) {
      if (e->code == protocol::ErrorCode::kHelloRequired) worker_hello(w);
    }
  }

  // As the real worker: a cancelled task is answered with a lost outcome.
  void cancel_held(SimWorker& w, const TaskKey& k) {
    auto it = w.held.find(k);
    if (it == w.held.end()) return;
    const auto& d = w.unacked[k] = {it->second, TaskStatus::kLost, "cancelled by the scheduler"};
    w.held.erase(it);
    protocol::WorkerResults r;
    r.capacity = w.capacity;
    r.items.push_back({k, d.attempt, d.status, d.payload, 0, 1});
    std::string bytes;
    protocol::encode(r, bytes);
    w.outbox.push_back(std::move(bytes));
  }

  // Some worker finishes (or loses) some of what it holds.
  void work() {
    if (workers_.empty()) return;
    SimWorker& w = workers_[rng_() % workers_.size()];
    if (!w.up || w.held.empty()) return;
    protocol::WorkerResults r;
    r.capacity = w.capacity;
    const size_t n = 1 + rng_() % w.held.size();
    for (size_t i = 0; i < n && !w.held.empty(); ++i) {
      auto it = w.held.begin();
      std::advance(it, static_cast<long>(rng_() % w.held.size()));
      SimWorker::Done d{it->second, TaskStatus::kFinished, expected_value(it->first)};
      if (rng_() % 12 == 0) d = {it->second, TaskStatus::kLost, "slot process killed by signal 9"};
      const auto& stored = w.unacked[it->first] = std::move(d);  // map nodes do not move
      r.items.push_back({it->first, stored.attempt, stored.status, stored.payload, 0, 1});
      w.held.erase(it);
    }
    if (!w.connected) return;  // delivered after it reconnects
    std::string bytes;
    protocol::encode(r, bytes);
    w.last_results = bytes;
    w.outbox.push_back(std::move(bytes));
  }

  void reconnect(SimWorker& w) {
    w.connected = true;
    w.peer = "worker#" + std::to_string(peer_counter_++);  // a new connection, a new routing id
    worker_hello(w);
  }

  // ---- the application ----
  template <class M>
  void send_app(const M& m) {
    std::string bytes;
    protocol::encode(m, bytes);
    app_.outbox.push_back(std::move(bytes));
  }

  void say_app_hello() { send_app(protocol::AppHello{app_.app_id, app_.session, 0, 0}); }

  void send_submits(const std::vector<TaskKey>& keys) {
    if (keys.empty()) return;
    protocol::Submit s;
    s.session = app_.session;
    s.names = {"svc"};
    for (const auto& k : keys) s.tasks.push_back({k.seq, 0, "", 0, app_.max_retries[k], 0});
    send_app(s);
  }

  void submit() {
    if (!app_.up) return;
    std::vector<TaskKey> keys;
    const size_t n = 1 + rng_() % 8;
    for (size_t i = 0; i < n; ++i) {
      const TaskKey k{app_.session, app_.next_seq++};
      app_.max_retries[k] = static_cast<uint32_t>(rng_() % 4);
      app_.unacked_submits[k] = app_.max_retries[k];
      app_.pending.insert(k);
      keys.push_back(k);
    }
    if (app_.connected) send_submits(keys);
  }

  void cancel() {
    auto it = app_.pending.begin();
    std::advance(it, static_cast<long>(rng_() % app_.pending.size()));
    app_.cancelled.insert(*it);
    send_app(protocol::Cancel{{*it}});
  }

  void app_receive(const std::string& bytes) {
    auto msg = protocol::decode<protocol::ToApp>(bytes);
    if (!msg) {
      failure_ = "the scheduler sent the application an undecodable message: " + msg.error().text;
      return;
    }
    if (auto* wel = std::get_if<protocol::AppWelcome>(&*msg)) {
      for (const auto& k : wel->outstanding) {
        if (!app_.results.count(k) || app_.results[k] == 0) app_.pending.insert(k);
      }
      // Everything not acknowledged goes again.
      std::vector<TaskKey> keys;
      for (const auto& [k, r] : app_.unacked_submits) {
        if (k.session == app_.session) keys.push_back(k);
      }
      send_submits(keys);
    } else if (auto* ack = std::get_if<protocol::SubmitAck>(&*msg)) {
      for (uint64_t seq : ack->seqs) {
        const TaskKey k{ack->session, seq};
        if (app_.unacked_submits.erase(k)) app_.acked.insert(k);
      }
    } else if (auto* res = std::get_if<protocol::AppResults>(&*msg)) {
      protocol::Received ack;
      for (const auto& item : res->items) {
        ack.keys.push_back(item.key);
        if (!app_.pending.erase(item.key)) continue;  // a duplicate: dropped, as the client does
        ++app_.results[item.key];
        if (app_.unacked_submits.erase(item.key)) app_.acked.insert(item.key);
        check_result(item);
      }
      send_app(ack);
    } else if (auto* e = std::get_if<protocol::ErrorMsg>(&*msg)) {
      if (e->code == protocol::ErrorCode::kHelloRequired) say_app_hello();
    }
  }

  void check_result(const protocol::AppResult& item) {
    const uint32_t limit = app_.max_retries[item.key] + 1;
    const std::string seq = std::to_string(item.key.seq);
    if (item.attempt > limit) {
      failure_ = "task " + seq + " used attempt " + std::to_string(item.attempt) + " of " +
                 std::to_string(limit);
    } else if (item.status == TaskStatus::kFinished) {
      if (item.payload != expected_value(item.key)) {
        std::string got;
        for (unsigned char c : item.payload) got += std::to_string(c) + " ";
        failure_ = "task " + seq + " of session " + std::to_string(item.key.session) +
                   ": wrong result (bytes " + got + ", attempt " + std::to_string(item.attempt) +
                   ")";
      }
    } else if (item.status == TaskStatus::kFailed) {
      if (std::string(item.payload).rfind("gave up after", 0) != 0) {
        failure_ = "task " + seq + " failed for an unexpected reason: " + std::string(item.payload);
      }
    } else if (item.status == TaskStatus::kCancelled) {
      if (!app_.cancelled.count(item.key)) failure_ = "task " + seq + " cancelled unasked";
    } else {
      failure_ = "task " + seq + " has status " + std::to_string(static_cast<int>(item.status));
    }
  }

  void reconnect_app() {
    app_.connected = true;
    app_.peer = "app#" + std::to_string(peer_counter_++);
    say_app_hello();
  }

  // ---- faults ----
  void fault() {
    const int f = static_cast<int>(rng_() % 100);
    if (f < 20) {
      // A worker crashes: what it held is gone; later a new process comes (a new uid).
      SimWorker& w = workers_[rng_() % workers_.size()];
      if (w.up) {
        w.up = false;
      } else {
        w = SimWorker{};
        w.uid = next_uid_++;
        w.capacity = 1 + static_cast<uint32_t>(rng_() % 3);
        w.peer = "worker#" + std::to_string(peer_counter_++);
        worker_hello(w);
      }
    } else if (f < 40) {
      // A worker is cut off (or comes back with what it held and finished meanwhile).
      SimWorker& w = workers_[rng_() % workers_.size()];
      if (!w.up) return;
      if (w.connected) {
        w.connected = false;
        w.outbox.clear();
      } else {
        reconnect(w);
      }
    } else if (f < 50) {
      // A worker's results arrive twice.
      SimWorker& w = workers_[rng_() % workers_.size()];
      if (w.up && w.connected && !w.last_results.empty()) w.outbox.push_back(w.last_results);
    } else if (f < 60) {
      // The application's link drops, or comes back.
      if (app_.connected) {
        app_.connected = false;
        app_.outbox.clear();
      } else {
        reconnect_app();
      }
    } else if (f < 66) {
      // The application restarts with the same id: a new session; what it had not got
      // acknowledged is gone with it.
      for (const auto& [k, r] : app_.unacked_submits) app_.pending.erase(k);
      app_.unacked_submits.clear();
      app_.session += 1000;
      app_.next_seq = 1;
      app_.outbox.clear();
      app_.connected = true;
      app_.peer = "app#" + std::to_string(peer_counter_++);
      say_app_hello();
    } else if (f < 72) {
      restart_scheduler();
    } else if (f < 80) {
      add_worker();
    }
  }

  bool done() const {
    for (const auto& k : app_.pending) {
      if (app_.acked.count(k)) return false;
    }
    return true;
  }

  TaskKey first_missing() const {
    for (const auto& k : app_.pending) {
      if (app_.acked.count(k)) return k;
    }
    return {};
  }

  std::mt19937_64 rng_;
  CoreOptions options_;
  SimTransport transport_;
  SimJournal journal_;
  std::unique_ptr<SchedulerCore> core_;
  TimePoint now_ = TimePoint{} + 1000s;
  std::deque<SimWorker> workers_;  // stable addresses
  SimApp app_;
  uint64_t next_uid_ = 1;
  uint64_t peer_counter_ = 0;
  int restarts_ = 0;
  std::string failure_;
};

std::string run_seed(uint64_t seed, int steps) {
  Simulation sim(seed);
  for (int i = 0; i < steps; ++i) {
    std::string f = sim.step(/*faults=*/true);
    if (!f.empty()) return "step " + std::to_string(i) + ": " + f;
  }
  return sim.settle();
}

TEST(SchedulerSimulationTest, RandomFaultsNeverLoseOrDuplicateATask) {
  std::vector<uint64_t> seeds;
  if (const char* one = std::getenv("LRTS_SIM_SEED")) {
    seeds.push_back(std::strtoull(one, nullptr, 10));
  } else {
    for (uint64_t s = 1; s <= 60; ++s) seeds.push_back(s);
  }
  for (uint64_t seed : seeds) {
    const std::string failure = run_seed(seed, 3000);
    ASSERT_TRUE(failure.empty()) << "seed " << seed << " failed: " << failure
                                 << "\n  replay: LRTS_SIM_SEED=" << seed
                                 << " unit_tests --gtest_filter='SchedulerSimulation*'";
  }
}

TEST(SchedulerSimulationTest, TheSimulationDoesWork) {
  // Guards against a simulation that passes by doing nothing.
  Simulation sim(12345);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(sim.step(true), "");
  ASSERT_EQ(sim.settle(), "");
  EXPECT_GT(sim.results_accepted(), 500u);
}

}  // namespace
}  // namespace lrts::scheduler
