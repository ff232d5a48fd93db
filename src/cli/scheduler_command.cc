#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "flags/flags.hpp"
#include "scheduler/server.hpp"

namespace lrts::cli {

namespace {

// Where a scheduler keeps its journal when not told: one directory per port, under the XDG
// state directory, so that two schedulers on one machine never share one.
std::string default_state_dir(int port) {
  std::string base;
  if (const char* xdg = std::getenv("XDG_STATE_HOME"); xdg && *xdg == '/') {
    base = xdg;
  } else if (const char* home = std::getenv("HOME"); home && *home) {
    base = std::string(home) + "/.local/state";
  } else {
    base = "/var/tmp/lrts-" + std::to_string(::getuid());
  }
  return base + "/lrts/scheduler-" + std::to_string(port);
}

class SchedulerCommand final : public Command {
 public:
  explicit SchedulerCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("scheduler",
                                 "Run the scheduler: queues tasks, assigns them to "
                                 "workers, returns results to applications")) {
    CLI::App& a = *app_;
    a.add_option("--address", so_.address,
                 "Address to listen on (IP, host name, or * for every interface)")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--port", so_.port, "TCP port to listen on")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    a.add_option("--timeout", timeout_s_, flags::kTimeoutHelp)
        ->capture_default_str()
        ->check(flags::number(0, 86400));
    a.add_option("--heartbeat-interval", heartbeat_s_,
                 "Seconds between heartbeats that workers and applications send")
        ->capture_default_str()
        ->check(flags::number(0.01, 3600));
    a.add_option("--worker-timeout", worker_timeout_s_,
                 "Seconds without a heartbeat after which a worker is declared lost and its tasks "
                 "are requeued (a task's own process never has to heartbeat); at least twice "
                 "--heartbeat-interval")
        ->capture_default_str()
        ->check(flags::number(0.05, 86400));
    a.add_option("--max-heartbeat-rate", so_.core.max_heartbeat_rate,
                 "Most worker heartbeats a second the scheduler (and each relay) receives: past "
                 "this many workers per --heartbeat-interval, the interval workers are told "
                 "doubles as often as needed, and --worker-timeout grows with it (a relay's "
                 "summary counts as one heartbeat; a worker that leaves or reconnects is still "
                 "noticed at once)")
        ->capture_default_str()
        ->check(CLI::Range(1u, 10'000'000u));
    a.add_option("--app-timeout", app_timeout_s_,
                 "Seconds without a heartbeat after which an application counts as disconnected; "
                 "at least twice --heartbeat-interval")
        ->capture_default_str()
        ->check(flags::number(0.05, 86400));
    a.add_option("--app-grace", app_grace_s_,
                 "Seconds a disconnected application's tasks keep running and its results wait "
                 "for it to come back (same application id) before they are dropped; also the "
                 "most an application may ask for")
        ->capture_default_str()
        ->check(flags::number(0, 30.0 * 86400));
    a.add_option("--keep-results", keep_results_,
                 "How long the results of a detached application (lrts submit without --wait, "
                 "detach_application) wait to be collected: seconds, or 90m, 12h, 7d")
        ->capture_default_str()
        ->check(flags::duration(1, 10.0 * 365 * 86400));
    a.add_option("--state-dir", so_.state_dir,
                 "Directory for the journal (SQLite): a scheduler restarted with the same "
                 "directory loses no task or result (default: $XDG_STATE_HOME/lrts/scheduler-PORT "
                 "or ~/.local/state/lrts/scheduler-PORT)")
        ->check(flags::non_empty());
    a.add_flag("--no-journal", no_journal_,
               "Keep state in memory only: a scheduler that dies loses its queue and results");
    a.add_option("--journal-sync", journal_sync_,
                 "normal: commits survive the scheduler being killed; full: also a machine crash "
                 "or power loss (an fsync per commit)")
        ->capture_default_str()
        ->check(CLI::IsMember({"normal", "full"}));
    a.add_option("--unknown-service-wait", unoffered_wait_s_,
                 "Seconds tasks of a service that no connected worker offers wait before they go "
                 "to any worker, which fails them naming the services it has (while no worker is "
                 "connected at all, tasks wait)")
        ->capture_default_str()
        ->check(flags::number(0, 86400));
    a.add_option("--reclaim-grace", reclaim_s_,
                 "After a restart, seconds to wait for workers to claim the tasks they were "
                 "running before those go back to the queue (default: --worker-timeout)")
        ->check(flags::number(0, 86400));
    a.add_option("--max-message-mb", max_mb_,
                 "Largest message accepted, in MiB: a peer that sends a larger one has its "
                 "connection closed (it reconnects; lrts peers split what they send, and payloads "
                 "larger than a message travel in chunks)")
        ->capture_default_str()
        ->check(flags::number(1, 4095));
    add_auth_flag(a, so_.auth_dir,
                  "the scheduler uses scheduler.key and accepts the keys listed in `members` "
                  "(re-read when it changes)");
    add_insecure_flag(a, so_.insecure);
    a.add_option("--hoard-timeout", hoard_timeout_,
                 "A worker that holds tasks and, while it heartbeats, runs none of them and "
                 "finishes none for this long is flagged as hoarding: its tasks go to other "
                 "workers (a task that runs, however long, never counts): seconds, or 90m, 12h")
        ->capture_default_str()
        ->check(flags::duration(1, 10.0 * 365 * 86400));
    a.add_option("--max-worker-capacity", so_.core.max_worker_capacity,
                 "Most tasks one worker may hold at once, whatever it asks for (it is held to "
                 "256 per slot too)")
        ->capture_default_str()
        ->check(CLI::Range(1u, 1u << 24));
    flags::add_log_level(a, log_level_);
    flags::add_log_format(a, log_format_);
    flags::add_metrics_port(a, so_.metrics_port, so_.metrics_address);
  }

  CLI::App* app() const override { return app_; }

  int run() override {
    if (auto s = log::init("scheduler", log_level_, log_format_); !s) {
      std::fprintf(stderr, "lrts scheduler: %s\n", s.error().c_str());
      return 2;
    }
    if (worker_timeout_s_ < 2 * heartbeat_s_ || app_timeout_s_ < 2 * heartbeat_s_) {
      std::fprintf(stderr,
                   "lrts scheduler: --worker-timeout (%g s) and --app-timeout (%g s) must be at "
                   "least twice --heartbeat-interval (%g s), or every peer counts as lost between "
                   "two heartbeats\n",
                   worker_timeout_s_, app_timeout_s_, heartbeat_s_);
      return 2;
    }
    if (no_journal_ && !so_.state_dir.empty()) {
      std::fprintf(stderr, "lrts scheduler: --no-journal and --state-dir contradict each other\n");
      return 2;
    }
    if (!no_journal_ && so_.state_dir.empty()) so_.state_dir = default_state_dir(so_.port);
    so_.core.heartbeat_interval = flags::seconds(heartbeat_s_);
    so_.core.worker_timeout = flags::seconds(worker_timeout_s_);
    so_.core.app_timeout = flags::seconds(app_timeout_s_);
    so_.core.app_grace = flags::seconds(app_grace_s_);
    double keep_s = 0;
    flags::parse_duration(keep_results_, &keep_s);
    so_.core.keep_results = flags::seconds(keep_s);
    double hoard_s = 0;
    flags::parse_duration(hoard_timeout_, &hoard_s);
    so_.core.hoard_timeout = flags::seconds(hoard_s);
    so_.core.unoffered_service_wait = flags::seconds(unoffered_wait_s_);
    so_.core.reclaim_grace = flags::seconds(reclaim_s_ >= 0 ? reclaim_s_ : worker_timeout_s_);
    so_.max_message_bytes = static_cast<size_t>(max_mb_ * 1024 * 1024);
    so_.journal_sync_full = journal_sync_ == "full";
    auto server = scheduler::SchedulerServer::create(so_);
    if (!server) {
      std::fprintf(stderr, "lrts scheduler: %s\n", server.error().c_str());
      return 2;
    }
    return (*server)->run();
  }

 private:
  CLI::App* app_;
  scheduler::ServerOptions so_;
  std::string log_level_ = "info";
  std::string log_format_ = "text";
  std::string journal_sync_ = "normal";
  std::string keep_results_ = "7d";
  std::string hoard_timeout_ = "5m";
  bool no_journal_ = false;
  double timeout_s_ = 1, heartbeat_s_ = 1, worker_timeout_s_ = 10, app_timeout_s_ = 10,
         app_grace_s_ = 600, max_mb_ = 64, unoffered_wait_s_ = 5, reclaim_s_ = -1;
};

}  // namespace

std::unique_ptr<Command> scheduler_command(CLI::App& lrts) {
  return std::make_unique<SchedulerCommand>(lrts);
}

}  // namespace lrts::cli
