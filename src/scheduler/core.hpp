// SchedulerCore: the scheduler's whole state machine, with no I/O.
//
// DESIGN
// Events come in as decoded messages (with the sender's routing id) and as clock ticks; every
// call carries `now`, and the core never reads a clock, opens a socket or starts a thread. What it
// wants to say goes out through the Transport interface as encoded messages (so a test can decode
// and inspect them), and durable changes go to a JournalSink. This makes the core deterministic:
// tests and simulations drive it with a fake transport and a hand-moved clock.
//
// Output is batched: event handlers only change state and note what has to be said; flush()
// turns those notes into one message per peer (one ASSIGN per worker, one RESULTS per
// application, ...). The server calls flush() after draining a burst of messages, so a thousand
// results from ten messages leave as one batch.
//
// Durability: every change that must survive a restart goes to a JournalSink (submitted,
// attempts, finished, removed, application records). Acknowledgements that let a peer forget
// something — SUBMIT_ACK to an application, RESULT_ACK to a worker — are held back until the
// journal reports those records committed (on_journal_committed), so a crash can lose nothing
// that was acknowledged. Results to applications and assignments to workers do not wait: a lost
// one is simply redone. After a restart, restore() reloads the journal; tasks that were running
// wait `reclaim_grace` for their workers to come back and claim them, then are queued again.
//
// Task life: queued -> assigned(worker, attempt k) -> done(result held until the application
// acknowledges it) -> erased. A lost attempt (worker lost, slot crashed) goes back to queued with
// attempt k+1 until max_retries is used up, then ends as failed with the reason. The first
// terminal result for a task wins; later ones (a stale attempt, a duplicate) are acknowledged to
// the worker and dropped, so each result reaches the application once.
//
// Not thread-safe: one thread owns a core.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "scheduler/task_index.hpp"

namespace lrts::scheduler {

using protocol::TaskKey;
using PeerId = std::string;  // ZeroMQ routing id

// Where the core's messages go. The messages' views are valid only during the call.
class Transport {
 public:
  virtual ~Transport() = default;
  // To an application, or to a peer not known yet (errors).
  virtual void send_app(const PeerId& peer, const protocol::ToApp& message) = 0;
  virtual void send_worker(const PeerId& peer, const protocol::ToWorker& message) = 0;
};

// Where durable changes go. The views are valid only during the call.
class JournalSink {
 public:
  virtual ~JournalSink() = default;
  virtual void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                              std::string_view fields, uint32_t max_retries,
                              uint32_t timeout_ms) = 0;
  // Attempts used so far (after a lost attempt).
  virtual void task_attempts(const TaskKey& key, uint32_t attempts) = 0;
  virtual void task_finished(const TaskKey& key, protocol::TaskStatus status,
                             std::string_view payload, uint32_t attempt, std::string_view worker,
                             uint64_t run_ns) = 0;
  virtual void task_removed(const TaskKey& key) = 0;
  virtual void app_registered(std::string_view app_id, uint64_t grace_ms) = 0;
  virtual void app_removed(std::string_view app_id) = 0;
};

// What a journal holds, loaded at start.
struct RecoveredTask {
  TaskKey key;
  std::string app_id;
  std::string name;
  std::string fields;
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  uint32_t attempts = 0;
  bool done = false;
  protocol::TaskStatus status = protocol::TaskStatus::kFinished;
  std::string result;
  std::string worker;
  uint64_t run_ns = 0;
};

struct RecoveredApp {
  std::string app_id;
  uint64_t grace_ms = 0;
};

struct RecoveredState {
  std::vector<RecoveredApp> apps;
  std::vector<RecoveredTask> tasks;
};

struct CoreOptions {
  uint64_t epoch = 1;                     // identifies this scheduler run to peers
  Duration heartbeat_interval = seconds(1);  // what workers and applications are told to use
  Duration worker_timeout = seconds(10);  // a worker silent this long loses its tasks
  Duration app_timeout = seconds(10);     // an application silent this long is disconnected
  Duration app_grace = seconds(600);      // ... and after this much longer its work is dropped
  Duration result_resend = seconds(5);    // an unacknowledged result is sent again after this
  Duration reclaim_grace = seconds(10);   // after a restart: wait for workers to claim tasks
  // Tasks of a service no connected worker offers go to any worker (to fail there with the
  // reason) after this long; while no worker is connected at all, they simply wait.
  Duration unoffered_service_wait = seconds(5);
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;  // what peers may send us
  uint32_t max_assign_batch = 4096;       // tasks per ASSIGN message
  uint32_t max_result_batch = 4096;       // results per RESULTS message
};

struct CoreStats {
  uint64_t submitted = 0;
  uint64_t completed = 0;   // terminal results recorded
  uint64_t delivered = 0;   // acknowledged by applications
  uint64_t duplicates = 0;  // results dropped as stale or duplicate
  uint64_t requeued = 0;
  uint64_t bad_messages = 0;
  size_t queued = 0;        // including tasks waiting to be reclaimed after a restart
  size_t assigned = 0;
  size_t done = 0;
  size_t workers = 0;
  size_t apps = 0;
};

class SchedulerCore {
 public:
  // `journal` may be null: state lives in memory only and nothing waits for commits.
  SchedulerCore(CoreOptions options, Transport& transport, JournalSink* journal = nullptr);
  ~SchedulerCore();
  SchedulerCore(const SchedulerCore&) = delete;
  SchedulerCore& operator=(const SchedulerCore&) = delete;

  // One decoded message from `peer`.
  void on_message(const PeerId& peer, const protocol::ToScheduler& msg, TimePoint now);
  // A message that did not decode: answered with an error, counted, never fatal.
  void on_bad_message(const PeerId& peer, const protocol::DecodeError& error, TimePoint now);
  // Timers: lost workers, silent applications, result resends.
  void on_tick(TimePoint now);
  // Sends everything the events since the last flush produced (assignments included).
  void flush(TimePoint now);
  // When on_tick next has something to do.
  TimePoint next_deadline() const;

  // Journal records appended so far; on_journal_committed(n) says the first n are durable.
  uint64_t journal_appended() const { return journal_seq_; }
  void on_journal_committed(uint64_t records);
  // Reloads what the journal held (call once, before any message). Applications count as
  // disconnected (their grace runs from now); unfinished tasks wait for reclaim_grace.
  void restore(RecoveredState state, TimePoint now);

  CoreStats stats() const;
  // Checks the core's internal invariants (for tests and simulations); a one-line reason if
  // one is broken.
  Status verify() const;

 private:
  struct Task;
  struct Worker;
  struct App;
  static constexpr uint32_t kNone = UINT32_MAX;

  // peers: one handler per message kind (a kind without one fails to compile in dispatch)
  void dispatch(const PeerId& peer, const protocol::AppHello& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now);
  template <class M>
  void dispatch(const PeerId& peer, const M& m, TimePoint now);
  void on_worker(uint32_t worker, const protocol::WorkerResults& m, TimePoint now);
  void on_worker(uint32_t worker, const protocol::WorkerHeartbeat& m, TimePoint now);
  void on_worker(uint32_t worker, const protocol::WorkerBye& m, TimePoint now);
  void on_worker(uint32_t worker, const protocol::WorkerReturn& m, TimePoint now);
  void on_app(uint32_t app, const protocol::Submit& m, TimePoint now);
  void on_app(uint32_t app, const protocol::Received& m, TimePoint now);
  void on_app(uint32_t app, const protocol::Collected& m, TimePoint now);
  void on_app(uint32_t app, const protocol::Cancel& m, TimePoint now);
  void on_app(uint32_t app, const protocol::AppHeartbeat& m, TimePoint now);
  void on_app(uint32_t app, const protocol::AppBye& m, TimePoint now);
  void on_app(uint32_t app, const protocol::Detach& m, TimePoint now);
  void on_app_hello(const PeerId& peer, const protocol::AppHello& m, TimePoint now);
  void on_submit(uint32_t app, const protocol::Submit& m, TimePoint now);
  void forget_results(uint32_t app, const std::vector<TaskKey>& keys);
  void cancel_tasks(uint32_t app, const std::vector<TaskKey>& keys);
  void on_worker_hello(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now);
  void on_worker_results(uint32_t worker, const protocol::WorkerResults& m, TimePoint now);
  void on_worker_bye(uint32_t worker, const std::vector<protocol::TaskAttempt>& returned,
                     bool leaving);
  void send_error(const PeerId& peer, protocol::ErrorCode code, std::string_view text);
  void send_heartbeat_ack(const PeerId& peer);

  // tasks
  uint32_t alloc_task();
  void free_task(uint32_t t);
  uint32_t find_task(const TaskKey& key) const;
  void enqueue(uint32_t t);
  void unassign(uint32_t t);
  void finish_task(uint32_t t, protocol::TaskStatus status, std::string_view payload,
                   uint32_t worker_name, uint64_t run_ns);
  void retry_or_fail(uint32_t t, std::string_view reason);
  void cancel_task(uint32_t t);  // queued/assigned/done -> gone (no result)
  void link_app(uint32_t t);
  void unlink_app(uint32_t t);
  void link_worker(uint32_t t, uint32_t w);
  void unlink_worker(uint32_t t);
  void note_result_for_delivery(uint32_t t);
  App& ensure_app(std::string_view app_id, uint32_t* index);

  // workers and apps
  void lose_worker(uint32_t w, std::string_view reason);
  void drop_app(uint32_t a);
  void mark_ready(uint32_t w);
  uint32_t service_index(std::string_view name);
  void set_services(uint32_t w, const std::vector<std::string_view>& names);
  void push_ready(std::deque<std::pair<uint32_t, uint32_t>>& list, uint32_t w);
  void check_worker(uint32_t w, TimePoint now);
  void check_app(uint32_t a, TimePoint now);
  uint32_t free_capacity(const Worker& w) const;
  uint32_t app_index(protocol::Assign& msg, uint32_t app) const;
  uint32_t intern(std::string_view s, std::vector<std::string>& table,
                  std::unordered_map<std::string, uint32_t>& index);

  // output
  void pump(TimePoint now);
  void flush_results(TimePoint now);

  CoreOptions options_;
  Transport& transport_;
  JournalSink* journal_;
  uint64_t journal_seq_ = 0;        // records appended
  uint64_t journal_committed_ = 0;  // records known durable

  std::vector<Task> tasks_;
  std::vector<uint32_t> free_tasks_;
  TaskIndex task_index_;
  auto key_of() const {
    return [this](uint32_t t) -> const TaskKey& { return task_key(t); };
  }
  const TaskKey& task_key(uint32_t t) const;
  struct QueueEntry {
    uint32_t task;
    uint32_t gen;
  };
  // Queued tasks, one FIFO per service; `order` orders them across services (retries first).
  struct Queued {
    uint64_t order;
    uint32_t task;
    uint32_t gen;
  };
  // Per service name: its queue, the workers offering it that have room (with the stamp they
  // had when added, so stale entries are skipped lazily), and how many live workers offer it.
  struct ServiceState {
    std::deque<Queued> queue;
    std::deque<std::pair<uint32_t, uint32_t>> ready;
    uint32_t offered_by = 0;
    TimePoint unoffered_since = TimePoint::max();  // queued work that no worker offers
  };
  std::vector<ServiceState> services_;  // by service name index
  std::deque<std::pair<uint32_t, uint32_t>> ready_any_;  // every worker with room
  size_t queue_entries_ = 0;  // across all services, stale ones included
  uint64_t next_back_order_ = uint64_t{1} << 62;
  uint64_t next_front_order_ = (uint64_t{1} << 62) - 1;
  // Tasks restored from the journal that were not finished: they wait for their workers to
  // claim them until reclaim_at_, then join the queue.
  std::vector<QueueEntry> limbo_;
  TimePoint reclaim_at_ = TimePoint::max();

  std::vector<Worker> workers_;
  std::vector<uint32_t> free_workers_;
  std::unordered_map<uint64_t, uint32_t> worker_by_uid_;

  // One liveness timer per worker and per application, checked lazily: a timer whose gen no
  // longer matches its owner is ignored.
  struct Timer {
    TimePoint when;
    uint32_t index;
    uint32_t gen;
    bool is_worker;
    bool operator>(const Timer& o) const { return when > o.when; }
  };
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  // Results sent and not yet acknowledged, in the order sent (so sorted by time).
  struct Resend {
    uint32_t task;
    uint32_t gen;
    TimePoint sent;
  };
  std::deque<Resend> resends_;

  std::vector<App> apps_;
  std::vector<uint32_t> free_apps_;
  std::unordered_map<std::string, uint32_t> app_by_id_;

  struct PeerRef {
    bool is_worker;
    uint32_t index;
  };
  std::unordered_map<PeerId, PeerRef> peers_;

  std::vector<std::string> service_names_;
  std::unordered_map<std::string, uint32_t> service_name_index_;
  std::vector<std::string> worker_names_;
  std::unordered_map<std::string, uint32_t> worker_name_index_;

  // Pending output, turned into messages by flush().
  std::vector<uint32_t> apps_with_results_;
  std::vector<uint32_t> apps_with_acks_;
  std::vector<uint32_t> workers_with_acks_;
  std::vector<uint32_t> workers_with_cancels_;

  CoreStats stats_;
};

}  // namespace lrts::scheduler
