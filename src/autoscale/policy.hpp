// How many worker jobs the cluster should have: the decisions of `lrts autoscale`, without
// Slurm or sockets, so that tests drive them with a fake clock.
//
// Two policies:
// - By queue (no deadline): a slot for every unfinished task, up to --max-workers jobs. Idle
//   workers end by themselves (--idle-timeout), so the count falls as the queue empties.
// - To a deadline: the fewest slots that finish the known work in time, from the scheduler's
//   estimate (run times measured per service, what runs and how long it has run). Until some
//   task of the queue's services has finished nothing is known, and one job (or --min-workers)
//   probes. New slots count only after the measured time from sbatch to a worker connected.
//   When more slots run than the deadline needs for a few rounds in a row, the newest workers
//   are drained (they finish what they run, then end), but only workers that have served a
//   while, and not soon after a submission.
//
// Jobs on their way out (draining) still count against --max-workers.
//
// Jobs submitted and not yet connected count as capacity to come, so a slow queue never makes
// the autoscaler submit again and again. Not thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"

namespace lrts::autoscale {

// What the scheduler says (its status query and estimate).
struct ClusterView {
  uint64_t queued = 0;  // including tasks waiting for their workers after a restart
  uint64_t running = 0;
  uint64_t slots = 0;          // of every connected worker, ours or not
  double work_s = 0;           // known work left
  double longest_s = 0;        // the longest single task left
  uint64_t unknown_tasks = 0;  // of services with no finished task yet
  uint64_t unfinished() const { return queued + running; }
};

// One of our worker jobs, as the cluster manager and the scheduler see it.
struct Job {
  std::string id;
  bool running = false;      // the cluster manager runs it (else it is pending)
  bool connected = false;    // its worker is connected to the scheduler
  bool draining = false;     // its worker drains (asked to, or its time limit is near)
  uint32_t held = 0;         // tasks its worker holds (when connected)
  TimePoint connected_at{};  // when it was first seen connected
  TimePoint submitted{};     // when we submitted it (TimePoint{}: found, not ours this run)
};

struct PolicyOptions {
  uint32_t max_workers = 10;
  uint32_t min_workers = 0;
  uint32_t slots_per_worker = 1;
  std::optional<TimePoint> deadline;  // empty: by queue
  uint32_t surplus_rounds = 3;        // rounds over the need before a worker is drained
  // A worker is drained only after serving this long, and no sooner than this after the last
  // submission: no submitting and draining in turns.
  Duration settle = seconds(60);
};

struct Decision {
  uint32_t target = 0;                    // jobs wanted
  uint32_t submit = 0;                    // jobs to submit now
  std::vector<std::string> cancel;        // pending jobs no longer needed
  std::vector<std::string> drain;         // connected workers' jobs to drain (deadline surplus)
  std::optional<double> finish_in_s;      // predicted, with the target's slots
  std::optional<double> finish_now_in_s;  // predicted, with the slots connected now
  bool deadline_reachable = true;         // false: even --max-workers cannot make it
  std::string why;                        // one line for the log
};

class Policy {
 public:
  explicit Policy(PolicyOptions options) : options_(options) {}

  Decision decide(const ClusterView& cluster, const std::vector<Job>& jobs, TimePoint now);

  // The time from sbatch to the worker connected, as measured (a moving average); before any
  // measurement, `initial`.
  void note_startup(Duration took);
  Duration startup() const { return startup_; }

 private:
  uint32_t clamp(uint64_t jobs) const;

  PolicyOptions options_;
  Duration startup_ = seconds(10);
  bool measured_startup_ = false;
  uint32_t surplus_seen_ = 0;
  TimePoint last_submit_{};
};

}  // namespace lrts::autoscale
