// The flags of `lrts worker` (and of an executable that calls lrts::worker_main), in one place.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "worker/worker.hpp"

namespace lrts::worker {

struct WorkerFlags {
  WorkerOptions options;
  std::string log_level = "info";
  std::string log_format = "text";
  CLI::Option* allow_commands_option = nullptr;  // to tell "--allow-commands" from absent
  double timeout = 1;
  double max_message_mb = 64;
  double max_result_mb = 1024;
  int progress_floor_ms = 20;
  int progress_ceiling_ms = 1000;
  double max_job_memory_mb = 0;
  std::string on_stop = "finish";
  double drain_timeout_s = 0;
  double idle_timeout_s = 0;
};

void add_worker_flags(CLI::App& app, WorkerFlags& flags);
// Checks what the flags say together, then runs the worker. Returns the exit code.
int run_worker_command(WorkerFlags& flags, const char* component);

}  // namespace lrts::worker
