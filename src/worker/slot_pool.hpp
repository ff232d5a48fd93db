// SlotPool: the worker's local executor. Holds the tasks the scheduler gave this worker, feeds
// them to slot processes, and turns what the slots say (or how they die) into outcomes.
//
// DESIGN
// Each slot is a child process (see slot_runtime.hpp) connected by a non-blocking socketpair.
// A slot gets a batch of tasks at a time and runs them in order, so the first task in a slot's
// in-flight list is the one running: when a slot dies, that task's attempt is lost (reported to
// the scheduler, which decides on a retry) and the ones behind it go back to the local queue
// untouched. The slot is started again, with a growing delay if it keeps dying at start.
//
// How many tasks a slot holds adapts to task length: short tasks are sent in batches deep enough
// to cover about 2 ms of work (at most 64), long tasks one at a time (so no task waits behind
// another on a busy slot while another slot or worker idles). Idle slots are served first;
// nothing is queued behind a task that has already run long; and when the estimate of task
// length goes up, the surplus of the worker's own queue goes back to the scheduler.
//
// Not thread-safe: the worker's event loop owns it.
#pragma once

#include <zmq.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "shm/region.hpp"
#include "protocol/messages.hpp"
#include "protocol/framing.hpp"
#include "protocol/slot_messages.hpp"

namespace lrts::worker {

using protocol::TaskKey;
using protocol::TaskStatus;

struct LocalTask {
  TaskKey key;
  uint32_t attempt = 0;
  std::string name;
  std::string fields;
  uint32_t timeout_ms = 0;
};

struct Outcome {
  TaskKey key;
  uint32_t attempt = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string payload;
  uint64_t run_ns = 0;
  std::vector<protocol::BarState> bars;  // final state of the task's progress bars
};

struct SlotPoolOptions {
  int slots = 1;
  // Command that starts a slot; the pool appends the slot flags.
  std::string executable;
  std::vector<std::string> service_libs;
  size_t max_frame_bytes = protocol::kDefaultMaxMessageBytes;
  uint32_t bars_per_slot = 256;  // progress bars a slot can show at once
  uint64_t max_job_memory = 0;    // bytes of resident memory per slot; 0: no limit
};

class SlotPool {
 public:
  explicit SlotPool(SlotPoolOptions options);
  ~SlotPool();
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  // Starts every slot and waits until each has said hello. Fails with the slot's own reason
  // (for instance a service library that does not load).
  Result<std::vector<std::string>> start(Duration timeout);
  // Kills all slots (running tasks are abandoned) and reaps them.
  void stop();

  // Takes a task from the scheduler. False if it already holds that key.
  bool add(LocalTask task);
  // Drops a task: a queued one at once, a running one by killing its slot. Each dropped task
  // still gets an outcome (lost, "cancelled by the scheduler") unless its result comes first:
  // every assignment the scheduler believes in is answered, even when a cancel was stale.
  bool cancel(const TaskKey& key, std::vector<Outcome>& out);
  bool holds(const TaskKey& key) const { return by_key_.count(key) != 0; }
  // Every task held (queued or in a slot), with its attempt.
  std::vector<protocol::TaskAttempt> held() const;
  // Takes every queued task back out (for a worker leaving); slots keep their running ones.
  std::vector<protocol::TaskAttempt> take_queued();
  // Takes back queued tasks beyond what the worker should hold now (its estimate of task length
  // went up), to hand them back to the scheduler.
  std::vector<protocol::TaskAttempt> take_surplus();
  size_t size() const { return by_key_.size(); }
  // How many tasks the worker should ask the scheduler for in total.
  uint32_t capacity() const;
  int slot_count() const;

  // True while any slot has work.
  bool busy() const;
  // True while a running task has a progress bar open.
  bool has_open_bars() const;
  // Appends the progress bars that changed in the slots' shared memory since the last call.
  void sample_progress(std::vector<protocol::BarState>& out);

  // Event loop plumbing: add poll items, then hand the polled items back.
  void add_poll_items(std::vector<zmq_pollitem_t>& items) const;
  void on_poll(const zmq_pollitem_t* items, std::vector<Outcome>& out);
  // After SIGCHLD: reaps dead slots.
  void reap(std::vector<Outcome>& out);
  // Sends queued tasks to slots with room, restarts slots that are due, stops tasks that ran
  // past their timeout.
  void dispatch(TimePoint now);
  TimePoint next_deadline() const;

 private:
  struct Slot;
  struct Entry {
    LocalTask task;
    bool cancelled = false;
    bool timed_out = false;
    bool used = false;
  };

  Status spawn(Slot& slot);
  void on_slot_dead(Slot& slot, int wait_status, std::vector<Outcome>& out);
  // Reads and handles what the slot sent; true if the slot is finished (end of file, or it
  // broke the protocol) and must be reaped.
  bool read_slot(Slot& slot, std::vector<Outcome>& out);
  void check_memory(TimePoint now);
  void kill_and_reap(Slot& slot, std::vector<Outcome>& out);
  void write_slot(Slot& slot);
  void free_entry(uint32_t ref);
  uint32_t depth() const;

  SlotPoolOptions options_;
  std::vector<Slot> slots_;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;
  std::deque<uint32_t> queue_;
  std::unordered_map<TaskKey, uint32_t, protocol::TaskKeyHash> by_key_;
  std::vector<std::string> services_;  // as the first slot reported them
  std::vector<protocol::BarState> dead_bars_;  // last state of bars of slots that died
  double ewma_run_ns_ = 0;  // 0 until the first result
  TimePoint next_memory_check_{};
};

}  // namespace lrts::worker
