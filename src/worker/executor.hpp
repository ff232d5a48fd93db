// Executor: the worker's tasks and slots, as a pure state machine. It holds the tasks the
// scheduler gave the worker, places them on slots through Dispatch, and turns what the slots say
// (or how they die) into outcomes. The slot processes themselves — spawning, framing, reaping —
// are behind SlotControl (slot_pool.hpp is the real one); time is passed in.
//
// DESIGN
// A slot runs its tasks in order, so the first task in its list is the one running: when a slot
// dies, that task's attempt is lost ("killed by signal 11 (Segmentation fault)"), reported to
// the scheduler, which retries it or fails it; the tasks behind it go back to the queue
// untouched. A slot is started again at once, then with a growing delay if it keeps dying
// before finishing anything. Stopping one task (cancel, timeout, memory limit) means killing its
// slot (the only way to stop arbitrary code); that is not the slot's failure, and if the task
// had just finished, the next one was only a bystander and keeps its attempt. A cancelled task
// that waits in a slot is recalled instead. Every task the scheduler gave gets an outcome.
//
// Not thread-safe: the worker's loop owns it.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/slab.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"
#include "worker/dispatch.hpp"

namespace lrts::worker {

using protocol::TaskKey;
using protocol::TaskStatus;

struct LocalTask {
  TaskKey key;
  uint32_t attempt = 0;
  std::string name;
  std::string app_id;
  Bytes fields;
  uint32_t timeout_ms = 0;
};

// What became of one attempt.
struct Outcome {
  TaskKey key;
  uint32_t attempt = 0;
  TaskStatus status = TaskStatus::kFinished;
  Bytes payload;  // the result, or the reason
  uint64_t run_ns = 0;
  std::vector<protocol::BarState> bars;  // final state of the task's progress bars
};

// One result as a slot reported it.
struct SlotOutcome {
  uint32_t ref = 0;
  TaskStatus status = TaskStatus::kFinished;
  Bytes payload;
  uint64_t run_ns = 0;
  std::vector<protocol::BarState> bars;
};

// What the executor asks of the slot processes.
class SlotControl {
 public:
  virtual ~SlotControl() = default;
  // Starts the slot's process (again); it says hello when ready (Executor::on_slot_hello).
  virtual void start_slot(int slot) = 0;
  virtual void run(int slot, const std::vector<uint32_t>& refs,
                   const std::vector<const LocalTask*>& tasks) = 0;
  virtual void recall(int slot, const std::vector<uint32_t>& refs) = 0;
  // Kills the slot's process and everything it started; it is then reaped (on_slot_exit).
  virtual void kill(int slot) = 0;
};

// What a dead slot's progress region said it was running (shm RegionHeader::running): a task's
// ref, nothing (it died between tasks), or unknown (no region: the first task it was sent and
// had not answered for is taken to be the one).
inline constexpr uint32_t kRunningUnknown = UINT32_MAX;
inline constexpr uint32_t kRunningNone = UINT32_MAX - 1;

struct ExecutorOptions {
  int slots = 1;
  uint64_t max_job_memory = 0;    // bytes of resident memory per slot; 0: no limit
  uint64_t max_result_bytes = 0;  // 0: no limit
};

class Executor {
 public:
  static constexpr Duration kMaxRestartDelay = seconds(5);

  Executor(ExecutorOptions options, SlotControl& control);

  // ---- tasks ----
  // Takes a task from the scheduler. False if it already holds that key (under an older
  // attempt, it now runs under the newer one).
  bool add(LocalTask task);
  // Drops a task: a waiting one at once, one in a slot by recall or by killing its slot. Each
  // dropped task still gets an outcome (lost, "cancelled by the scheduler") unless its result
  // comes first: every assignment the scheduler believes in is answered.
  bool cancel(const TaskKey& key, std::vector<Outcome>& out);
  bool holds(const TaskKey& key) const { return by_key_.count(key) != 0; }
  // Every task held (waiting or in a slot), with its attempt.
  std::vector<protocol::TaskAttempt> held() const;
  // Takes the waiting tasks back out (a worker draining or leaving).
  std::vector<protocol::TaskAttempt> take_queued();
  // Waiting tasks beyond what the worker should hold now, to hand back to the scheduler.
  std::vector<protocol::TaskAttempt> take_surplus(TimePoint now);
  size_t size() const { return by_key_.size(); }
  uint32_t capacity(TimePoint now) const { return dispatch_.capacity(now); }
  bool busy() const { return dispatch_.busy(); }
  int slot_count() const { return dispatch_.slots(); }
  // Slots that run a task now (for sampling their progress and memory).
  std::vector<int> busy_slots() const;
  const LocalTask* task(uint32_t ref) const;
  const Dispatch& dispatch() const { return dispatch_; }

  // ---- what the slots say ----
  void on_slot_hello(int slot, TimePoint now);
  // False if the slot broke the protocol (answered for a task it was not running): kill it.
  bool on_slot_results(int slot, std::vector<SlotOutcome>& results, TimePoint now,
                       std::vector<Outcome>& out);
  void on_slot_recalled(int slot, const std::vector<uint32_t>& refs, std::vector<Outcome>& out);
  // The slot's process ended; `last_bars` is where its bars stood.
  // `running`: the task its region said it ran (or kRunningNone / kRunningUnknown). Only that
  // attempt is lost; tasks before it had finished but their results died in the slot's buffer,
  // and they go back to the queue with the tasks behind it, attempts intact.
  void on_slot_exit(int slot, const std::string& how, std::vector<protocol::BarState> last_bars,
                    TimePoint now, std::vector<Outcome>& out, uint32_t running = kRunningUnknown);
  void on_slot_rss(int slot, uint64_t resident_bytes);

  // Timeouts, restarts that are due, and new work for slots.
  void on_tick(TimePoint now);
  TimePoint next_deadline() const;
  // Stops every slot (running tasks are abandoned; the caller hands them back).
  void stop_all();
  // Memory checks are due every this long while a limit is set and a slot is busy.
  bool wants_memory_check() const { return options_.max_job_memory > 0 && busy(); }

 private:
  struct Entry {
    LocalTask task;
    bool cancelled = false;  // detached from by_key_; settles when its slot answers or dies
    bool timed_out = false;
    int slot = -1;  // the slot holding it, or -1 while it waits
  };
  struct SlotState {
    // A process was started (every slot is, when the worker starts); waiting for its hello.
    bool starting = true;
    bool down = true;  // no process
    TimePoint restart_at = TimePoint{};
    int failures = 0;                   // consecutive deaths without finishing a task
    uint32_t kill_target = UINT32_MAX;  // killed to stop this task (not the slot's fault)
    uint64_t killed_at_rss = 0;         // killed by the memory limit, at this size
  };

  uint32_t alloc(LocalTask task);
  void free_entry(uint32_t ref);
  void lost(uint32_t ref, std::string reason, std::vector<Outcome>& out);
  void kill_for(int slot, uint32_t ref);

  ExecutorOptions options_;
  SlotControl& control_;
  Dispatch dispatch_;
  std::vector<SlotState> slots_;
  Slab<Entry> entries_;
  std::unordered_map<TaskKey, uint32_t, protocol::TaskKeyHash> by_key_;
  std::vector<Dispatch::Batch> runs_, recalls_;  // scratch
};

}  // namespace lrts::worker
