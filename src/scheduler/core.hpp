// SchedulerCore: the scheduler's whole state machine, with no I/O.
//
// DESIGN
// Events come in as decoded messages (with the sender's routing id) and as clock ticks; every
// call carries `now`, and the core never reads a clock, opens a socket or starts a thread. What
// it says goes out through the Transport interface as typed messages, durable changes go to a
// JournalSink, and payloads too large for a batch to a BlobStore. This makes the core
// deterministic: tests and simulations drive it with a fake transport and a hand-moved clock.
//
// Output is batched: event handlers only change state and note what has to be said; flush()
// turns those notes into messages per peer, cut by count and by the bytes the peer accepts
// (one ASSIGN per worker, RESULTS per application, ...), and larger payloads into streams.
// The server calls flush() after draining a burst of messages.
//
// Durability: every change that must survive a restart goes to the JournalSink (submitted,
// assigned, finished, removed, application records). Acknowledgements that let a peer forget
// something — SUBMIT_ACK to an application, RESULT_ACK to a worker — are held back until the
// journal reports those records committed (on_journal_committed), so a crash loses nothing that
// was acknowledged. Results to applications and assignments to workers do not wait: a lost one
// is redone. After a restart, restore() reloads the journal; tasks that were assigned wait
// `reclaim_grace` for their workers to claim them, the others are queued at once.
//
// Task life: queued -> assigned(worker, attempt k) -> done -> collected (forgotten). A lost
// attempt (worker lost, slot crashed) goes back to queued with attempt k+1 until max_retries is
// used up, then ends as failed with the reason. The first terminal result for a task wins;
// later ones are acknowledged to the worker and dropped. A result is sent to its application
// until RECEIVED, and kept (journaled) until COLLECTED: an application that dies between the
// two gets it again when it says hello with the same id.
//
// Applications: one that goes silent is disconnected after app_timeout; its tasks keep running
// and its results wait for app_grace, then its work is dropped. One that DETACHes is never
// dropped for being away: its tasks run to the end and each result waits keep_results.
//
// Not thread-safe: one thread owns a core.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "common/metrics.hpp"
#include "common/slab.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "scheduler/blob_store.hpp"
#include "scheduler/names.hpp"
#include "scheduler/placement.hpp"
#include "scheduler/state.hpp"
#include "scheduler/task_index.hpp"

namespace lrts::scheduler {

// Where the core's messages go. The messages' views are valid only during the call.
class Transport {
 public:
  virtual ~Transport() = default;
  // To an application, or to a peer not known yet (errors).
  virtual void send_app(const PeerId& peer, const protocol::ToApp& message) = 0;
  virtual void send_worker(const PeerId& peer, const protocol::ToWorker& message) = 0;
  // To a relay (lrts relay), as a relay summary named it.
  virtual void send_relay(const PeerId& peer, const protocol::ToRelay& message) {
    (void)peer;
    (void)message;
  }
  // Peers a message could not be queued for since the last call (their queue is full: they do
  // not read). What was dropped may have mattered (an ASSIGN), so the core treats them as gone.
  virtual std::vector<PeerId> take_congested() { return {}; }
};

// Where durable changes go. The views are valid only during the call. A payload is either
// inline (`bytes`) or a blob of the BlobStore (`blob` non-zero).
class JournalSink {
 public:
  virtual ~JournalSink() = default;
  virtual void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                              std::string_view fields, uint64_t fields_blob, uint32_t max_retries,
                              uint32_t timeout_ms) = 0;
  // Assigned for the `attempt`th time.
  virtual void task_assigned(const TaskKey& key, uint32_t attempt, uint64_t worker_uid) = 0;
  virtual void task_finished(const TaskKey& key, protocol::TaskStatus status,
                             std::string_view payload, uint64_t payload_blob, uint32_t attempt,
                             std::string_view worker, uint64_t run_ns) = 0;
  virtual void task_removed(const TaskKey& key) = 0;
  // `worker_uid` identifies the worker the attempt went to.
  virtual void app_registered(std::string_view app_id, uint64_t grace_ms, bool detached,
                              std::string_view owner) = 0;
  virtual void app_removed(std::string_view app_id) = 0;
};

// What a journal holds, loaded at start.
struct RecoveredTask {
  TaskKey key;
  std::string app_id;
  std::string name;
  std::string fields;
  uint64_t fields_blob = 0;
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  uint32_t attempts = 0;    // assignments before the restart
  uint64_t worker_uid = 0;  // the worker of the last one (0: not known)
  bool done = false;
  protocol::TaskStatus status = protocol::TaskStatus::kFinished;
  std::string result;
  uint64_t result_blob = 0;
  std::string worker;
  uint64_t run_ns = 0;
  uint64_t done_ms_ago = 0;  // when done: how long ago the result was recorded
};

struct RecoveredApp {
  std::string app_id;
  uint64_t grace_ms = 0;
  bool detached = false;
  std::string owner;
};

struct RecoveredState {
  std::vector<RecoveredApp> apps;
  std::vector<RecoveredTask> tasks;
};

struct CoreOptions {
  uint64_t epoch = 1;  // identifies this scheduler run to peers
  // --auth: callers are members, and a relay's messages carry the member each came from.
  bool authenticated = false;
  Duration heartbeat_interval = seconds(1);  // what workers and applications are told to use
  Duration worker_timeout = seconds(10);     // a worker silent this long loses its tasks
  // The most heartbeats a second the scheduler, and each relay, receives from workers: past
  // max_heartbeat_rate * interval workers, the interval they are told doubles (and their
  // timeout with it) as often as needed. A relay's summary counts as one heartbeat.
  uint32_t max_heartbeat_rate = 500;
  Duration app_timeout = seconds(10);  // an application silent this long is disconnected
  Duration app_grace = seconds(600);   // ... and this much longer, its work is dropped (also the
                                       // most an application may ask for)
  Duration keep_results = std::chrono::hours(7 * 24);  // a detached application's results wait
  Duration result_resend = seconds(5);   // a result not RECEIVED is sent again after this
  Duration reclaim_grace = seconds(10);  // after a restart: wait for workers to claim tasks
  // Tasks of a service no connected worker offers go to any worker (to fail there with the
  // reason) after this long; while no worker is connected at all, they simply wait.
  Duration unoffered_service_wait = seconds(5);
  // A worker that holds tasks and, while heartbeating, runs none of them and finishes none for
  // this long is taken for a hoarder: its tasks go to other workers. A task that runs, however
  // long, keeps its worker clear of this.
  Duration hoard_timeout = seconds(300);
  // The most tasks one worker may hold, whatever it asks for (it is also held to 256 per slot).
  uint32_t max_worker_capacity = 4096;
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;  // what peers may send us
  uint32_t max_assign_batch = 4096;                              // tasks per ASSIGN message
  uint32_t max_result_batch = 4096;                              // results per RESULTS message
  // Bounds on what peers can make the scheduler hold.
  size_t max_apps = 100'000;
  size_t max_service_names = 65'536;
  size_t max_worker_names = 1'000'000;
  // Shown by queries (lrts status).
  std::string journal_path;  // empty: no journal
  std::string listen_endpoint;
};

struct CoreStats {
  uint64_t submitted = 0;
  uint64_t completed = 0;   // terminal results recorded
  uint64_t delivered = 0;   // collected by applications
  uint64_t duplicates = 0;  // results dropped as stale or duplicate
  uint64_t requeued = 0;
  uint64_t bad_messages = 0;
  uint64_t refused = 0;     // well-formed requests over a limit
  uint64_t congested = 0;   // peers dropped because they did not read what they were sent
  uint64_t forged = 0;      // results refused: not an attempt given to the worker that sent it
  uint64_t hoarders = 0;    // workers flagged for holding tasks they did not run
  uint64_t heartbeats = 0;  // from workers directly, and listed in relays' summaries
  uint64_t relay_summaries = 0;
  uint64_t queries = 0;  // queries and operator commands answered
  // Terminal results by status (completed is their sum).
  uint64_t finished = 0;
  uint64_t failed = 0;
  uint64_t cancelled = 0;
  uint64_t timed_out = 0;
  size_t queued = 0;  // including tasks waiting to be reclaimed after a restart
  size_t assigned = 0;
  size_t done = 0;
  size_t waiting = 0;  // of queued: restored, waiting for their workers to claim them
  size_t workers = 0;
  size_t relayed_workers = 0;  // of workers: behind a relay
  size_t relays = 0;
  uint32_t heartbeat_ms = 0;  // what workers connected directly are told now
  size_t apps = 0;
  uint64_t slots = 0;       // of connected workers
  uint64_t busy_slots = 0;  // running a task (as far as the scheduler knows)
  uint64_t blob_bytes = 0;  // large payloads held
};

// One task as the scheduler sees it (for queries).
struct TaskInfo {
  TaskKey key;
  std::string state;  // queued, waiting for its worker (after a restart), running, done
  std::string application_id;
  std::string service;
  std::string worker;  // running it, or that produced its result
  uint32_t attempt = 0;
  uint32_t max_retries = 0;
  protocol::TaskStatus status = protocol::TaskStatus::kFinished;  // when done
  std::string error;                                              // when done and not finished
  bool streaming = false;  // its payload is on its way (fields to the worker, result to the app)
};

// How long tasks waited and ran, and what ended in the last minute (for queries and metrics).
struct CoreActivity {
  metrics::Histogram queue_wait;  // submitted (or put back) -> assigned
  metrics::Histogram run_time;    // as the worker measured it
  metrics::MinuteWindow completed;
  metrics::MinuteWindow failed;
};

// Who sent a message, as its connection's key says (--auth): the member's name and what its
// role allows. Without --auth a caller has no identity and may do everything.
struct Caller {
  std::string_view identity;
  bool may_work = true;
  bool may_apply = true;
  // Queries about every application (not only those of its own key), and operator commands on
  // any of them (cancel, drain).
  bool may_view_all = true;
  bool may_operate = true;
  // Forwards other members' messages (lrts relay) and vouches for their keys.
  bool may_relay = true;
};

class SchedulerCore {
 public:
  static constexpr uint32_t kNone = kNoIndex;
  static constexpr Duration kCountsEvery = milliseconds(250);

  // `journal` may be null: state lives in memory only and nothing waits for commits.
  SchedulerCore(CoreOptions options, Transport& transport, BlobStore& blobs,
                JournalSink* journal = nullptr);
  // A query or operator command: answered apart from the burst it came in (the server spends
  // a bounded time on them after each flush).
  static bool is_query(const protocol::ToScheduler& m) {
    return std::holds_alternative<protocol::Query>(m) ||
           std::holds_alternative<protocol::Control>(m);
  }
  ~SchedulerCore();
  SchedulerCore(const SchedulerCore&) = delete;
  SchedulerCore& operator=(const SchedulerCore&) = delete;

  // One decoded message from `peer`, sent by `caller`.
  void on_message(const PeerId& peer, const protocol::ToScheduler& msg, TimePoint now,
                  const Caller& caller = {});
  // A message that did not decode: answered with an error, counted, never fatal.
  void on_bad_message(const PeerId& peer, const protocol::DecodeError& error, TimePoint now);
  // Timers: lost workers, silent applications, result resends, expired results.
  void on_tick(TimePoint now);
  // Sends everything the events since the last flush produced (assignments included).
  void flush(TimePoint now);
  // When on_tick next has something to do.
  TimePoint next_deadline() const;

  // Journal records appended so far; on_journal_committed(n) says the first n are durable.
  uint64_t journal_appended() const { return journal_seq_; }
  void on_journal_committed(uint64_t records);
  // Reloads what the journal held (call once, before any message). Applications count as
  // disconnected (their grace runs from now); tasks that were assigned wait for reclaim_grace.
  void restore(RecoveredState state, TimePoint now);

  CoreStats stats() const;
  const CoreActivity& activity() const { return activity_; }
  std::optional<TaskInfo> task(const TaskKey& key) const;
  // Checks the core's internal invariants (for tests and simulations); a one-line reason if
  // one is broken.
  Status verify() const;

 private:
  // ---- messages: one handler per kind (a kind without one does not compile in dispatch) ----
  void dispatch(const PeerId& peer, const protocol::AppHello& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::Query& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::Control& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::RelaySummary& m, TimePoint now);
  void dispatch(const PeerId& peer, const protocol::Relayed& m, TimePoint now);
  template <class M>
  void dispatch(const PeerId& peer, const M& m, TimePoint now);
  // A request its key does not allow: refused with `text`, logged once per identity and kind.
  void refuse(const PeerId& peer, std::string_view kind, std::string_view text);
  uint32_t capped_capacity(const Worker& w, uint32_t asked) const;
  // Whether worker `uid` may report `attempt` of the task (it was given that attempt).
  bool may_report(const Task& t, uint64_t uid, uint32_t attempt) const;
  // Whether a line about a peer of `identity` may be logged now (a member flooding hellos must
  // not fill the disk); `note` gets how many were left out.
  bool peer_log(std::string_view kind, std::string_view identity, std::string* note);
  void check_hoarding(uint32_t w, uint32_t running, TimePoint now);
  void on_worker(uint32_t w, const protocol::WorkerResults& m, TimePoint now);
  void on_worker(uint32_t w, const protocol::WorkerHeartbeat& m, TimePoint now);
  void on_worker(uint32_t w, const protocol::WorkerBye& m, TimePoint now);
  void on_worker(uint32_t w, const protocol::WorkerReturn& m, TimePoint now);
  void on_worker(uint32_t w, const protocol::Chunk& m, TimePoint now);
  void on_worker(uint32_t w, const protocol::ChunkAck& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Submit& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Received& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Collected& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Cancel& m, TimePoint now);
  void on_app(uint32_t a, const protocol::AppHeartbeat& m, TimePoint now);
  void on_app(uint32_t a, const protocol::AppBye& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Detach& m, TimePoint now);
  void on_app(uint32_t a, const protocol::Chunk& m, TimePoint now);
  void on_app(uint32_t a, const protocol::ChunkAck& m, TimePoint now);
  void on_app_hello(const PeerId& peer, const protocol::AppHello& m, TimePoint now);
  void on_worker_hello(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now);
  // Returns how many were handed back (those it held under that attempt).
  size_t hand_back(uint32_t w, const std::vector<protocol::TaskAttempt>& returned);
  void send_error(const PeerId& peer, protocol::ErrorCode code, std::string_view text);
  void send_heartbeat_ack(const PeerId& peer, bool app);
  // Takes a finished incoming stream as a payload; false if it never arrived whole.
  bool take_stream(PeerStreams& streams, uint64_t stream, Payload& out);

  // ---- queries and operator commands (core_query.cc) ----
  // Each returns the JSON answer, or sets *code and returns the reason.
  std::string answer(const protocol::Query& q, protocol::ErrorCode* code) const;
  std::string command(const protocol::Control& c, protocol::ErrorCode* code);
  // Whether the caller may see (or act on) the application's tasks.
  bool may_see(const App& a) const;
  // Whether a request carries the proof of the connection's last answer (see protocol::Query).
  template <class M>
  bool admit_query(const PeerId& peer, const M& m);
  uint64_t next_proof(const PeerId& peer);
  void note_completed(uint32_t t);
  // A task's service as listings show it: a Python task (lrts.python) with the name its
  // fields carry while it still holds them, "lrts.python: Train".
  std::string service_label(const Task& t) const;

  // ---- tasks (core_tasks.cc) ----
  uint32_t find_task(const TaskKey& key) const;
  uint32_t new_task(const TaskKey& key, uint32_t app, uint32_t service);
  void erase_task(uint32_t t);
  void enqueue(uint32_t t);
  void assign(uint32_t w, uint32_t t);
  void unassign(uint32_t t);
  void finish_task(uint32_t t, protocol::TaskStatus status, Payload payload, uint32_t attempt,
                   uint32_t worker_name, uint64_t run_ns);
  void retry_or_fail(uint32_t t, std::string_view reason);
  void cancel_on_worker(uint32_t t);
  void release_payload(Payload& p);
  void note_result_for_delivery(uint32_t t);
  void journal_finished(const Task& task);

  // ---- peers (core_tasks.cc) ----
  // Heartbeat interval (ms) a worker is told: what max_heartbeat_rate allows for the peers its
  // receiver (the scheduler, or its relay) hears from.
  uint32_t heartbeat_ms_for(const Worker& w) const;
  uint32_t rate_limited_ms(size_t peers) const;
  // How long a worker may stay silent: worker_timeout, longer as its interval is.
  Duration timeout_for(const Worker& w) const;
  Duration timeout_for_relay(const Relay& r) const;
  // The relay of that name (its connection, direct or relayed), created on first sight; kNone
  // past the depth limit or kMaxRelays.
  static constexpr size_t kMaxRelays = 10'000;
  uint32_t relay_for(const PeerId& relay, TimePoint now);
  void set_relay(uint32_t w, uint32_t relay);
  void lose_relay(uint32_t r, std::string_view reason);
  void orphan_worker(uint32_t wi, TimePoint now);
  void check_relay(uint32_t r, TimePoint now);
  void arm_relay_timer(uint32_t r, TimePoint when);
  uint32_t ensure_app(std::string_view app_id);
  void lose_worker(uint32_t w, std::string_view reason);
  void drop_app(uint32_t a);
  void disconnect_app(uint32_t a);
  void check_worker(uint32_t w, TimePoint now);
  void check_app(uint32_t a, TimePoint now);
  void expire_results(uint32_t a, TimePoint now);
  void arm_app_timer(uint32_t a, TimePoint when);
  void journal_app(const App& app);
  std::unique_ptr<PeerStreams> new_streams(size_t peer_max_message, protocol::SendLimits* limits);

  // ---- output (core_output.cc) ----
  void flush_results(TimePoint now);
  void flush_worker(uint32_t w, TimePoint now);
  void flush_submit_acks(uint64_t durable);
  void send_outstanding(uint32_t a);
  // An application's counts moved: AppCounts goes with a coming flush.
  void count_app(uint32_t ai, int64_t unfinished, int64_t running);
  void flush_counts(TimePoint now);
  // Whether a worker was lost (its tasks are queued again).
  bool drop_congested();
  // Placement, then each worker's assignments and acknowledgements out.
  void assign_and_send(TimePoint now);
  uint64_t durable() const { return journal_ ? journal_committed_ : journal_seq_; }

  CoreOptions options_;
  Transport& transport_;
  BlobStore& blobs_;
  JournalSink* journal_;
  uint64_t journal_seq_ = 0;        // records appended
  uint64_t journal_committed_ = 0;  // records known durable
  TimePoint now_{};                 // of the event being handled
  Caller caller_;                   // of the message being handled
  // Blobs to delete once the journal holds the record that stopped naming them.
  std::deque<std::pair<uint64_t, uint64_t>> blobs_to_remove_;

  Slab<Task> tasks_;
  TaskIndex task_index_;
  Slab<Worker> workers_;
  std::unordered_map<uint64_t, uint32_t> worker_by_uid_;
  Slab<Relay> relays_;
  std::unordered_map<PeerId, uint32_t> relay_by_peer_;
  size_t direct_workers_ = 0;  // workers not behind a relay
  // Workers with payload streams out (for next_deadline).
  mutable std::vector<uint32_t> streaming_workers_;
  Slab<App> apps_;
  std::unordered_map<std::string, uint32_t> app_by_id_;
  struct PeerRef {
    bool is_worker;
    uint32_t index;
  };
  std::unordered_map<PeerId, PeerRef> peers_;
  NameTable service_names_;
  NameTable worker_names_;
  Placement placement_{tasks_, workers_, service_names_};

  // Tasks restored from the journal that had been assigned: they wait for their workers to
  // claim them until reclaim_at_, then count as lost.
  std::vector<SlabHandle> limbo_;
  TimePoint reclaim_at_ = TimePoint::max();

  // One liveness timer per worker and per application, checked lazily: a timer whose gen no
  // longer matches its owner is ignored.
  enum class TimerOf : uint8_t { kWorker, kApp, kRelay };
  struct Timer {
    TimePoint when;
    SlabHandle owner;
    uint32_t timer_gen;
    TimerOf of;
    bool operator>(const Timer& o) const { return when > o.when; }
  };
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  // Results sent and not yet RECEIVED, in the order sent (so sorted by time).
  struct Resend {
    SlabHandle task;
    TimePoint sent;
  };
  std::deque<Resend> resends_;

  // Peers with something to say at the next flush.
  std::vector<uint32_t> apps_with_results_;
  std::vector<uint32_t> apps_with_acks_;
  std::vector<uint32_t> apps_with_outstanding_;
  std::vector<uint32_t> apps_with_counts_;  // AppCounts to send (at most every kCountsEvery)
  TimePoint counts_due_ = TimePoint::max();
  std::vector<uint32_t> workers_with_output_;

  LogLimiter log_limiter_;
  LogLimiter forged_log_{std::chrono::hours(1), 1, 1024};  // one line per worker an hour
  LogLimiter peer_log_{seconds(60), 200, 1024};            // per key and kind of line
  TimePoint restored_until_{};                             // restore() + reclaim_grace
  CoreStats stats_;
  CoreActivity activity_;
  TimePoint started_{};  // the first event's time (uptime)
  // The latest failed tasks, newest last, for operators (lrts status, the dashboard).
  struct Failure {
    TaskKey key;
    std::string app_id;
    std::string service;
    std::string worker;
    uint32_t attempt = 0;
    std::string error;  // cut to kFailureTextBytes
    int64_t wall_ms = 0;
  };
  static constexpr size_t kMaxFailures = 100;
  static constexpr size_t kFailureTextBytes = 1024;
  std::deque<Failure> failures_;
  // Observed run times per service name id (finished attempts as workers measured them), and
  // the status query's estimate of the work left, rebuilt at most once a second (a scan of the
  // task table).
  struct ServiceRuns {
    uint64_t finished = 0;
    double mean_s = 0;  // the plain mean of the first kRunsMeanOf, then a moving average
  };
  static constexpr uint64_t kRunsMeanOf = 20;
  std::vector<ServiceRuns> service_runs_;
  void note_run_time(uint32_t service, double seconds);
  // A service name id just (re)used for a new name: its queue and run times start afresh.
  void new_service_name(uint32_t service);
  std::string estimate_json() const;
  mutable std::string estimate_cache_;
  mutable TimePoint estimate_at_{};
  // The counts it was built with: any task changing state makes it stale at once.
  mutable std::array<uint64_t, 7> estimate_counts_{};
  // Connections that asked: the proof their next request must carry (the oldest forgotten).
  struct QueryPeer {
    uint64_t proof = 0;
    bool told = false;  // refused once for a missing proof since the last answer
  };
  static constexpr size_t kMaxQueryPeers = 10'000;
  std::unordered_map<PeerId, QueryPeer> query_peers_;
  std::deque<PeerId> query_order_;
  uint64_t proof_state_ = 0x9E3779B97F4A7C15ULL;
};

}  // namespace lrts::scheduler
