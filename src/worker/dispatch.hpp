// Dispatch: the worker's placement policy — which task goes to which slot, how many tasks a slot
// holds, and when tasks move. Pure: tasks are opaque refs, time is passed in.
//
// DESIGN
// A slot runs the tasks it holds in order, so tasks queued in a slot behind one that runs long
// are stranded there. Three rules keep work from waiting in the wrong place:
//  - Depth follows the measured task length (EWMA, and the time the running tasks have taken so
//    far): enough for ~2 ms of work per slot, between 1 and 64. Short tasks are pipelined so a
//    slot never waits for a round trip; long ones go one per slot.
//  - Idle slots are served first, one task each, and a slot that went idle gets more than one
//    only after it has returned a result quickly ("slow start"): a burst of long tasks after
//    short ones is spread over the slots instead of following the old estimate into one.
//  - Recall: when a slot's running task has run longer than a task is expected to
//    (max(1 ms, 4x the typical task)) while tasks wait behind it, those tasks are recalled; the
//    slot hands back the ones it has not started and they are placed again (on an idle slot,
//    or back to the scheduler as surplus).
// The capacity the worker asks the scheduler for is slots x depth, doubled when tasks are short
// (a second round waits in the worker so slots never wait for the scheduler).
//
// Not thread-safe: the worker's loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "common/clock.hpp"

namespace lrts::worker {

class Dispatch {
 public:
  static constexpr double kTargetQueuedNs = 2e6;  // keep ~2 ms of work in each slot
  static constexpr uint32_t kMaxDepth = 64;
  static constexpr int64_t kMinLongNs = 1'000'000;

  explicit Dispatch(int slots);

  int slots() const { return static_cast<int>(slots_.size()); }
  // A new task waits at the back of the worker's queue.
  void enqueue(uint32_t ref) { queue_.push_back(ref); }
  // Takes a waiting task out (cancelled). False if it is not in the worker's queue.
  bool remove_queued(uint32_t ref);
  // Every waiting task, taken out (a worker leaving or draining).
  std::vector<uint32_t> take_queued();
  // Waiting tasks beyond what the worker should hold now (the typical task got longer), taken
  // from the back of the queue, to go back to the scheduler.
  std::vector<uint32_t> take_surplus(TimePoint now);

  // The slot process is up and said hello / died (its tasks are the caller's to settle:
  // in_flight() lists them, the running one first).
  void slot_up(int slot);
  void slot_down(int slot);
  bool is_up(int slot) const { return slots_[slot].up; }
  const std::deque<uint32_t>& in_flight(int slot) const { return slots_[slot].in_flight; }
  // When the slot's first task started, as seen from here.
  TimePoint front_started(int slot) const { return slots_[slot].front_started; }
  bool busy() const;
  // Puts tasks back at the front of the queue, in order (tasks of a dead slot behind the one
  // that was running).
  void requeue_front(const std::vector<uint32_t>& refs);

  // The slot finished `ref`. False if that is not the task it was running (a broken slot).
  bool on_result(int slot, uint32_t ref, uint64_t run_ns, TimePoint now);
  // The slot handed back these tasks it had not started: they wait at the front of the queue.
  void on_recalled(int slot, const std::vector<uint32_t>& refs);
  // Removes a task from a slot's list without it running there (cancelled and recalled).
  bool drop_from_slot(int slot, uint32_t ref);

  struct Batch {
    int slot;
    std::vector<uint32_t> refs;
  };
  // What to send now: new tasks for slots, and recalls of stranded ones.
  void plan(TimePoint now, std::vector<Batch>& runs, std::vector<Batch>& recalls);
  // Asks the slot for specific tasks back (say, cancelled ones) with the next plan.
  void want_back(int slot, uint32_t ref);

  uint32_t depth(TimePoint now) const;
  // How many tasks the worker should ask the scheduler for in total.
  uint32_t capacity(TimePoint now) const;
  size_t queued() const { return queue_.size(); }
  size_t in_slots() const;
  // When plan() has a recall to make at the earliest, if nothing else happens first.
  TimePoint next_deadline() const;
  double typical_run_ns() const { return ewma_run_ns_; }

 private:
  struct Slot {
    bool up = false;
    std::deque<uint32_t> in_flight;  // the order the slot runs them
    TimePoint front_started{};
    bool fast = false;            // returned a quick result since it was last idle
    bool recall_pending = false;  // a recall is out; wait for its answer
    std::vector<uint32_t> wanted_back;
  };
  int64_t long_ns() const;

  std::vector<Slot> slots_;
  std::deque<uint32_t> queue_;
  double ewma_run_ns_ = 0;  // 0 until the first result
};

}  // namespace lrts::worker
