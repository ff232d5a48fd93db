// The worker daemon: one process that talks to the scheduler, heartbeats, and supervises a pool
// of slot processes that run the tasks. Its event loop is single-threaded.
#pragma once

#include <string>
#include <vector>

#include "common/clock.hpp"
#include "protocol/messages.hpp"

namespace lrts::worker {

struct WorkerOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string progress_address = "127.0.0.1";
  int progress_port = 5454;
  int max_jobs = -1;          // resolved with resolve_max_jobs
  int max_jobs_resolved = 0;  // set by run_worker
  int timeout = 1;            // accepted for compatibility with the original lrts
  std::vector<std::string> service_libs;
  std::string name;  // default: host:pid
  // Program that runs slots (it must handle --lrts-slot); default: this executable.
  std::string executable;
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
  // A result larger than this fails its task (once, not retried) with its size and the limit.
  uint64_t max_result_bytes = uint64_t{1024} << 20;
  Duration slot_start_timeout = seconds(30);
  uint32_t bars_per_slot = 256;
  uint64_t max_job_memory = 0;  // bytes of resident memory per slot; 0: no limit
  // On the first SIGTERM/SIGINT: finish the running tasks (taking no new ones) or hand them
  // back at once. A second signal always hands back at once.
  bool finish_on_stop = true;
  Duration drain_timeout{0};  // 0: no limit
  Duration idle_timeout{0};   // --idle-timeout: holding no task this long, leave (0: never)
  Duration progress_floor = milliseconds(20);  // fastest progress batch cadence
  Duration progress_ceiling = seconds(1);      // slowest; also the wait for a lost batch
  std::string auth_dir;  // --auth: the worker's key (worker.key) and scheduler.pub
  int metrics_port = 0;  // /metrics (0: off)
  std::string metrics_address = "127.0.0.1";
  // --allow-commands: program tasks (service lrts.command) run here. Empty list with the flag:
  // any program; otherwise only these paths.
  bool allow_commands_given = false;
  std::vector<std::string> allow_commands;
  std::string command_output;  // default $TMPDIR/lrts-commands
  // Interpreter for Python services (service lrts.python, run in Python slot processes);
  // "none": this worker runs none.
  std::string python = "/usr/bin/python3";
  double command_output_mb = 64;
};

// Runs a worker until SIGINT/SIGTERM. Returns the process exit code.
int run_worker(const WorkerOptions& options);

}  // namespace lrts::worker
