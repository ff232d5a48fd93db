// The work left and when it would end: from the run times workers measured per service, what
// is queued and how long what runs has run. `lrts status`, the dashboard and `lrts autoscale`
// (which sizes the cluster to a deadline with it) read it from the status query.
//
// A queued task is expected to take its service's mean run time; a running one the mean less
// what it has run (a tenth of the mean once past it: it is one of the longer ones). Services
// with no finished task yet are counted apart (`unknown_tasks`): nothing is guessed for them.
// With S slots the work ends in about max(work / S, the longest single task left).
#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>

#include "scheduler/core.hpp"

namespace lrts::scheduler {

using nlohmann::json;

void SchedulerCore::note_run_time(uint32_t service, double seconds) {
  if (service == NameTable::kNone) return;
  if (service_runs_.size() <= service) service_runs_.resize(service + 1);
  ServiceRuns& r = service_runs_[service];
  ++r.finished;
  if (r.finished <= kRunsMeanOf) {
    r.mean_s += (seconds - r.mean_s) / static_cast<double>(r.finished);
  } else {
    r.mean_s += (seconds - r.mean_s) / static_cast<double>(kRunsMeanOf);
  }
}

void SchedulerCore::new_service_name(uint32_t service) {
  placement_.reset_service(service);
  if (service < service_runs_.size()) service_runs_[service] = ServiceRuns{};
}

std::string SchedulerCore::estimate_json() const {
  const std::array<uint64_t, 7> counts = {
      stats_.submitted,
      stats_.queued,
      stats_.assigned,
      stats_.finished,
      stats_.failed,
      stats_.cancelled,
      stats_.requeued + stats_.timed_out + worker_by_uid_.size()};
  if (!estimate_cache_.empty() && counts == estimate_counts_ && now_ - estimate_at_ < seconds(1)) {
    return estimate_cache_;  // only the running tasks' time has moved, by less than a second
  }
  struct Left {
    uint64_t queued = 0;
    uint64_t running = 0;
  };
  std::map<uint32_t, Left> by_service;
  double work_s = 0, longest_s = 0;
  uint64_t tasks = 0, unknown = 0;
  auto mean_of = [&](uint32_t service) -> double {
    if (service >= service_runs_.size() || service_runs_[service].finished == 0) return -1;
    return service_runs_[service].mean_s;
  };
  for (uint32_t i = 0; i < tasks_.capacity(); ++i) {
    if (!tasks_.used(i)) continue;
    const Task& t = tasks_[i];
    if (t.state == TaskState::kDone) continue;
    ++tasks;
    Left& left = by_service[t.service];
    const double mean = mean_of(t.service);
    double expect = mean;
    if (t.state == TaskState::kAssigned) {
      ++left.running;
      if (mean >= 0) expect = std::max(mean - to_seconds(now_ - t.started_at), mean / 10);
    } else {
      ++left.queued;
    }
    if (mean < 0) {
      ++unknown;
      continue;
    }
    work_s += expect;
    longest_s = std::max(longest_s, expect);
  }
  uint64_t slots = 0;
  for (const auto& [uid, wi] : worker_by_uid_) slots += workers_[wi].slots;

  json services = json::array();
  for (const auto& [service, left] : by_service) {
    if (services.size() >= 100) break;  // a row per service, at most 100
    json row{{"service", service == NameTable::kNone ? "" : service_names_[service]},
             {"queued", left.queued},
             {"running", left.running}};
    const double mean = mean_of(service);
    if (mean >= 0) {
      row["mean_run_s"] = mean;
      row["finished"] = service_runs_[service].finished;
    }
    services.push_back(std::move(row));
  }
  json j{{"tasks", tasks},         {"unknown_tasks", unknown}, {"work_s", work_s},
         {"longest_s", longest_s}, {"slots", slots},           {"services", std::move(services)}};
  // When the known work ends with the slots there are now (null: no slot, or nothing known).
  if (tasks == 0) {
    j["finish_in_s"] = 0.0;
  } else if (slots > 0 && unknown < tasks) {
    j["finish_in_s"] = std::max(work_s / static_cast<double>(slots), longest_s);
  } else {
    j["finish_in_s"] = nullptr;
  }
  estimate_cache_ = j.dump();
  estimate_at_ = now_;
  estimate_counts_ = counts;
  return estimate_cache_;
}

}  // namespace lrts::scheduler
