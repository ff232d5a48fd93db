// Placement: which queued task goes to which worker. Tasks are queued per service name; a
// worker gets only tasks of services it offers (FIFO within a service; the service whose oldest
// task has waited longest is served first; retries go ahead). A service no connected worker
// offers goes to any worker after `unoffered_wait`, which fails its tasks naming what it has, so
// a typo fails quickly instead of hanging; while no worker is connected at all, tasks wait.
//
// Queues hold (task, generation) handles: an entry whose task moved on (cancelled, finished,
// adopted) goes stale and is skipped lazily. Workers with room wait in round-robin ready lists,
// one per service and one of all, with a stamp so entries of a worker that filled up or left
// are skipped too. Not thread-safe: part of SchedulerCore.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/slab.hpp"
#include "scheduler/names.hpp"
#include "scheduler/state.hpp"

namespace lrts::scheduler {

class Placement {
 public:
  Placement(Slab<Task>& tasks, Slab<Worker>& workers, NameTable& services)
      : tasks_(tasks), workers_(workers), services_(services) {}

  // The task (state kQueued) waits; a retry goes ahead of newer work.
  void enqueue(uint32_t t);
  // A worker offers these services (name ids, acquired by the caller) instead of what it did.
  void set_services(uint32_t w, std::vector<uint32_t> services);
  // The worker may have room now: it waits in the ready lists of its services.
  void mark_ready(uint32_t w);
  void forget_worker(uint32_t w);
  // A service name id that was just (re)used for a new name: its state starts afresh.
  void reset_service(uint32_t id);

  // Hands queued tasks to workers with room: `take(w, t)` assigns t to w (the caller updates
  // the task and the worker's count). `live_workers` says whether any worker is connected.
  void pump(TimePoint now, Duration unoffered_wait, bool live_workers, uint32_t max_per_worker,
            const std::function<void(uint32_t w, uint32_t t)>& take);

  size_t entries() const { return entries_; }
  // Checks: every queued task is in a queue, counts agree (for verify()).
  std::string check() const;

 private:
  struct Queued {
    uint64_t order;
    SlabHandle task;
  };
  using ReadyList = std::deque<std::pair<uint32_t, uint32_t>>;  // worker, stamp
  struct Service {
    std::deque<Queued> queue;
    ReadyList ready;
    uint32_t offered_by = 0;
    TimePoint unoffered_since = TimePoint::max();  // queued work that no worker offers
  };
  Service& service(uint32_t id);
  bool fresh(const Queued& e) const;
  void push_ready(ReadyList& list, uint32_t w);
  uint32_t free_capacity(const Worker& w) const {
    return w.capacity > w.assigned ? w.capacity - w.assigned : 0;
  }

  Slab<Task>& tasks_;
  Slab<Worker>& workers_;
  NameTable& services_;
  std::vector<Service> by_service_;  // indexed by service name id
  ReadyList ready_any_;
  size_t entries_ = 0;  // across all services, stale ones included
  uint64_t next_back_ = uint64_t{1} << 62;
  uint64_t next_front_ = (uint64_t{1} << 62) - 1;
};

}  // namespace lrts::scheduler
