#include "scheduler/placement.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace lrts::scheduler {

Placement::Service& Placement::service(uint32_t id) {
  if (by_service_.size() <= id) by_service_.resize(id + 1);
  return by_service_[id];
}

void Placement::reset_service(uint32_t id) {
  Service& sv = service(id);
  entries_ -= sv.queue.size();
  sv = Service{};
}

bool Placement::fresh(const Queued& e) const {
  return tasks_.valid(e.task) && tasks_[e.task.index].state == TaskState::kQueued;
}

void Placement::enqueue(uint32_t t) {
  Task& task = tasks_[t];
  Service& sv = service(task.service);
  if (task.attempt > 0) {
    sv.queue.push_front({next_front_--, tasks_.handle(t)});  // a retry goes ahead of newer work
  } else {
    sv.queue.push_back({next_back_++, tasks_.handle(t)});
  }
  ++entries_;
}

void Placement::set_services(uint32_t w, std::vector<uint32_t> services) {
  Worker& worker = workers_[w];
  for (uint32_t n : worker.services) --service(n).offered_by;
  worker.services = std::move(services);
  for (uint32_t n : worker.services) {
    Service& sv = service(n);
    if (sv.offered_by++ == 0) sv.unoffered_since = TimePoint::max();
  }
  if (worker.in_ready) {  // it may offer other services now: list it again
    worker.in_ready = false;
    mark_ready(w);
  }
}

void Placement::push_ready(ReadyList& list, uint32_t w) {
  list.emplace_back(w, workers_[w].ready_stamp);
  // Entries go stale as workers fill up; keep lists that are rarely drained small.
  if (list.size() > 2 * workers_.live() + 16) {
    std::erase_if(list, [&](const auto& e) {
      if (!workers_.used(e.first)) return true;
      const Worker& x = workers_[e.first];
      return !x.in_ready || x.ready_stamp != e.second;
    });
  }
}

void Placement::mark_ready(uint32_t w) {
  Worker& worker = workers_[w];
  if (worker.in_ready || free_capacity(worker) == 0) return;
  worker.in_ready = true;
  ++worker.ready_stamp;
  for (uint32_t n : worker.services) push_ready(service(n).ready, w);
  push_ready(ready_any_, w);
}

void Placement::forget_worker(uint32_t w) {
  Worker& worker = workers_[w];
  worker.in_ready = false;
  ++worker.ready_stamp;  // its entries in ready lists go stale
  set_services(w, {});
}

void Placement::pump(TimePoint now, Duration unoffered_wait, bool live_workers,
                     uint32_t max_per_worker,
                     const std::function<void(uint32_t w, uint32_t t)>& take) {
  if (entries_ == 0) return;
  // Services with work, the one waiting longest first; each goes to workers that offer it.
  std::vector<std::pair<uint64_t, uint32_t>> work;
  for (uint32_t n = 0; n < by_service_.size(); ++n) {
    Service& sv = by_service_[n];
    while (!sv.queue.empty() && !fresh(sv.queue.front())) {
      sv.queue.pop_front();  // stale: cancelled, finished or adopted meanwhile
      --entries_;
    }
    if (sv.queue.empty()) continue;
    if (sv.offered_by == 0 && sv.unoffered_since == TimePoint::max() && live_workers) {
      sv.unoffered_since = now;
      LRTS_WARN(
          "no connected worker offers service '{}'; its tasks go to any worker in {} ms "
          "(where they fail with the reason) unless one that offers it connects",
          services_[n], to_ms(unoffered_wait));
    }
    work.emplace_back(sv.queue.front().order, n);
  }
  std::sort(work.begin(), work.end());
  for (const auto& [order, n] : work) {
    Service& sv = by_service_[n];
    const bool orphan = sv.offered_by == 0 && sv.unoffered_since != TimePoint::max() &&
                        now - sv.unoffered_since >= unoffered_wait;
    ReadyList& ready = orphan ? ready_any_ : sv.ready;
    while (!sv.queue.empty() && !ready.empty()) {
      const auto [w, stamp] = ready.front();
      ready.pop_front();
      if (!workers_.used(w)) continue;
      Worker& worker = workers_[w];
      if (!worker.in_ready || worker.ready_stamp != stamp) continue;  // stale entry
      uint32_t want = std::min(free_capacity(worker), max_per_worker);
      while (want > 0 && !sv.queue.empty()) {
        const Queued e = sv.queue.front();
        sv.queue.pop_front();
        --entries_;
        if (!fresh(e)) continue;
        take(w, e.task.index);
        --want;
      }
      if (free_capacity(worker) > 0) {
        ready.emplace_back(w, stamp);  // round robin: back of the line while it has room
      } else {
        worker.in_ready = false;  // its entries elsewhere go stale; mark_ready lists it again
      }
    }
  }
}

std::string Placement::check() const {
  size_t entries = 0;
  for (const Service& sv : by_service_) entries += sv.queue.size();
  if (entries != entries_) return "queue entry count is wrong";
  size_t in_queue = 0;
  for (const Service& sv : by_service_) {
    for (const Queued& e : sv.queue) in_queue += fresh(e) ? 1 : 0;
  }
  size_t queued = 0;
  for (uint32_t t = 0; t < tasks_.capacity(); ++t) {
    queued += tasks_.used(t) && tasks_[t].state == TaskState::kQueued;
  }
  if (in_queue < queued) return "a queued task is not in the queue";
  std::vector<uint32_t> offered(by_service_.size(), 0);
  for (uint32_t w = 0; w < workers_.capacity(); ++w) {
    if (!workers_.used(w)) continue;
    for (uint32_t n : workers_[w].services) {
      if (n >= offered.size()) return "a worker offers a service without state";
      ++offered[n];
    }
  }
  for (size_t n = 0; n < by_service_.size(); ++n) {
    if (offered[n] != by_service_[n].offered_by) return "offered_by count is wrong";
  }
  return {};
}

}  // namespace lrts::scheduler
