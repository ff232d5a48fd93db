// lrts autoscale: workers as Slurm jobs, as many as the queue (or a deadline) needs.
#include <cstdio>

#include "autoscale/autoscaler.hpp"
#include "cli/commands.hpp"
#include "common/log.hpp"
#include "flags/flags.hpp"

namespace lrts::cli {

namespace {

class AutoscaleCommand final : public Command {
 public:
  explicit AutoscaleCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "autoscale",
            "Grow and shrink the workers through Slurm: submit worker jobs (sbatch) as the "
            "queue grows, up to --max-workers; idle workers end after --idle-timeout; with "
            "--deadline, run the fewest workers that finish the queue by then, from the run "
            "times the scheduler measured. Flags after -- go to every `lrts worker`, e.g. "
            "`lrts autoscale --max-workers 20 -- --service-lib /opt/lib.so`")) {
    CLI::App& a = *app_;
    add_scheduler_flags(a, o_.scheduler_address, o_.scheduler_port);
    add_auth_flag(a, o_.auth_dir,
                  "admin.key to query and drain; the same directory is given to the workers, "
                  "which use worker.key (so it must be readable where the jobs run)");
    a.add_option("--max-workers", o_.policy.max_workers, "Most worker jobs at once")
        ->capture_default_str()
        ->check(CLI::Range(1, 100000));
    a.add_option("--min-workers", o_.policy.min_workers,
                 "Worker jobs kept even with nothing queued (they are submitted again after "
                 "they end idle)")
        ->capture_default_str()
        ->check(CLI::Range(0, 100000));
    a.add_option("--slots-per-worker", o_.policy.slots_per_worker,
                 "Tasks each worker job runs at once (its --max-jobs; ask Slurm for the CPUs "
                 "with --sbatch-arg=--cpus-per-task=N)")
        ->capture_default_str()
        ->check(CLI::Range(1, 4096));
    deadline_option_ =
        a.add_option("--deadline", deadline_,
                     "Finish the queue by then with the fewest workers: 90s, 30m, 2h, 1h30m from "
                     "now, HH:MM[:SS], YYYY-MM-DDTHH:MM[:SS] (local time) or @UNIX_SECONDS. "
                     "Without it, a slot for every unfinished task");
    a.add_option("--idle-timeout", o_.idle_timeout_s,
                 "Seconds a worker job holds no task before it ends (the worker's "
                 "--idle-timeout)")
        ->capture_default_str()
        ->check(flags::number(1, 365.0 * 86400));
    a.add_option("--interval", interval_s_, "Seconds between looks at the queue and the jobs")
        ->capture_default_str()
        ->check(flags::number(0.1, 3600));
    a.add_option("--job-name", o_.job_name,
                 "Slurm job name of the worker jobs (the autoscaler counts the jobs of that "
                 "name as its own; workers are named NAME-JOBID)")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--partition", o_.partition, "Slurm partition (default: Slurm's default)");
    a.add_option("--time-limit", o_.time_limit,
                 "Slurm time limit of each job (sbatch --time, e.g. 60 or 4:00:00); each job's "
                 "worker gets SIGTERM --stop-before it, takes no new task, finishes what it can "
                 "and hands back the rest, so no task is killed by the limit");
    a.add_option("--stop-before", o_.stop_before_s,
                 "With --time-limit: seconds before the limit the worker starts draining")
        ->capture_default_str()
        ->check(flags::number(30, 86400));
    a.add_option("--job-output", o_.job_output,
                 "Where each job's output goes (sbatch --output, e.g. /shared/logs/%x-%j.out; "
                 "default: Slurm's slurm-JOBID.out in this directory)");
    a.add_option("--sbatch-arg", o_.sbatch_args,
                 "One more sbatch argument, e.g. --sbatch-arg=--mem=4G (repeatable)")
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    a.add_option("--lrts", o_.lrts_binary,
                 "Path of lrts on the nodes (default: this executable's path)");
    flags::add_log_level(a, log_level_);
    flags::add_log_format(a, log_format_);
  }

  CLI::App* app() const override { return app_; }
  bool takes_program() const override { return true; }
  void set_program(std::vector<std::string> argv) override { o_.worker_args = std::move(argv); }

  int run() override {
    if (auto s = log::init("autoscale", log_level_, log_format_); !s) {
      std::fprintf(stderr, "lrts autoscale: %s\n", s.error().c_str());
      return 2;
    }
    if (o_.policy.min_workers > o_.policy.max_workers) {
      std::fprintf(stderr, "lrts autoscale: --min-workers %u is above --max-workers %u\n",
                   o_.policy.min_workers, o_.policy.max_workers);
      return 2;
    }
    if (auto ok = autoscale::check_options(o_); !ok) {
      std::fprintf(stderr, "lrts autoscale: %s\n", ok.error().c_str());
      return 2;
    }
    if (deadline_option_->count() > 0) {
      auto at = autoscale::parse_deadline(deadline_, std::chrono::system_clock::now());
      if (!at) {
        std::fprintf(stderr, "lrts autoscale: %s\n", at.error().c_str());
        return 2;
      }
      o_.deadline = *at;
    }
    o_.interval = flags::seconds(interval_s_);
    return autoscale::run_autoscale(o_);
  }

 private:
  CLI::App* app_;
  autoscale::AutoscaleOptions o_;
  std::string deadline_;
  CLI::Option* deadline_option_ = nullptr;
  double interval_s_ = 2;
  std::string log_level_ = "info";
  std::string log_format_ = "text";
};

}  // namespace

std::unique_ptr<Command> autoscale_command(CLI::App& lrts) {
  return std::make_unique<AutoscaleCommand>(lrts);
}

}  // namespace lrts::cli
