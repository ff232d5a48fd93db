#include "cli/cli.hpp"

#include <CLI/CLI.hpp>

#include <cctype>
#include <cstdio>
#include <iostream>

#include "common/log.hpp"
#include "common/net.hpp"
#include "lrts/worker_main.hpp"
#include "progress/server.hpp"
#include "progress/viewer.hpp"
#include "scheduler/server.hpp"
#include "worker/slot_runtime.hpp"
#include "worker/worker.hpp"

namespace lrts::cli {

namespace {

constexpr const char* kVersion = "0.1.0";

const char* const kTimeoutHelp =
    "Seconds. Accepted for compatibility with the original lrts, where it bounded the time spent "
    "decoding one network packet. lrts decodes without blocking and bounds messages by size "
    "instead (--max-message-mb), so the value is not used.";


void add_log_level(CLI::App& app, std::string& level) {
  app.add_option("--log-level", level, "Log detail: trace, debug, info, warn, error or off")
      ->capture_default_str()
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
}

CLI::Validator max_jobs_validator() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        try {
          const int n = std::stoi(v);
          if (n > 0 || (n >= -4 && n <= -1)) return {};
        } catch (...) {
        }
        return "-max-jobs must be a positive number of slots, or -1 (physical cores), -2 "
               "(logical cores), -3 (physical cores - 1), -4 (logical cores - 1); got " +
               v;
      },
      "N>0|-1|-2|-3|-4");
}

struct WorkerFlags {
  worker::WorkerOptions options;
  std::string log_level = "info";
  double timeout = 1;
  double max_message_mb = 64;
  int progress_floor_ms = 20;
  int progress_ceiling_ms = 1000;
  double max_job_memory_mb = 0;
  std::string on_stop = "finish";
  double drain_timeout_s = 0;
};

void add_worker_options(CLI::App& app, WorkerFlags& f) {
  auto& o = f.options;
  app.add_option("--scheduler-address", o.scheduler_address,
                 "Address (IP or host name) of the scheduler")
      ->capture_default_str();
  app.add_option("--scheduler-port", o.scheduler_port, "TCP port of the scheduler")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--progress-address", o.progress_address,
                 "Address of the progress server (optional; tasks never wait for it)")
      ->capture_default_str();
  app.add_option("--progress-port", o.progress_port, "TCP port of the progress server")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--max-jobs", o.max_jobs,
                 "Tasks run at once (one slot process each): N>0, or -1 physical cores, -2 "
                 "logical cores, -3 physical cores - 1, -4 logical cores - 1 (at least 1)")
      ->capture_default_str()
      ->check(max_jobs_validator());
  app.add_option("--timeout", f.timeout, kTimeoutHelp)->capture_default_str()->check(
      CLI::NonNegativeNumber);
  app.add_option("--service-lib", o.service_libs,
                 "Shared library of services to load into every slot (repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--name", o.name, "Worker name shown in logs and results (default host:pid)");
  app.add_option("--max-message-mb", f.max_message_mb,
                 "Largest message accepted, in MiB (task fields and results included)")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 4095.0));
  app.add_option("--max-job-memory-mb", f.max_job_memory_mb,
                 "Resident memory a slot may use while running a task; past it the slot is "
                 "stopped and the attempt is lost (retried up to the task's max_retries). 0: no "
                 "limit")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--on-stop", f.on_stop,
                 "What the first SIGTERM/SIGINT does: finish (take no new tasks, hand back "
                 "queued ones, finish running ones, deliver their results, then exit) or "
                 "handback (stop the running tasks and hand everything back now). A second "
                 "signal always hands back at once")
      ->capture_default_str()
      ->check(CLI::IsMember({"finish", "handback"}));
  app.add_option("--drain-timeout", f.drain_timeout_s,
                 "With --on-stop finish: seconds to wait for running tasks before handing them "
                 "back (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--bars-per-slot", o.bars_per_slot,
                 "Progress bars a task can show at once (shared memory per slot: 128 bytes each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--progress-floor-ms", f.progress_floor_ms,
                 "Progress batches leave at most this often, even on a fast link")
      ->capture_default_str()
      ->check(CLI::Range(1, 60'000));
  app.add_option("--progress-ceiling-ms", f.progress_ceiling_ms,
                 "Progress batches leave at least this often; an unanswered batch is sent again "
                 "after this long")
      ->capture_default_str()
      ->check(CLI::Range(1, 600'000));
  add_log_level(app, f.log_level);
}

int finish_worker(WorkerFlags& f, const char* component) {
  if (auto s = log::init(component, f.log_level); !s) {
    std::fprintf(stderr, "lrts worker: %s\n", s.error().c_str());
    return 2;
  }
  f.options.timeout = static_cast<int>(f.timeout);
  f.options.max_job_memory = static_cast<uint64_t>(f.max_job_memory_mb * 1024 * 1024);
  f.options.finish_on_stop = f.on_stop == "finish";
  f.options.drain_timeout = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double>(f.drain_timeout_s));
  f.options.progress_floor = milliseconds(f.progress_floor_ms);
  f.options.progress_ceiling = milliseconds(std::max(f.progress_ceiling_ms, f.progress_floor_ms));
  f.options.max_message_bytes = static_cast<size_t>(f.max_message_mb * 1024 * 1024);
  // Unresolvable names are a usage error, reported before anything starts.
  if (auto ep = connect_endpoint(f.options.scheduler_address, f.options.scheduler_port); !ep) {
    std::fprintf(stderr, "lrts worker: --scheduler-address: %s\n", ep.error().c_str());
    return 2;
  }
  if (auto ep = connect_endpoint(f.options.progress_address, f.options.progress_port); !ep) {
    std::fprintf(stderr, "lrts worker: --progress-address: %s\n", ep.error().c_str());
    return 2;
  }
  return worker::run_worker(f.options);
}

// Parses; on error prints one line and returns the exit code through *code.
bool parse(CLI::App& app, std::vector<std::string> args, const std::string& prog, int* code) {
  std::reverse(args.begin(), args.end());  // CLI11 takes them reversed
  try {
    app.parse(args);
    return true;
  } catch (const CLI::CallForHelp& e) {
    *code = app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    *code = app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    *code = app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    for (char& c : what) {
      if (c == '\n') c = ' ';
    }
    const auto* sub = app.get_subcommands().empty() ? nullptr : app.get_subcommands().front();
    std::fprintf(stderr, "%s%s%s: %s (see --help)\n", prog.c_str(), sub ? " " : "",
                 sub ? sub->get_name().c_str() : "", what.c_str());
    *code = 2;
  }
  return false;
}

}  // namespace

std::vector<std::string> normalize_flags(int argc, char** argv) {
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.size() > 2 && a[0] == '-' && a[1] != '-' && std::isalpha(static_cast<unsigned char>(a[1])) &&
        std::isalpha(static_cast<unsigned char>(a[2]))) {
      a.insert(0, "-");
    }
    out.push_back(std::move(a));
  }
  return out;
}

int main(int argc, char** argv) {
  if (worker::is_slot_invocation(argc, argv)) return worker::slot_main(argc, argv);

  CLI::App app{"lrts — Long Running Task Service: run long tasks on a cluster and watch them."};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  // A flag given twice takes the last value (scripts often append overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  // scheduler
  auto* sched = app.add_subcommand("scheduler", "Run the scheduler: queues tasks, assigns them "
                                                "to workers, returns results to applications");
  scheduler::ServerOptions so;
  std::string sched_log = "info";
  double sched_timeout = 1, heartbeat_s = 1, worker_timeout_s = 10, app_timeout_s = 10,
         app_grace_s = 600, sched_max_mb = 64;
  sched->add_option("--address", so.address,
                    "Address to listen on (IP, host name, or * for every interface)")
      ->capture_default_str();
  sched->add_option("--port", so.port, "TCP port to listen on")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  sched->add_option("--timeout", sched_timeout, kTimeoutHelp)
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  sched->add_option("--heartbeat-interval", heartbeat_s,
                    "Seconds between heartbeats that workers and applications send")
      ->capture_default_str()
      ->check(CLI::Range(0.01, 3600.0));
  sched->add_option("--worker-timeout", worker_timeout_s,
                    "Seconds without a heartbeat after which a worker is declared lost and its "
                    "tasks are requeued (a task's own process never has to heartbeat)")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 86400.0));
  sched->add_option("--app-timeout", app_timeout_s,
                    "Seconds without a heartbeat after which an application counts as "
                    "disconnected")
      ->capture_default_str()
      ->check(CLI::Range(0.05, 86400.0));
  sched->add_option("--app-grace", app_grace_s,
                    "Seconds a disconnected application's tasks keep running and its results "
                    "wait for it to come back (same application id) before they are dropped")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 30.0 * 86400));
  sched->add_option("--state-dir", so.state_dir,
                    "Directory for the journal (SQLite): a scheduler restarted with the same "
                    "directory loses no task or result. Without it, state is in memory only")
      ;
  std::string journal_sync = "normal";
  sched->add_option("--journal-sync", journal_sync,
                    "normal: commits survive the scheduler being killed; full: also a machine "
                    "crash or power loss (an fsync per commit)")
      ->capture_default_str()
      ->check(CLI::IsMember({"normal", "full"}));
  double unoffered_wait_s = 5;
  sched->add_option("--unknown-service-wait", unoffered_wait_s,
                    "Seconds tasks of a service that no connected worker offers wait before they "
                    "go to any worker, which fails them naming the services it has (while no "
                    "worker is connected at all, tasks wait)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  double reclaim_s = -1;
  sched->add_option("--reclaim-grace", reclaim_s,
                    "After a restart, seconds to wait for workers to claim the tasks they were "
                    "running before those go back to the queue (default: --worker-timeout)");
  sched->add_option("--max-message-mb", sched_max_mb,
                    "Largest message accepted, in MiB; larger ones are dropped and logged")
      ->capture_default_str()
      ->check(CLI::Range(0.001, 4095.0));
  add_log_level(*sched, sched_log);

  // worker
  auto* work = app.add_subcommand("worker", "Run a worker: runs tasks in -max-jobs slot "
                                            "processes");
  WorkerFlags wf;
  add_worker_options(*work, wf);

  // progress-server
  auto* pserver = app.add_subcommand(
      "progress-server", "Run the progress server: collects task progress from workers and shows "
                         "it to applications (optional)");
  progress::ProgressServerOptions pso;
  std::string pserver_log = "info";
  double pserver_timeout = 1, keep_closed_s = 300;
  pserver->add_option("--address", pso.address, "Address to listen on (IP, host name, or *)")
      ->capture_default_str();
  pserver->add_option("--port", pso.port, "TCP port to listen on")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  pserver->add_option("--timeout", pserver_timeout, kTimeoutHelp)
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  pserver->add_option("--keep-closed", keep_closed_s,
                      "Seconds a finished bar is kept for late viewers before it is forgotten")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 7.0 * 86400));
  pserver->add_option("--max-bars", pso.store.max_bars,
                      "Bars held at most (oldest finished ones are forgotten first)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000'000));
  add_log_level(*pserver, pserver_log);

  // progress (viewer)
  auto* viewer = app.add_subcommand(
      "progress", "Show the live progress of every application's tasks, or of one application's");
  progress::ViewerOptions vo;
  double view_seconds = 0;
  viewer->add_option("--address", vo.address, "Address of the progress server")
      ->capture_default_str();
  viewer->add_option("--port", vo.port, "TCP port of the progress server")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  viewer->add_option("--application-id", vo.application_id,
                     "Show only this application's tasks (default: every application)");
  viewer->add_option("--seconds", view_seconds, "Stop after this many seconds (0: until Ctrl-C)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);

  // submit
  auto* submit = app.add_subcommand(
      "submit", "Submit tasks of a registered service; print their ids (and results with --wait)");
  SubmitOptions sub;
  submit->add_option("service", sub.service_name, "Registered name of the service")->required();
  submit->add_option("--fields", sub.fields_json,
                     "The service's fields as a JSON object, e.g. '{\"a\":6,\"b\":9}'")
      ->capture_default_str();
  submit->add_option("--count", sub.count, "How many instances to submit")
      ->capture_default_str()
      ->check(CLI::Range(1, 100'000'000));
  submit->add_flag("--wait", sub.wait,
                   "Wait and print one JSON line per result as each completes; exit status 1 if "
                   "any task did not finish");
  submit->add_option("--scheduler-address", sub.scheduler_address, "Address of the scheduler")
      ->capture_default_str();
  submit->add_option("--scheduler-port", sub.scheduler_port, "TCP port of the scheduler")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  submit->add_option("--max-retries", sub.max_retries,
                     "Further attempts when an attempt is lost (worker or slot died)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1000));
  submit->add_option("--task-timeout", sub.task_timeout_s,
                     "Seconds a task may run before it ends as timed_out (0: no limit)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--wait-timeout", sub.wait_timeout_s,
                     "With --wait: give up after this many seconds (0: wait forever)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  submit->add_option("--application-id", sub.application_id,
                     "Application id to submit under (default: a fresh one)");

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    for (const auto* sub : app.get_subcommands({})) known |= sub->get_name() == argv[1];
    if (!known) {
      std::fprintf(stderr, "lrts: unknown command '%s' (use scheduler, worker, submit, "
                   "progress-server or progress; see --help)\n", argv[1]);
      return 2;
    }
  }
  int code = 0;
  if (!parse(app, normalize_flags(argc, argv), "lrts", &code)) return code;

  if (sched->parsed()) {
    if (auto s = log::init("scheduler", sched_log); !s) {
      std::fprintf(stderr, "lrts scheduler: %s\n", s.error().c_str());
      return 2;
    }
    so.core.heartbeat_interval = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(heartbeat_s));
    so.core.worker_timeout = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(worker_timeout_s));
    so.core.app_timeout = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(app_timeout_s));
    so.core.app_grace = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(app_grace_s));
    so.max_message_bytes = static_cast<size_t>(sched_max_mb * 1024 * 1024);
    so.journal_sync_full = journal_sync == "full";
    so.core.unoffered_service_wait = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(unoffered_wait_s));
    so.core.reclaim_grace = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(reclaim_s >= 0 ? reclaim_s : worker_timeout_s));
    auto server = scheduler::SchedulerServer::create(so);
    if (!server) {
      std::fprintf(stderr, "lrts scheduler: %s\n", server.error().c_str());
      return 2;
    }
    return (*server)->run();
  }
  if (work->parsed()) return finish_worker(wf, "worker");
  if (pserver->parsed()) {
    if (auto s = log::init("progress-server", pserver_log); !s) {
      std::fprintf(stderr, "lrts progress-server: %s\n", s.error().c_str());
      return 2;
    }
    pso.store.keep_closed = std::chrono::duration_cast<Duration>(
        std::chrono::duration<double>(keep_closed_s));
    auto server = progress::ProgressServer::create(pso);
    if (!server) {
      std::fprintf(stderr, "lrts progress-server: %s\n", server.error().c_str());
      return 2;
    }
    return (*server)->run();
  }
  if (viewer->parsed()) {
    vo.run_for = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(view_seconds));
    return progress::run_viewer(vo);
  }
  if (submit->parsed()) return run_submit(sub);
  return 2;
}

}  // namespace lrts::cli

namespace lrts {

int worker_main(int argc, char** argv) {
  if (worker::is_slot_invocation(argc, argv)) return worker::slot_main(argc, argv);
  CLI::App app{"lrts worker with built-in services"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cli::WorkerFlags wf;
  cli::add_worker_options(app, wf);
  int code = 0;
  const std::string prog = argc > 0 ? argv[0] : "worker";
  if (!cli::parse(app, cli::normalize_flags(argc, argv), prog, &code)) return code;
  return cli::finish_worker(wf, "worker");
}

}  // namespace lrts
