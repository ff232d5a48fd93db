// WorkerCore: what a worker holds and says to the scheduler, with no I/O — registration,
// heartbeats, held results, reconnects, drain, surplus, payload streams — around an Executor
// (its tasks and slots). Events come in with `now`; what the worker says goes out through
// WorkerLink, what it asks of its slots through SlotControl. The socket loop (worker.cc) is thin.
//
// DESIGN
// - Results are kept until the scheduler acknowledges them (RESULT_ACK names the attempt, so a
//   late acknowledgement of a lost attempt does not erase a newer one), and sent again after
//   every welcome: nothing is lost when the scheduler restarts or the link breaks.
// - A hello lists what the worker runs or has queued and the results it holds unacknowledged
//   (sent again after the welcome, they settle themselves); the welcome names what to drop.
// - An assignment of an attempt this worker has already finished is answered with that result
//   (after a scheduler restart the attempt number can repeat).
// - Results and fields larger than a batch may hold travel as streams (protocol/stream.hpp),
//   cut to what the scheduler says it accepts.
// - Stopping: the first stop drains (capacity 0, waiting tasks handed back, running ones
//   finished and delivered, then BYE); with finish_on_stop false, or on a second stop, every
//   task is handed back at once. Handed-back tasks do not use up an attempt.
// Not thread-safe: the worker's loop owns it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/peer_session.hpp"
#include "protocol/stream.hpp"
#include "worker/executor.hpp"

namespace lrts::worker {

// What the core says, and where its progress goes.
class WorkerLink {
 public:
  virtual ~WorkerLink() = default;
  // A message for the scheduler; its views are valid during the call.
  virtual void send(const protocol::ToScheduler& message) = 0;
  // Bars whose final state (or last state, for a slot that died) is known.
  virtual void bars(std::vector<protocol::BarState>& bars) = 0;
  // Which application a session belongs to (for progress viewers).
  virtual void session_owner(uint64_t session, std::string_view application_id) = 0;
};

struct WorkerCoreOptions {
  uint64_t uid = 0;  // random per worker process
  std::string name;
  std::string host;  // the machine's name
  std::vector<std::string> services;
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
  bool finish_on_stop = true;
  Duration drain_timeout{0};  // 0: no limit
  // Holding no task for this long, the worker leaves as if drained (0: never). What an
  // autoscaler's workers use to end once the queue no longer needs them.
  Duration idle_timeout{0};
  ExecutorOptions executor;
};

struct WorkerStats {
  uint64_t assigned = 0;
  uint64_t results = 0;
  uint64_t resent = 0;
  uint64_t handed_back = 0;
};

class WorkerCore {
 public:
  static constexpr Duration kSurplusCheck = milliseconds(100);
  static constexpr size_t kMaxResultsPerMessage = 4096;

  WorkerCore(WorkerCoreOptions options, SlotControl& slots, WorkerLink& link);

  // ---- the scheduler ----
  void on_message(const protocol::ToWorker& message, TimePoint now);
  void on_bad_message(const protocol::DecodeError& error, TimePoint now);

  // ---- the slots (forwarded to the executor) ----
  void on_slot_hello(int slot, TimePoint now) { executor_.on_slot_hello(slot, now); }
  bool on_slot_results(int slot, std::vector<SlotOutcome>& results, TimePoint now) {
    return executor_.on_slot_results(slot, results, now, outcomes_);
  }
  void on_slot_recalled(int slot, const std::vector<uint32_t>& refs) {
    executor_.on_slot_recalled(slot, refs, outcomes_);
  }
  void on_slot_exit(int slot, const std::string& how, std::vector<protocol::BarState> last_bars,
                    TimePoint now, uint32_t running = kRunningUnknown) {
    executor_.on_slot_exit(slot, how, std::move(last_bars), now, outcomes_, running);
  }
  void on_slot_rss(int slot, uint64_t resident_bytes) {
    executor_.on_slot_rss(slot, resident_bytes);
  }

  // The socket loop moved the link to another scheduler or relay: hello there now (what it
  // holds is reconciled as after any reconnect).
  void on_new_link(TimePoint now) {
    session_.on_new_link(now);
    if (!done_) send_hello(now);
  }

  // ---- stopping ----
  // SIGTERM/SIGINT: the first one drains (or, without finish_on_stop, stops); a second stops.
  void on_stop_signal(TimePoint now);
  // True when the worker may exit: drained and delivered, or stopped.
  bool done() const { return done_; }
  bool draining() const { return draining_; }
  // Resident memory of the worker and its slots, sampled by the daemon (sent with heartbeats).
  void set_memory_bytes(uint64_t bytes) { memory_bytes_ = bytes; }

  // Timers: hellos, heartbeats, surplus, drain deadline, slot timeouts and restarts.
  void on_tick(TimePoint now);
  // Sends what the events since the last flush produced (results, hand-backs, stream chunks).
  void flush(TimePoint now);
  TimePoint next_deadline() const;

  const Executor& executor() const { return executor_; }
  const protocol::PeerSession& session() const { return session_; }
  const WorkerStats& stats() const { return stats_; }
  size_t unacknowledged_results() const { return pending_.size(); }
  // The attempt of an unacknowledged result for `key`, or 0.
  uint32_t held_result(const protocol::TaskKey& key) const {
    auto it = pending_.find(key);
    return it == pending_.end() ? 0 : it->second.outcome.attempt;
  }

 private:
  struct Pending {
    Outcome outcome;
    uint64_t stream = 0;  // non-zero while the payload travels as a stream
  };
  template <class M>
  void handle(const M&, TimePoint) {}  // the kinds a worker ignores
  void handle(const protocol::WorkerWelcome& m, TimePoint now);
  void handle(const protocol::Assign& m, TimePoint now);
  void handle(const protocol::ResultAck& m, TimePoint now);
  void handle(const protocol::CancelTasks& m, TimePoint now);
  void handle(const protocol::HeartbeatAck& m, TimePoint now);
  void handle(const protocol::ErrorMsg& m, TimePoint now);
  void handle(const protocol::Chunk& m, TimePoint now);
  void handle(const protocol::ChunkAck& m, TimePoint now);
  void handle(const protocol::Drain& m, TimePoint now);

  uint32_t capacity(TimePoint now) const { return draining_ ? 0 : executor_.capacity(now); }
  void send_hello(TimePoint now);
  void send_heartbeat(TimePoint now);
  void hand_back(std::vector<protocol::TaskAttempt> returned);
  void take_outcomes();
  void queue_result(const protocol::TaskKey& key);
  void send_results(TimePoint now);
  void stop_now(TimePoint now);
  bool holds_work() const {
    return executor_.size() > 0 || !outcomes_.empty() || !pending_.empty() || !to_return_.empty();
  }

  WorkerCoreOptions options_;
  WorkerLink& link_;
  Executor executor_;
  protocol::PeerSession session_;
  protocol::SendLimits limits_;
  protocol::StreamSender results_tx_;
  protocol::MemoryStreamStorage fields_store_;
  protocol::StreamReceiver fields_rx_{fields_store_};

  std::vector<Outcome> outcomes_;  // from the executor, not yet taken
  std::unordered_map<protocol::TaskKey, Pending, protocol::TaskKeyHash> pending_;
  std::vector<protocol::TaskKey> unsent_;  // results to send (again)
  std::vector<protocol::TaskAttempt> to_return_;
  bool draining_ = false;
  bool done_ = false;
  uint64_t memory_bytes_ = 0;
  bool warned_waiting_ = false;
  TimePoint drain_deadline_ = TimePoint::max();
  TimePoint next_surplus_check_{};
  TimePoint idle_since_ =
      TimePoint::max();  // holding nothing since then (TimePoint::max(): holds something)
  WorkerStats stats_;
  LogLimiter log_limiter_;
};

}  // namespace lrts::worker
