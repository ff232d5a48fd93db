// Deterministic simulation of a whole cluster on the real cores: the SchedulerCore, real
// WorkerCores (their Executor and Dispatch, with simulated slot processes), a real client
// SessionCore, and the real journal (records encoded and applied to an in-memory SQLite by
// JournalStore, loaded back after a restart). Seeded random submissions, work, collections,
// cancels, heartbeats, slot crashes and recalls, worker crashes and cut-offs, application
// restarts, duplicated and reordered messages, journal commits and scheduler restarts, and (in
// the relay runs) real RelayCores between some workers and the scheduler: relays that die and
// come back, workers that move between relays (or to the scheduler) mid-task, duplicated and
// reordered relay batches and summaries — with
// invariants checked after every step:
//   - the scheduler core's own consistency (verify());
//   - every result the application gets is correct and within its task's attempt limit;
//   - an application run never gets one result twice, and no result comes back after its
//     collection was committed;
//   - at the end, after the faults stop, every task the scheduler acknowledged has been
//     collected (nothing accepted is forgotten).
// A failing seed prints itself; LRTS_SIM_SEED=<seed> replays just that one, LRTS_SIM_SEEDS=<n>
// runs n of them.
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "client/session.hpp"
#include "common/log.hpp"
#include "protocol/codec.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/relay_ids.hpp"
#include "relay/relay_core.hpp"
#include "scheduler/core.hpp"
#include "scheduler/journal_records.hpp"
#include "scheduler/journal_store.hpp"
#include "worker/core.hpp"

namespace lrts::scheduler {
namespace {

using namespace std::chrono_literals;
using protocol::TaskKey;
using protocol::TaskStatus;

// What a task computes: a function of its key (and of its fields' size), so any result can be
// checked.
std::string expected_value(const TaskKey& k, size_t fields_size) {
  std::string out;
  protocol::mp::Writer(out).uint(k.seq * 7 + 1 + fields_size);
  return out;
}

// Fields of a task: small, or now and then larger than a batch carries (they then travel as a
// stream on every hop).
std::string fields_for(uint64_t seq, bool large) {
  return std::string(large ? 300'000 + seq % 1000 : 3 + seq % 5, static_cast<char>('a' + seq % 26));
}

// ---- the journal: the real records, applied to a real store at commit ----------------------

uint64_t trace_seq();

class SimJournal final : public JournalSink {
 public:
  void trace(const char* what, const TaskKey& k) {
    if (k.seq == trace_seq()) {
      std::fprintf(stderr, "trace: journal %s %s (record %zu)\n", what,
                   protocol::format_service_id(k).c_str(), pending_.size() + committed_);
    }
  }
  SimJournal() : store_(std::move(*JournalStore::open(":memory:", false))) {}

  void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                      std::string_view fields, uint64_t fields_blob, uint32_t max_retries,
                      uint32_t timeout_ms) override {
    trace("submit", key);
    w_.task_submitted(key, app_id, name, fields, fields_blob, max_retries, timeout_ms);
    pending_.push_back({w_.take(), {}});
  }
  void task_assigned(const TaskKey& key, uint32_t attempt, uint64_t worker_uid) override {
    w_.task_assigned(key, attempt, worker_uid);
    pending_.push_back({w_.take(), {}});
  }
  void task_finished(const TaskKey& key, TaskStatus status, std::string_view payload,
                     uint64_t payload_blob, uint32_t attempt, std::string_view worker,
                     uint64_t run_ns) override {
    trace("finish", key);
    w_.task_finished(key, status, payload, payload_blob, attempt, worker, run_ns);
    pending_.push_back({w_.take(), {}});
  }
  void task_removed(const TaskKey& key) override {
    trace("remove", key);
    w_.task_removed(key);
    pending_.push_back({w_.take(), key});
  }
  void app_registered(std::string_view app_id, uint64_t grace_ms, bool detached,
                      std::string_view owner) override {
    w_.app_registered(app_id, grace_ms, detached, owner);
    pending_.push_back({w_.take(), {}});
  }
  void app_removed(std::string_view app_id) override {
    w_.app_removed(app_id);
    pending_.push_back({w_.take(), {}});
  }

  // Makes the first `n` pending records durable, as a commit would.
  std::string commit(size_t n) {
    n = std::min(n, pending_.size());
    if (n == 0) return {};
    if (trace_seq()) std::fprintf(stderr, "trace: journal commits up to %zu\n", committed_ + n);
    std::vector<std::string> batches;
    for (size_t i = 0; i < n; ++i) {
      batches.push_back(std::move(pending_[i].first));
      if (pending_[i].second != TaskKey{}) removed_.insert(pending_[i].second);
    }
    pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(n));
    JournalStats stats;
    if (auto s = store_->apply(batches, &stats); !s) return "journal apply failed: " + s.error();
    committed_ += n;
    return {};
  }
  uint64_t committed() const { return committed_; }
  // A crash: what was not committed is gone; counting restarts with the new process.
  RecoveredState crash(std::string* failure) {
    pending_.clear();
    committed_ = 0;
    auto state = store_->load();
    if (!state) {
      *failure = "journal load failed: " + state.error();
      return {};
    }
    return std::move(*state);
  }
  // Whether the journal durably holds that this task was collected.
  bool removed(const TaskKey& k) const { return removed_.count(k) != 0; }
  void resubmitted(const TaskKey& k) { removed_.erase(k); }

 private:
  std::unique_ptr<JournalStore> store_;
  records::RecordWriter w_;
  std::deque<std::pair<std::string, TaskKey>> pending_;
  std::set<TaskKey> removed_;
  uint64_t committed_ = 0;
};

// ---- the network ----------------------------------------------------------------------------

struct Wire {
  std::deque<std::string> to_scheduler;  // from this peer
  std::deque<std::string> from_scheduler;
};

uint64_t trace_seq();

class SimTransport final : public Transport {
 public:
  void send_app(const PeerId& peer, const protocol::ToApp& message) override {
    protocol::encode(message, to_peer[peer].emplace_back());
  }
  void send_worker(const PeerId& peer, const protocol::ToWorker& message) override {
    if (auto* c = std::get_if<protocol::Chunk>(&message); c && trace_seq()) {
      std::fprintf(stderr, "trace: scheduler streams %llu at %llu/%llu to %s\n",
                   static_cast<unsigned long long>(c->stream),
                   static_cast<unsigned long long>(c->offset),
                   static_cast<unsigned long long>(c->total), peer.c_str());
    }
    if (auto* a = std::get_if<protocol::Assign>(&message); a && trace_seq()) {
      for (const auto& t : a->tasks) {
        if (t.key.seq == trace_seq()) {
          std::fprintf(stderr, "trace: scheduler assigns %s:%u to %s\n",
                       protocol::format_service_id(t.key).c_str(), t.attempt, peer.c_str());
        }
      }
    }
    protocol::encode(message, to_peer[peer].emplace_back());
  }
  void send_relay(const PeerId& peer, const protocol::ToRelay& message) override {
    protocol::encode(message, to_peer[peer].emplace_back());
  }
  std::map<std::string, std::deque<std::string>> to_peer;
};

// ---- a relay: a real RelayCore --------------------------------------------------------------

struct SimRelay final : relay::RelayLink {
  SimRelay(uint64_t uid, std::string peer_id) : peer(std::move(peer_id)) {
    core = std::make_unique<relay::RelayCore>(relay::RelayCoreOptions{uid}, *this);
  }
  bool to_worker(std::string_view routing_id, std::string_view bytes) override {
    to_workers[std::string(routing_id)].emplace_back(bytes);
    return true;
  }
  void to_upstream(std::string_view bytes) override {
    upstream.emplace_back(bytes);
    auto m = protocol::decode<protocol::ToScheduler>(bytes);
    if (m && std::holds_alternative<protocol::RelaySummary>(*m)) last_summary.assign(bytes);
  }

  std::string peer;  // its routing id at the scheduler
  bool up = true;
  std::unique_ptr<relay::RelayCore> core;
  std::deque<std::string> upstream;
  std::map<std::string, std::deque<std::string>> to_workers;
  std::string last_summary;  // for duplicating
};

// ---- a worker: a real WorkerCore with simulated slot processes ------------------------------

struct SimSlot {
  bool starting = true;  // the pool starts every slot with the worker
  bool dying = false;
  std::deque<uint32_t> queue;  // the order it runs them
  std::vector<uint32_t> recall;
};

struct SimWorker final : worker::SlotControl, worker::WorkerLink {
  explicit SimWorker(uint64_t uid, int slots, std::string peer_id) : peer(std::move(peer_id)) {
    slots_.resize(static_cast<size_t>(slots));
    worker::WorkerCoreOptions o;
    o.uid = uid;
    o.name = "worker-" + std::to_string(uid);
    o.services = {"svc"};
    o.max_message_bytes = protocol::kMinMaxMessageBytes;  // small: large fields stream
    o.executor.slots = slots;
    core = std::make_unique<worker::WorkerCore>(std::move(o), *this, *this);
  }

  // SlotControl
  void start_slot(int slot) override { slots_[slot] = SimSlot{}; }
  void run(int slot, const std::vector<uint32_t>& refs,
           const std::vector<const worker::LocalTask*>& tasks) override {
    for (size_t i = 0; i < refs.size(); ++i) {
      slots_[slot].queue.push_back(refs[i]);
      fields_size[refs[i]] = tasks[i]->fields.size();
      keys[refs[i]] = tasks[i]->key;
    }
  }
  void recall(int slot, const std::vector<uint32_t>& refs) override {
    auto& r = slots_[slot].recall;
    r.insert(r.end(), refs.begin(), refs.end());
  }
  void kill(int slot) override { slots_[slot].dying = true; }

  // WorkerLink
  void send(const protocol::ToScheduler& message) override;
  void send_checked(const protocol::ToScheduler& message) {
    if (!connected) return;  // lost on the wire
    protocol::encode(message, wire.to_scheduler.emplace_back());
    if (std::holds_alternative<protocol::WorkerResults>(message)) {
      last_results = wire.to_scheduler.back();
    }
  }
  void bars(std::vector<protocol::BarState>&) override {}
  void session_owner(uint64_t, std::string_view) override {}

  // One thing happens in one slot.
  void step(std::mt19937_64& rng, TimePoint now, bool faults) {
    if (slots_.empty()) return;
    const int i = static_cast<int>(rng() % slots_.size());
    SimSlot& s = slots_[i];
    if (s.starting) {
      s.starting = false;
      core->on_slot_hello(i, now);
    } else if (s.dying) {
      s = SimSlot{};
      s.starting = false;
      s.dying = false;
      core->on_slot_exit(i, "killed by signal 9 (Killed)", {}, now);
    } else if (!s.recall.empty()) {
      std::vector<uint32_t> back;
      for (uint32_t ref : s.recall) {
        auto it = std::find(s.queue.begin(), s.queue.end(), ref);
        if (it != s.queue.end() && it != s.queue.begin()) {  // not started yet
          back.push_back(ref);
          s.queue.erase(it);
        }
      }
      s.recall.clear();
      core->on_slot_recalled(i, back);
    } else if (!s.queue.empty()) {
      if (faults && rng() % 25 == 0) {  // the slot crashes while running its task
        s.queue.clear();
        core->on_slot_exit(i, "killed by signal 11 (Segmentation fault)", {}, now);
        start_slot(i);
        return;
      }
      const uint32_t ref = s.queue.front();
      s.queue.pop_front();
      std::vector<worker::SlotOutcome> out(1);
      out[0].ref = ref;
      out[0].status = TaskStatus::kFinished;
      out[0].payload = Bytes(expected_value(keys[ref], fields_size[ref]));
      out[0].run_ns = 1'000'000 + rng() % 5'000'000;
      if (!core->on_slot_results(i, out, now)) failure = "the executor refused a slot's result";
    }
  }

  std::string peer;
  bool up = true;         // the process runs
  bool connected = true;  // the network reaches it
  int relay = -1;         // the relay it speaks through (-1: the scheduler itself)
  Wire wire;
  std::string last_results;  // for duplicating
  std::unique_ptr<worker::WorkerCore> core;
  std::vector<SimSlot> slots_;
  std::map<uint32_t, size_t> fields_size;
  std::map<uint32_t, TaskKey> keys;
  std::string failure;
};

// ---- the application: a real SessionCore -----------------------------------------------------

struct SimApp final : client::SessionLink {
  SimApp(uint64_t session, std::string peer_id) : peer(std::move(peer_id)) {
    client::SessionOptions o;
    o.application_id = "sim-app";
    o.session = session;
    o.max_message_bytes = protocol::kMinMaxMessageBytes;  // small: large results stream
    core = std::make_unique<client::SessionCore>(std::move(o), *this);
  }

  void send(const protocol::ToScheduler& message) override {
    if (!linked) return;
    protocol::encode(message, wire.to_scheduler.emplace_back());
  }
  void deliver(const TaskKey& key, ServiceResult result) override;
  void deliver_checked(const TaskKey& key, ServiceResult result) {
    if (!delivered.insert(key).second) {
      failure = "this run of the application got task " + std::to_string(key.seq) + " twice";
    }
    results.emplace(key, std::move(result));
  }
  void adopt(const std::vector<TaskKey>& keys) override {
    for (const auto& k : keys) adopted.insert(k);
  }
  void connected(bool ready) override { welcomed = ready; }
  void acknowledged(uint64_t) override {}
  void fatal(const std::string& why) override { failure = "fatal: " + why; }

  std::string peer;
  bool linked = true;  // the network reaches it
  bool welcomed = false;
  Wire wire;
  std::unique_ptr<client::SessionCore> core;
  std::set<TaskKey> delivered;               // this run
  std::map<TaskKey, ServiceResult> results;  // delivered, not yet collected by the user
  std::set<TaskKey> adopted;
  std::string failure;
};

uint64_t trace_seq();

void SimWorker::send(const protocol::ToScheduler& message) {
  if (trace_seq()) {
    std::visit(
        [&](const auto& x) {
          using X = std::decay_t<decltype(x)>;
          std::string keys;
          if constexpr (requires { x.items[0].key; }) {
            for (const auto& i : x.items) {
              if (i.key.seq == trace_seq()) keys += protocol::format_service_id(i.key) + " ";
            }
          } else if constexpr (requires { x.returned; }) {
            for (const auto& i : x.returned) {
              if (i.key.seq == trace_seq()) keys += protocol::format_service_id(i.key) + " ";
            }
          }
          if (!keys.empty()) {
            std::fprintf(stderr, "trace: %s says %s %s%s\n", peer.c_str(), X::kName, keys.c_str(),
                         connected ? "" : " (lost: cut off)");
          }
        },
        message);
  }
  send_checked(message);
}

void SimApp::deliver(const TaskKey& key, ServiceResult result) {
  if (key.seq == trace_seq()) {
    std::fprintf(stderr, "trace: app %s delivered %s (%s)\n", peer.c_str(),
                 protocol::format_service_id(key).c_str(), result.to_json().c_str());
  }
  deliver_checked(key, std::move(result));
}

// ---- the world ------------------------------------------------------------------------------

class Simulation {
 public:
  explicit Simulation(uint64_t seed, int relays = 0) : rng_(seed) {
    options_.epoch = 1;
    options_.worker_timeout = 10s;
    options_.app_timeout = 10s;
    options_.app_grace = 3600s;
    options_.reclaim_grace = 5s;
    options_.result_resend = 5s;
    new_core(RecoveredState{}, /*restored=*/false);
    for (int i = 0; i < relays; ++i) {
      relays_.push_back(
          std::make_unique<SimRelay>(next_uid_++, "relay#" + std::to_string(peer_counter_++)));
    }
    for (int i = 0; i < 3 + 2 * relays; ++i) add_worker();
    new_app();
  }

  // One random step of the world. Returns a failure description, or "" if all is well.
  std::string step(bool faults) {
    const int r = static_cast<int>(rng_() % 100);
    if (r < 12) {
      submit();
    } else if (r < 38) {
      work(faults);
    } else if (r < 52) {
      deliver_to_scheduler();
    } else if (r < 66) {
      deliver_to_peers();
    } else if (r < 74) {
      advance_time(milliseconds(rng_() % 2500));
    } else if (r < 80) {
      if (auto f = journal_.commit(rng_() % 50); !f.empty()) return f;
      core_->on_journal_committed(journal_.committed());
      core_->flush(now_);
    } else if (r < 86) {
      collect();
    } else if (r < 88) {
      cancel();
    } else if (faults) {
      fault();
    }
    return check();
  }

  // Faults stop; everyone comes back; run until every acknowledged task is collected.
  std::string settle() {
    for (size_t i = 0; i < relays_.size(); ++i) {
      if (!relays_[i]->up) restart_relay(i);
    }
    for (auto& w : workers_) {
      if (!w->up) replace_worker(*w);
      if (!w->connected) {  // back on a new connection (a new routing id), as a real one would
        w->connected = true;
        w->peer = "worker#" + std::to_string(peer_counter_++);
      }
    }
    if (!app_->linked) reconnect_app();
    for (int i = 0; i < 30000 && !done(); ++i) {
      work(false);
      deliver_to_scheduler();
      deliver_to_peers();
      collect_all();
      if (i % 10 == 0) {
        if (auto f = journal_.commit(SIZE_MAX); !f.empty()) return f;
        core_->on_journal_committed(journal_.committed());
        advance_time(300ms);
      }
      if (auto f = check(); !f.empty()) return f;
    }
    if (!done()) {
      const TaskKey k = first_missing();
      const CoreStats st = core_->stats();
      std::string where;
      if (auto info = core_->task(k)) {
        where += " the scheduler has it " + info->state + " attempt " +
                 std::to_string(info->attempt) + " on '" + info->worker + "'" +
                 (info->streaming ? " (fields streaming)" : "") + ";";
      }
      size_t live = 0;
      for (const auto& w : workers_) live += w->up;
      where += " sim workers " + std::to_string(workers_.size()) + " up " + std::to_string(live);
      for (const auto& w : workers_) {
        const auto& ex = w->core->executor();
        if (uint32_t a = w->core->held_result(k)) {
          where += " result of attempt " + std::to_string(a) + " unacknowledged at " + w->peer;
        }
        if (ex.holds(k)) {
          where +=
              " held by " + w->peer + (w->up ? "" : " (down)") + (w->connected ? "" : " (cut off)");
          for (size_t i = 0; i < w->slots_.size(); ++i) {
            where += " slot" + std::to_string(i) + ":q" +
                     std::to_string(w->slots_[i].queue.size()) +
                     (w->slots_[i].starting ? ",starting" : "") + ",inflight" +
                     std::to_string(ex.dispatch().in_flight(static_cast<int>(i)).size()) +
                     (ex.dispatch().is_up(static_cast<int>(i)) ? ",up" : ",down");
          }
          where += " queued " + std::to_string(ex.dispatch().queued());
        }
      }
      return std::to_string(missing()) + " acknowledged task(s) never collected (e.g. seq " +
             std::to_string(k.seq) + " of session " + std::to_string(k.session) +
             "; core: " + std::to_string(st.queued) + " queued, " + std::to_string(st.assigned) +
             " assigned, " + std::to_string(st.done) + " done, " + std::to_string(st.workers) +
             " workers, " + std::to_string(st.apps) + " apps; restarts " +
             std::to_string(restarts_) + ";" + where + ")";
    }
    return {};
  }

  size_t collected() const { return collected_.size(); }
  int restarts() const { return restarts_; }
  int relay_faults() const { return relay_faults_; }
  uint64_t relayed_results() const { return relayed_results_; }

 private:
  std::string check() {
    if (auto s = core_->verify(); !s) return "core invariant broken: " + s.error();
    for (auto& w : workers_) {
      if (!w->failure.empty()) return w->failure;
    }
    if (!app_->failure.empty()) return app_->failure;
    return failure_;
  }

  // ---- scheduler ----
  void new_core(RecoveredState state, bool restored) {
    ++options_.epoch;
    transport_.to_peer.clear();  // what the dead scheduler had not sent is gone
    core_ = std::make_unique<SchedulerCore>(options_, transport_, blobs_, &journal_);
    if (restored) core_->restore(std::move(state), now_);
  }

  void restart_scheduler() {
    if (trace_seq()) std::fprintf(stderr, "trace: scheduler restarts\n");
    for (auto& w : workers_) w->wire.to_scheduler.clear();  // in flight to the dead one
    app_->wire.to_scheduler.clear();
    new_core(journal_.crash(&failure_), true);
    ++restarts_;
  }

  // What a worker sent reaches its relay, which hands it on (or keeps a heartbeat).
  void deliver_to_relay(SimWorker& w, std::deque<std::string>& q) {
    SimRelay& r = *relays_[static_cast<size_t>(w.relay)];
    const size_t n = q.empty() ? 0 : 1 + rng_() % q.size();
    for (size_t i = 0; i < n && !q.empty(); ++i) {
      if (q.size() >= 2 && rng_() % 20 == 0) std::swap(q[0], q[1]);
      std::string bytes = std::move(q.front());
      q.pop_front();
      auto m = protocol::decode<protocol::ToScheduler>(bytes);
      if (m && std::holds_alternative<protocol::WorkerResults>(*m)) ++relayed_results_;
      r.core->from_worker(w.peer, bytes, relay::Sender{{}, false}, now_);
    }
    r.core->flush();
  }

  void deliver_queue(const std::string& peer, std::deque<std::string>& q) {
    const size_t n = q.empty() ? 0 : 1 + rng_() % q.size();
    for (size_t i = 0; i < n && !q.empty(); ++i) {
      if (q.size() >= 2 && rng_() % 20 == 0) std::swap(q[0], q[1]);
      std::string bytes = std::move(q.front());
      q.pop_front();
      auto msg = protocol::decode<protocol::ToScheduler>(bytes);
      if (!msg) {
        failure_ = "a peer sent an undecodable message: " + msg.error().text;
        return;
      }
      if (trace_seq()) {
        std::visit(
            [&](const auto& x) {
              using X = std::decay_t<decltype(x)>;
              std::string keys;
              if constexpr (requires { x.items[0].status; }) {
                for (const auto& i : x.items) {
                  if (i.key.seq == trace_seq()) {
                    keys += protocol::format_service_id(i.key) + ":" + std::to_string(i.attempt) +
                            ":" + protocol::status_name(i.status) + " ";
                  }
                }
              } else if constexpr (requires { x.held; }) {
                for (const auto& i : x.held) {
                  if (i.key.seq == trace_seq()) {
                    keys +=
                        protocol::format_service_id(i.key) + ":" + std::to_string(i.attempt) + " ";
                  }
                }
              } else if constexpr (requires { x.returned; }) {
                for (const auto& i : x.returned) {
                  if (i.key.seq == trace_seq()) keys += protocol::format_service_id(i.key) + " ";
                }
              } else if constexpr (requires { x.keys; }) {
                for (const auto& k : x.keys) {
                  if (k.seq == trace_seq()) keys += protocol::format_service_id(k) + " ";
                }
              } else if constexpr (requires { x.tasks; }) {
                for (const auto& t : x.tasks) {
                  if (t.seq == trace_seq())
                    keys += std::to_string(x.session) + ":" + std::to_string(t.seq) + " ";
                }
              }
              if (!keys.empty() || std::is_same_v<X, protocol::WorkerHello>) {
                std::fprintf(stderr, "trace: from %s: %s %s\n", peer.c_str(), X::kName,
                             keys.c_str());
              }
            },
            *msg);
      }
      core_->on_message(peer, *msg, now_);
    }
  }

  void deliver_to_scheduler() {
    std::vector<size_t> order;
    for (size_t i = 0; i <= workers_.size() + relays_.size(); ++i) order.push_back(i);
    std::shuffle(order.begin(), order.end(), rng_);
    for (size_t i : order) {
      if (i == workers_.size()) {
        if (app_->linked) deliver_queue(app_->peer, app_->wire.to_scheduler);
      } else if (i > workers_.size()) {
        SimRelay& r = *relays_[i - workers_.size() - 1];
        if (r.up) deliver_queue(r.peer, r.upstream);
      } else if (workers_[i]->up && workers_[i]->connected) {
        SimWorker& w = *workers_[i];
        if (w.relay < 0) {
          deliver_queue(w.peer, w.wire.to_scheduler);
        } else if (relays_[static_cast<size_t>(w.relay)]->up) {
          deliver_to_relay(w, w.wire.to_scheduler);
        } else {
          w.wire.to_scheduler.clear();  // to a relay that is not there
        }
      }
    }
    core_->on_tick(now_);
    core_->flush(now_);
  }

  // What the scheduler sent a relay, or a worker behind one: the transport wraps the latter
  // into RELAY_DOWN, as the server's does.
  bool deliver_to_relay_peer(const std::string& peer, std::deque<std::string>& msgs) {
    SimRelay* r = nullptr;
    const std::string via = protocol::is_relayed(peer) ? protocol::relay_of(peer) : peer;
    for (auto& x : relays_) {
      if (x->peer == via) r = x.get();
    }
    if (!r) return false;
    const auto path = protocol::relay_path(peer);
    while (!msgs.empty()) {
      std::string bytes = std::move(msgs.front());
      msgs.pop_front();
      if (!r->up) continue;  // lost with it
      if (path) {
        protocol::RelayDown down;
        down.items.push_back({path->subs[0], bytes});
        std::string wrapped;
        protocol::encode(down, wrapped);
        bytes = std::move(wrapped);
      }
      r->core->from_upstream(bytes, now_);
    }
    return true;
  }

  // What relays send their workers.
  void deliver_from_relays() {
    for (auto& r : relays_) {
      for (auto& [rid, msgs] : r->to_workers) {
        SimWorker* w = worker_by_peer(rid);
        while (!msgs.empty()) {
          std::string bytes = std::move(msgs.front());
          msgs.pop_front();
          if (!r->up || !w || !w->up || !w->connected || w->relay < 0 ||
              relays_[static_cast<size_t>(w->relay)].get() != r.get()) {
            continue;  // lost on the wire
          }
          auto m = protocol::decode<protocol::ToWorker>(bytes);
          if (!m) {
            failure_ = "a relay sent a worker an undecodable message: " + m.error().text;
            return;
          }
          w->core->on_message(*m, now_);
          w->core->on_tick(now_);
          w->core->flush(now_);
        }
      }
    }
  }

  void deliver_to_peers() {
    deliver_from_scheduler();
    deliver_from_relays();
  }

  void deliver_from_scheduler() {
    for (auto& entry : transport_.to_peer) {
      const auto& peer = entry.first;  // a plain name: lambdas below capture it
      auto& msgs = entry.second;
      if (deliver_to_relay_peer(peer, msgs)) continue;
      SimWorker* w = worker_by_peer(peer);
      const bool is_app = peer == app_->peer;
      const bool reachable = is_app ? app_->linked : (w && w->up && w->connected);
      while (!msgs.empty()) {
        std::string bytes = std::move(msgs.front());
        msgs.pop_front();
        if (!reachable) continue;  // lost on the wire
        if (is_app) {
          auto m = protocol::decode<protocol::ToApp>(bytes);
          if (!m) {
            failure_ = "the scheduler sent the application an undecodable message";
            return;
          }
          // What the scheduler accepted (acknowledged once its journal holds it) it must end.
          if (trace_seq()) {
            std::visit(
                [&](const auto& x) {
                  using X = std::decay_t<decltype(x)>;
                  std::string keys;
                  if constexpr (requires { x.items; }) {
                    for (const auto& i : x.items) {
                      if (i.key.seq == trace_seq())
                        keys += protocol::format_service_id(i.key) + " ";
                    }
                  } else if constexpr (requires { x.keys; }) {
                    for (const auto& k : x.keys) {
                      if (k.seq == trace_seq()) keys += protocol::format_service_id(k) + " ";
                    }
                  }
                  if (!keys.empty() || std::is_same_v<X, protocol::AppWelcome>) {
                    std::fprintf(stderr, "trace: to app %s: %s %s\n", peer.c_str(), X::kName,
                                 keys.c_str());
                  }
                },
                *m);
          }
          if (auto* ack = std::get_if<protocol::SubmitAck>(&*m)) {
            for (uint64_t seq : ack->seqs) {
              acked_.insert({ack->session, seq});
              if (seq == trace_seq()) {
                std::fprintf(stderr, "trace: to app %s: submit ack %llu:%llu\n", peer.c_str(),
                             static_cast<unsigned long long>(ack->session),
                             static_cast<unsigned long long>(seq));
              }
            }
          }
          app_->core->on_message(*m, now_);
          check_new_results();
          app_->core->flush(now_);
        } else if (w) {
          auto m = protocol::decode<protocol::ToWorker>(bytes);
          if (!m) {
            failure_ = "the scheduler sent a worker an undecodable message";
            return;
          }
          if (trace_seq()) {
            std::visit(
                [&](const auto& x) {
                  using X = std::decay_t<decltype(x)>;
                  std::string keys;
                  if constexpr (requires { x.tasks; }) {
                    for (const auto& i : x.tasks) {
                      if (i.key.seq == trace_seq()) {
                        keys += protocol::format_service_id(i.key) + ":" +
                                std::to_string(i.attempt) + " ";
                      }
                    }
                  } else if constexpr (requires { x.acked; }) {
                    for (const auto& i : x.acked) {
                      if (i.key.seq == trace_seq())
                        keys += protocol::format_service_id(i.key) + " ";
                    }
                  } else if constexpr (requires { x.keys; }) {
                    for (const auto& k : x.keys) {
                      if (k.seq == trace_seq()) keys += protocol::format_service_id(k) + " ";
                    }
                  } else if constexpr (requires { x.cancel; }) {
                    for (const auto& k : x.cancel) {
                      if (k.seq == trace_seq()) keys += protocol::format_service_id(k) + " ";
                    }
                  }
                  if (!keys.empty()) {
                    std::fprintf(stderr, "trace: to worker %s: %s %s\n", w->peer.c_str(), X::kName,
                                 keys.c_str());
                  }
                },
                *m);
          }
          w->core->on_message(*m, now_);
          w->core->on_tick(now_);
          w->core->flush(now_);
        }
      }
    }
  }

  // ---- time ----
  void advance_time(Duration d) {
    now_ += d;
    for (auto& r : relays_) {
      if (r->up) r->core->on_tick(now_);
    }
    for (auto& w : workers_) {
      if (!w->up) continue;
      w->core->on_tick(now_);
      w->core->flush(now_);
    }
    app_->core->on_tick(now_);
    app_->core->flush(now_);
    deliver_to_scheduler();
  }

  // ---- workers ----
  SimWorker* worker_by_peer(const std::string& peer) {
    for (auto& w : workers_) {
      if (w->peer == peer) return w.get();
    }
    return nullptr;
  }

  void add_worker() {
    workers_.push_back(std::make_unique<SimWorker>(next_uid_++, 1 + static_cast<int>(rng_() % 3),
                                                   "worker#" + std::to_string(peer_counter_++)));
    if (!relays_.empty() && rng_() % 3)
      workers_.back()->relay = static_cast<int>(rng_() % relays_.size());
    workers_.back()->core->on_tick(now_);
  }

  void replace_worker(SimWorker& w) {  // a new process: a new uid, nothing of the old one
    auto fresh = std::make_unique<SimWorker>(next_uid_++, 1 + static_cast<int>(rng_() % 3),
                                             "worker#" + std::to_string(peer_counter_++));
    fresh->relay = w.relay;
    for (auto& x : workers_) {
      if (x.get() == &w) x = std::move(fresh), x->core->on_tick(now_);
    }
  }

  void work(bool faults) {
    if (workers_.empty()) return;
    SimWorker& w = *workers_[rng_() % workers_.size()];
    if (!w.up) return;
    w.step(rng_, now_, faults);
    w.core->on_tick(now_);
    w.core->flush(now_);
  }

  // ---- the application ----
  void new_app() {
    if (trace_seq()) std::fprintf(stderr, "trace: application restarts\n");
    session_ += 1000;
    app_ = std::make_unique<SimApp>(session_, "app#" + std::to_string(peer_counter_++));
    next_seq_ = 1;
    app_->core->on_tick(now_);
  }

  // ---- relays ----
  // A worker on a new connection: to a relay or straight to the scheduler. Told so (a
  // failover to the next address) or not (libzmq reconnected it to a relay restarted at the
  // same address).
  void move_worker(SimWorker& w) {
    w.wire.to_scheduler.clear();
    w.peer = "worker#" + std::to_string(peer_counter_++);
    w.connected = true;
    w.relay = rng_() % 3 == 0 ? -1 : static_cast<int>(rng_() % relays_.size());
    if (rng_() % 2) w.core->on_new_link(now_);
    w.core->flush(now_);
  }

  void restart_relay(size_t i) {
    relays_[i] =
        std::make_unique<SimRelay>(next_uid_++, "relay#" + std::to_string(peer_counter_++));
  }

  void relay_fault() {
    ++relay_faults_;
    const size_t i = rng_() % relays_.size();
    SimRelay& r = *relays_[i];
    const int f = static_cast<int>(rng_() % 100);
    if (f < 25) {
      // A relay dies (SIGKILL): what it held is gone; its workers reconnect elsewhere, or to it
      // once it is back.
      if (r.up) {
        r.up = false;
        for (auto& w : workers_) {
          if (w->relay == static_cast<int>(i) && rng_() % 2) move_worker(*w);
        }
      } else {
        restart_relay(i);
      }
    } else if (f < 45) {
      // A worker moves to another relay (or to the scheduler) mid-task.
      SimWorker& w = *workers_[rng_() % workers_.size()];
      if (w.up) move_worker(w);
    } else if (f < 65) {
      // A relay's summary arrives twice (or late).
      if (r.up && !r.last_summary.empty()) r.upstream.push_back(r.last_summary);
    } else if (f < 80) {
      // A relay's upstream connection is replaced (a new routing id at the scheduler).
      if (r.up) {
        r.peer = "relay#" + std::to_string(peer_counter_++);
        r.upstream.clear();
        r.core->new_upstream();
      }
    } else if (r.up && r.upstream.size() >= 2) {
      std::swap(r.upstream[0], r.upstream[r.upstream.size() - 1]);  // batches reordered
    }
  }

  void reconnect_app() {
    if (trace_seq()) std::fprintf(stderr, "trace: application reconnects\n");
    app_->linked = true;
    app_->peer = "app#" + std::to_string(peer_counter_++);  // a new connection, a new routing id
  }

  void submit() {
    const size_t n = 1 + rng_() % 8;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t seq = next_seq_++;
      const TaskKey k{session_, seq};
      client::Submission s;
      s.seq = seq;
      s.name = "svc";
      s.fields = Bytes(fields_for(seq, rng_() % 40 == 0));
      s.max_retries = static_cast<uint32_t>(rng_() % 4);
      max_retries_[k] = s.max_retries;
      fields_size_[k] = s.fields.size();
      submitted_.insert(k);
      app_->core->submit(std::move(s));
    }
    app_->core->flush(now_);
  }

  void cancel() {
    if (submitted_.empty()) return;
    auto it = submitted_.begin();
    std::advance(it, static_cast<long>(rng_() % submitted_.size()));
    if (it->session != session_) return;
    cancelled_.insert(*it);
    app_->core->cancel({*it});
    app_->core->flush(now_);
  }

  // The user hands out some of what arrived.
  void collect() {
    std::vector<TaskKey> keys;
    for (auto it = app_->results.begin(); it != app_->results.end();) {
      if (rng_() % 2) {
        ++it;
        continue;
      }
      keys.push_back(it->first);
      if (it->first.seq == trace_seq()) {
        std::fprintf(stderr, "trace: collected %s\n",
                     protocol::format_service_id(it->first).c_str());
      }
      collected_[it->first]++;
      it = app_->results.erase(it);
    }
    app_->core->collected(keys);
    app_->core->flush(now_);
  }

  void collect_all() {
    std::vector<TaskKey> keys;
    for (auto& [k, r] : app_->results) {
      keys.push_back(k);
      collected_[k]++;
    }
    app_->results.clear();
    app_->core->collected(keys);
    app_->core->flush(now_);
  }

  void check_new_results() {
    for (const auto& [key, r] : app_->results) {
      if (checked_.count({app_.get(), key})) continue;
      checked_.insert({app_.get(), key});
      if (journal_.removed(key)) {
        failure_ = "task " + std::to_string(key.seq) +
                   " came back after its collection was "
                   "committed";
        return;
      }
      const uint32_t limit = max_retries_[key] + 1;
      const std::string seq = std::to_string(key.seq);
      if (r.attempt() > limit) {
        failure_ = "task " + seq + " used attempt " + std::to_string(r.attempt()) + " of " +
                   std::to_string(limit);
      } else if (r.status() == ServiceStatus::finished) {
        if (r.payload() != expected_value(key, fields_size_[key])) {
          failure_ = "task " + seq + ": wrong result (attempt " + std::to_string(r.attempt()) + ")";
        }
      } else if (r.status() == ServiceStatus::failed) {
        const std::string e = r.error();
        if (e.rfind("gave up after", 0) != 0 && e.rfind("lost: the scheduler", 0) != 0) {
          failure_ = "task " + seq + " failed for an unexpected reason: " + e;
        }
      } else if (r.status() == ServiceStatus::cancelled) {
        if (!cancelled_.count(key)) failure_ = "task " + seq + " cancelled unasked";
      } else {
        failure_ = "task " + seq + " has status " + to_string(r.status());
      }
    }
  }

  // ---- faults ----
  void fault() {
    if (!relays_.empty() && rng_() % 3 == 0) return relay_fault();
    const int f = static_cast<int>(rng_() % 100);
    if (f < 15) {
      // A worker process dies: what it held is gone; later a new process comes.
      SimWorker& w = *workers_[rng_() % workers_.size()];
      if (w.up) {
        w.up = false;
      } else {
        replace_worker(w);
      }
    } else if (f < 35) {
      // A worker is cut off (or comes back, on a new connection).
      SimWorker& w = *workers_[rng_() % workers_.size()];
      if (!w.up) return;
      if (w.connected) {
        w.connected = false;
        w.wire.to_scheduler.clear();
      } else {
        w.connected = true;
        w.peer = "worker#" + std::to_string(peer_counter_++);
      }
    } else if (f < 45) {
      // A worker's results arrive twice.
      SimWorker& w = *workers_[rng_() % workers_.size()];
      if (w.up && w.connected && !w.last_results.empty()) {
        w.wire.to_scheduler.push_back(w.last_results);
      }
    } else if (f < 55) {
      // The application's link drops, or comes back.
      if (app_->linked) {
        app_->linked = false;
        app_->wire.to_scheduler.clear();
      } else {
        reconnect_app();
      }
    } else if (f < 62) {
      // The application restarts with the same id: a new session. What it had not collected
      // comes again; what it never got acknowledged is gone with it.
      std::set<TaskKey> keep;
      for (const auto& k : submitted_) {
        if (k.session != session_) keep.insert(k);
      }
      for (const auto& k : acked_) keep.insert(k);
      submitted_ = keep;
      new_app();
    } else if (f < 70) {
      restart_scheduler();
    } else if (f < 78) {
      add_worker();
    }
  }

  size_t missing() {
    size_t n = 0;
    for (const auto& k : acked_) n += collected_.count(k) ? 0 : 1;
    return n;
  }
  bool done() { return missing() == 0; }
  TaskKey first_missing() {
    for (const auto& k : acked_) {
      if (!collected_.count(k)) return k;
    }
    return {};
  }

  std::mt19937_64 rng_;
  CoreOptions options_;
  SimTransport transport_;
  SimJournal journal_;
  MemoryBlobStore blobs_;  // like files: they outlive a scheduler process
  std::unique_ptr<SchedulerCore> core_;
  TimePoint now_ = TimePoint{} + 1000s;
  std::vector<std::unique_ptr<SimWorker>> workers_;
  std::vector<std::unique_ptr<SimRelay>> relays_;
  int relay_faults_ = 0;
  uint64_t relayed_results_ = 0;
  std::unique_ptr<SimApp> app_;
  uint64_t session_ = 0;
  uint64_t next_seq_ = 1;
  std::set<TaskKey> submitted_, acked_, cancelled_;
  std::map<TaskKey, uint32_t> max_retries_;
  std::map<TaskKey, size_t> fields_size_;
  std::map<TaskKey, int> collected_;
  std::set<std::pair<const SimApp*, TaskKey>> checked_;
  uint64_t next_uid_ = 1;
  uint64_t peer_counter_ = 0;
  int restarts_ = 0;
  std::string failure_;
};

// LRTS_SIM_TRACE=<seq>: what happens to tasks with that sequence number, on stderr.
uint64_t trace_seq() {
  static const uint64_t seq = [] {
    const char* t = std::getenv("LRTS_SIM_TRACE");
    return t ? std::strtoull(t, nullptr, 10) : 0;
  }();
  return seq;
}

std::string run_seed(uint64_t seed, int steps) {
  lrts::log::logger().set_level(spdlog::level::err);  // the faults are the point: no warnings
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
    const char* many = std::getenv("LRTS_SIM_SEEDS");
    const uint64_t n = many ? std::strtoull(many, nullptr, 10) : 200;
    for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  }
  for (uint64_t seed : seeds) {
    const std::string failure = run_seed(seed, 3000);
    ASSERT_TRUE(failure.empty()) << "seed " << seed << " failed: " << failure
                                 << "\n  replay: LRTS_SIM_SEED=" << seed
                                 << " unit_tests --gtest_filter='SchedulerSimulation*'";
  }
}

std::string run_relay_seed(uint64_t seed, int steps) {
  lrts::log::logger().set_level(spdlog::level::err);
  Simulation sim(seed, /*relays=*/2);
  for (int i = 0; i < steps; ++i) {
    std::string f = sim.step(/*faults=*/true);
    if (!f.empty()) return "step " + std::to_string(i) + ": " + f;
  }
  return sim.settle();
}

TEST(SchedulerSimulationTest, RelaysThatDieReorderAndRepeatNeverLoseOrDuplicateATask) {
  std::vector<uint64_t> seeds;
  if (const char* one = std::getenv("LRTS_SIM_SEED")) {
    seeds.push_back(std::strtoull(one, nullptr, 10));
  } else {
    const char* many = std::getenv("LRTS_SIM_SEEDS");
    const uint64_t n = many ? std::strtoull(many, nullptr, 10) : 100;
    for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  }
  for (uint64_t seed : seeds) {
    const std::string failure = run_relay_seed(seed, 3000);
    ASSERT_TRUE(failure.empty()) << "seed " << seed << " failed: " << failure
                                 << "\n  replay: LRTS_SIM_SEED=" << seed
                                 << " unit_tests --gtest_filter='SchedulerSimulation*Relays*'";
  }
}

TEST(SchedulerSimulationTest, TheRelaySimulationCarriesWork) {
  // Guards against relays that pass by carrying nothing.
  Simulation sim(777, 2);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(sim.step(true), "");
  ASSERT_EQ(sim.settle(), "");
  EXPECT_GT(sim.collected(), 500u);
  EXPECT_GT(sim.relay_faults(), 20);
  EXPECT_GT(sim.relayed_results(), 100u);
}

TEST(SchedulerSimulationTest, TheSimulationDoesWork) {
  // Guards against a simulation that passes by doing nothing.
  Simulation sim(12345);
  for (int i = 0; i < 3000; ++i) ASSERT_EQ(sim.step(true), "");
  ASSERT_EQ(sim.settle(), "");
  EXPECT_GT(sim.collected(), 500u);
  EXPECT_GT(sim.restarts(), 0);
}

}  // namespace
}  // namespace lrts::scheduler
