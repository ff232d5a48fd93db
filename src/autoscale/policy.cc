#include "autoscale/policy.hpp"

#include <algorithm>
#include <cmath>

namespace lrts::autoscale {

uint32_t Policy::clamp(uint64_t jobs) const {
  return static_cast<uint32_t>(std::clamp<uint64_t>(
      jobs, options_.min_workers, std::max(options_.min_workers, options_.max_workers)));
}

void Policy::note_startup(Duration took) {
  if (took.count() < 0) return;
  if (!measured_startup_) {
    startup_ = took;
    measured_startup_ = true;
    return;
  }
  startup_ = startup_ + (took - startup_) / 4;
}

Decision Policy::decide(const ClusterView& c, const std::vector<Job>& jobs, TimePoint now) {
  Decision d;
  const uint64_t k = std::max<uint32_t>(1, options_.slots_per_worker);
  uint64_t connected = 0, serving = 0;
  for (const Job& j : jobs) {
    connected += j.connected ? 1 : 0;
    serving += j.connected && !j.draining ? 1 : 0;
  }
  // Slots of workers that are not ours (started by hand, another autoscaler) serve too.
  const uint64_t external = c.slots > connected * k ? c.slots - connected * k : 0;
  const uint64_t unfinished = c.unfinished();
  const uint64_t known = unfinished > c.unknown_tasks ? unfinished - c.unknown_tasks : 0;
  // Tasks of services never seen finishing are taken as long as the known ones on average.
  double total_s = c.work_s;
  if (c.unknown_tasks > 0 && known > 0) {
    total_s += static_cast<double>(c.unknown_tasks) * c.work_s / static_cast<double>(known);
  }
  auto ends_in = [&](uint64_t slots) -> std::optional<double> {
    if (unfinished == 0) return 0.0;
    if (slots == 0 || known == 0) return std::nullopt;
    return std::max(total_s / static_cast<double>(slots), c.longest_s);
  };
  auto jobs_for = [&](uint64_t slots) -> uint64_t {
    return slots > external ? (slots - external + k - 1) / k : 0;
  };

  uint64_t wanted_jobs = 0;
  if (!options_.deadline) {
    wanted_jobs = jobs_for(unfinished);
    d.why = std::to_string(unfinished) + " unfinished task(s)";
  } else if (unfinished == 0) {
    d.why = "nothing left to run";
  } else if (known == 0) {
    // Nothing measured yet: one worker finds out how long the tasks take.
    wanted_jobs = 1;
    d.why = "no run time known yet: probing with one worker";
  } else {
    // New workers serve only after the time they take to start.
    const double left = to_seconds(*options_.deadline - now) - to_seconds(startup_);
    // A task that starts in the last wave ends up to one task's time after the work divided
    // evenly; half the longest task left covers that on average.
    const double usable = left - c.longest_s / 2;
    if (left <= c.longest_s || usable <= 0) {
      wanted_jobs = options_.max_workers;
      d.deadline_reachable = false;
      d.why = "the deadline is nearer than the longest task left";
    } else {
      const auto slots = static_cast<uint64_t>(std::ceil(total_s / usable));
      wanted_jobs = jobs_for(std::min(slots, unfinished));
      d.why = std::to_string(static_cast<int64_t>(total_s)) + " s of work in " +
              std::to_string(static_cast<int64_t>(left)) + " s";
      if (wanted_jobs > options_.max_workers) d.deadline_reachable = false;
    }
  }
  d.target = clamp(wanted_jobs);
  uint64_t live = 0;  // jobs that will serve: draining ones are on their way out
  for (const Job& j : jobs) live += j.draining ? 0 : 1;
  if (d.target > live) {
    // Draining jobs still run: together with the new ones they stay within --max-workers.
    const uint64_t room =
        options_.max_workers > jobs.size() ? options_.max_workers - jobs.size() : 0;
    d.submit = static_cast<uint32_t>(std::min<uint64_t>(d.target - live, room));
    if (d.submit > 0) last_submit_ = now;
  } else if (d.target < live) {
    // Pending jobs no longer needed go, newest first; running ones end by themselves (idle) or
    // are drained below.
    uint64_t excess = live - d.target;
    std::vector<const Job*> pending;
    for (const Job& j : jobs) {
      if (!j.running && !j.connected && !j.draining) pending.push_back(&j);
    }
    std::sort(pending.begin(), pending.end(),
              [](const Job* a, const Job* b) { return a->submitted > b->submitted; });
    for (const Job* j : pending) {
      if (excess == 0) break;
      d.cancel.push_back(j->id);
      --excess;
    }
    const bool settled = last_submit_ == TimePoint{} || now - last_submit_ >= options_.settle;
    if (options_.deadline && excess > 0 && serving > d.target && settled) {
      if (++surplus_seen_ >= options_.surplus_rounds) {
        std::vector<const Job*> busy;
        for (const Job& j : jobs) {
          if (j.connected && !j.draining && now - j.connected_at >= options_.settle) {
            busy.push_back(&j);
          }
        }
        // The ones holding least go first; of those, the newest.
        std::sort(busy.begin(), busy.end(), [](const Job* a, const Job* b) {
          return a->held != b->held ? a->held < b->held : a->submitted > b->submitted;
        });
        const uint64_t n = std::min<uint64_t>(excess, serving - d.target);
        for (uint64_t i = 0; i < n && i < busy.size(); ++i) d.drain.push_back(busy[i]->id);
        surplus_seen_ = 0;
      }
    } else {
      surplus_seen_ = 0;
    }
  } else {
    surplus_seen_ = 0;
  }
  d.finish_in_s = ends_in(external + static_cast<uint64_t>(d.target) * k);
  d.finish_now_in_s = ends_in(c.slots);
  return d;
}

}  // namespace lrts::autoscale
