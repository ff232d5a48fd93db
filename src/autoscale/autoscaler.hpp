// `lrts autoscale`: grows and shrinks the cluster's workers through Slurm. Every --interval it
// asks the scheduler for its status (the queue, the estimate of the work left) and the workers
// connected, asks squeue for its jobs, lets the Policy decide, and acts: sbatch a worker job
// (`lrts worker` with the cluster's flags, --idle-timeout so an idle one ends, and with a time
// limit a SIGTERM --stop-before the limit so it drains instead of being killed), scancel a
// pending job no longer needed, or drain a surplus worker through the scheduler. A failing
// sbatch is retried with a doubling back-off (2 s to 5 min), each failure logged once with
// Slurm's reason. It holds no task: killing it stops the scaling, never the work.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "autoscale/policy.hpp"
#include "autoscale/slurm.hpp"
#include "common/result.hpp"

namespace lrts::autoscale {

struct AutoscaleOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string auth_dir;  // the cluster's keys: admin.key to query and drain; given to workers
  PolicyOptions policy;
  std::optional<std::chrono::system_clock::time_point> deadline;
  Duration interval = seconds(2);
  double idle_timeout_s = 60;
  std::string job_name = "lrts-worker";
  std::string partition;
  std::string time_limit;      // sbatch --time (empty: the partition's default)
  double stop_before_s = 300;  // with a time limit: SIGTERM this long before it
  std::string job_output;      // sbatch --output (empty: Slurm's default)
  std::vector<std::string> sbatch_args;
  std::string lrts_binary;               // what the jobs run (default: this executable)
  std::vector<std::string> worker_args;  // more `lrts worker` flags
  SlurmOptions slurm;
};

// The sbatch arguments of one worker job (for tests and --dry-run style checks).
std::vector<std::string> worker_job_args(const AutoscaleOptions& options);

// "90s", "30m", "2h", "1h30m", "HH:MM[:SS]" (the next such time), "YYYY-MM-DDTHH:MM[:SS]"
// (local time) or "@UNIX_SECONDS".
Result<std::chrono::system_clock::time_point> parse_deadline(
    const std::string& text, std::chrono::system_clock::time_point now);

// Slurm's time limit text (sbatch --time) in seconds.
Result<double> parse_time_limit(const std::string& text);

// The checks of the options together (a job name squeue can list, --stop-before inside the
// time limit, ...): a one-line reason when they do not hold.
Result<void> check_options(const AutoscaleOptions& options);

// Runs until SIGINT/SIGTERM; returns the exit code. Pending jobs it submitted are cancelled on
// the way out; running workers stay and end when idle.
int run_autoscale(const AutoscaleOptions& options);

}  // namespace lrts::autoscale
