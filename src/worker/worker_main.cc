#include "lrts/worker_main.hpp"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/cpu.hpp"
#include "common/log.hpp"
#include "flags/flags.hpp"
#include "net/endpoint.hpp"
#include "worker/slot_runtime.hpp"
#include "worker/worker_flags.hpp"

namespace lrts::worker {

void add_worker_flags(CLI::App& app, WorkerFlags& f) {
  auto& o = f.options;
  app.add_option("--scheduler-address", o.scheduler_address,
                 "Address (IP or host name) of the scheduler, or a list a,b:5556,[::1]:5557 of "
                 "schedulers and relays to fail over between: when the link to one is down for "
                 "2 s (or silent for 30 s) the worker says hello at the next, keeping its tasks")
      ->capture_default_str()
      ->check(flags::non_empty());
  app.add_option("--scheduler-port", o.scheduler_port, "TCP port of the scheduler")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--progress-address", o.progress_address,
                 "Address of the progress server (optional; tasks never wait for it)")
      ->capture_default_str()
      ->check(flags::non_empty());
  app.add_option("--progress-port", o.progress_port, "TCP port of the progress server")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  app.add_option("--max-jobs", o.max_jobs,
                 "Tasks run at once (one slot process each): N>0, or -1 physical cores, -2 "
                 "logical cores, -3 physical cores - 1, -4 logical cores - 1 (at least 1)")
      ->capture_default_str()
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            try {
              size_t used = 0;
              const int n = std::stoi(v, &used);
              if (used != v.size()) throw std::invalid_argument(v);
              if (n >= -4 && n <= -1) return {};
              if (n > 0 && n <= max_slots()) return {};
              if (n > 0) {
                return "-max-jobs " + v + " is more slots than this machine can run (at most " +
                       std::to_string(max_slots()) + " here)";
              }
            } catch (...) {
            }
            return "-max-jobs must be a positive number of slots, or -1 (physical cores), -2 "
                   "(logical cores), -3 (physical cores - 1), -4 (logical cores - 1); got " +
                   v;
          },
          "N>0|-1|-2|-3|-4"));
  app.add_option("--timeout", f.timeout, flags::kTimeoutHelp)
      ->capture_default_str()
      ->check(flags::number(0, 86400));
  app.add_option("--service-lib", o.service_libs,
                 "Shared library of services to load into every slot (repeatable)")
      ->check(CLI::ExistingFile);
  app.add_option("--name", o.name, "Worker name shown in logs and results (default host:pid)")
      ->check(CLI::Validator(
          [](std::string& v) -> std::string {
            return v.size() > protocol::kMaxNameBytes ? "a worker name has at most 256 bytes" : "";
          },
          "TEXT"));
  app.add_option("--auth", o.auth_dir,
                 "Directory of cluster keys made by `lrts keygen DIR` (or a member's, from --add "
                 "NAME --role worker): the worker connects with worker.key and trusts only "
                 "scheduler.pub (ZeroMQ CURVE, to the scheduler and the progress server; "
                 "default: $LRTS_AUTH_DIR)")
      ->envname("LRTS_AUTH_DIR")
      ->check(CLI::ExistingDirectory);
  app.add_option("--max-message-mb", f.max_message_mb,
                 "Largest message accepted from the scheduler, in MiB (payloads larger than a "
                 "message travel in chunks)")
      ->capture_default_str()
      ->check(flags::number(1, 4095));
  app.add_option("--max-result-mb", f.max_result_mb,
                 "Largest result a task may return, in MiB; a larger one fails the task (once, "
                 "not retried) with its size and this limit")
      ->capture_default_str()
      ->check(flags::number(0.001, 4000));
  app.add_option("--max-job-memory-mb", f.max_job_memory_mb,
                 "Resident memory a slot may use while running a task; past it the slot is "
                 "stopped and the attempt is lost (retried up to the task's max_retries). 0: no "
                 "limit")
      ->capture_default_str()
      ->check(flags::number(0, 1 << 30));
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
      ->check(flags::number(0, 365.0 * 86400));
  app.add_option("--idle-timeout", f.idle_timeout_s,
                 "Seconds holding no task after which the worker leaves as if drained (it says "
                 "goodbye and exits 0); what autoscaled workers use to end when the queue is "
                 "empty. 0: never")
      ->capture_default_str()
      ->check(flags::number(0, 365.0 * 86400));
  app.add_option("--bars-per-slot", o.bars_per_slot,
                 "Progress bars a task can show at once (shared memory per slot: 128 bytes each)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1 << 20));
  app.add_option("--progress-floor-ms", f.progress_floor_ms,
                 "Progress batches leave at most this often, even on a fast link")
      ->capture_default_str()
      ->check(CLI::Range(1, 60'000));
  app.add_option("--progress-ceiling-ms", f.progress_ceiling_ms,
                 "A progress batch not answered within this long is sent again (while bars are "
                 "open, batches leave at least every 2 s; when nothing changes, they are empty)")
      ->capture_default_str()
      ->check(CLI::Range(1, 600'000));
  flags::add_log_level(app, f.log_level);
  flags::add_log_format(app, f.log_format);
  flags::add_metrics_port(app, o.metrics_port, o.metrics_address);
  f.allow_commands_option =
      app.add_option(
             "--allow-commands", o.allow_commands,
             "Run programs as tasks (lrts submit -- PROGRAM ARGS): with no value any program, "
             "or only these absolute paths (comma-separated or repeated). A program is code "
             "sent by an application: allow it only where applications are trusted")
          ->expected(0, -1)
          ->delimiter(',')
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--python", o.python,
                 "Python interpreter that runs Python services (each slot starts one Python slot "
                 "process with it on its first Python task; it must be able to import the lrts "
                 "package). 'none': no Python services here")
      ->capture_default_str();
  app.add_option("--command-output", o.command_output,
                 "Directory for the full stdout and stderr of program tasks, one "
                 "SERVICE_ID.ATTEMPT.out/.err pair each (default: $TMPDIR/lrts-commands)");
  app.add_option("--command-output-mb", o.command_output_mb,
                 "Most MiB of stdout and of stderr kept per program task (the rest is cut)")
      ->capture_default_str()
      ->check(flags::number(0, 1 << 20));
}

int run_worker_command(WorkerFlags& f, const char* component) {
  if (auto s = log::init(component, f.log_level, f.log_format); !s) {
    std::fprintf(stderr, "lrts worker: %s\n", s.error().c_str());
    return 2;
  }
  if (f.progress_ceiling_ms < f.progress_floor_ms) {
    std::fprintf(stderr,
                 "lrts worker: --progress-ceiling-ms (%d) must not be below --progress-floor-ms "
                 "(%d)\n",
                 f.progress_ceiling_ms, f.progress_floor_ms);
    return 2;
  }
  f.options.timeout = static_cast<int>(f.timeout);
  f.options.max_job_memory = static_cast<uint64_t>(f.max_job_memory_mb * 1024 * 1024);
  f.options.finish_on_stop = f.on_stop == "finish";
  f.options.drain_timeout = flags::seconds(f.drain_timeout_s);
  f.options.idle_timeout = flags::seconds(f.idle_timeout_s);
  f.options.progress_floor = milliseconds(f.progress_floor_ms);
  f.options.progress_ceiling = milliseconds(f.progress_ceiling_ms);
  f.options.max_message_bytes = static_cast<size_t>(f.max_message_mb * 1024 * 1024);
  f.options.max_result_bytes = static_cast<uint64_t>(f.max_result_mb * 1024 * 1024);
  // Unresolvable names are a usage error, reported before anything starts.
  if (auto ep = net::connect_endpoints(f.options.scheduler_address, f.options.scheduler_port);
      !ep) {
    std::fprintf(stderr, "lrts worker: --scheduler-address: %s\n", ep.error().c_str());
    return 2;
  }
  if (auto ep = net::connect_endpoint(f.options.progress_address, f.options.progress_port); !ep) {
    std::fprintf(stderr, "lrts worker: --progress-address: %s\n", ep.error().c_str());
    return 2;
  }
  f.options.allow_commands_given = f.allow_commands_option && f.allow_commands_option->count() > 0;
  std::erase(f.options.allow_commands, std::string());
  for (auto& p : f.options.allow_commands) {
    if (p.empty() || p[0] != '/') {
      std::fprintf(stderr, "lrts worker: --allow-commands takes absolute paths; got '%s'\n",
                   p.c_str());
      return 2;
    }
    // Resolved now: a symlink in the list pointed elsewhere later allows nothing new.
    char* real = ::realpath(p.c_str(), nullptr);
    if (!real) {
      std::fprintf(stderr, "lrts worker: --allow-commands: %s: %s\n", p.c_str(),
                   std::strerror(errno));
      return 2;
    }
    p = real;
    std::free(real);
  }
  return run_worker(f.options);
}

}  // namespace lrts::worker

namespace lrts {

int worker_main(int argc, char** argv) {
  if (worker::is_slot_invocation(argc, argv)) return worker::slot_main(argc, argv);
  CLI::App app{"lrts worker with built-in services"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  worker::WorkerFlags wf;
  worker::add_worker_flags(app, wf);
  int code = 0;
  const std::string prog = argc > 0 ? argv[0] : "worker";
  if (!flags::parse(app, flags::normalize(argc, argv), prog, &code)) return code;
  return worker::run_worker_command(wf, "worker");
}

}  // namespace lrts
