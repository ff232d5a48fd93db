// The `lrts` command line: subcommands scheduler, worker, submit. Thin: each parses its flags
// and calls into the components.
#pragma once

#include <string>
#include <vector>

namespace lrts::cli {

// The whole `lrts` program (main forwards here).
int main(int argc, char** argv);

// The original lrts used single-dash long flags (-scheduler-port 5555). Rewrites them to the GNU
// form (--scheduler-port 5555) so both spellings work; negative numbers and short flags are left
// alone.
std::vector<std::string> normalize_flags(int argc, char** argv);

struct SubmitOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string service_name;
  std::string fields_json = "{}";
  int count = 1;
  bool wait = false;
  unsigned max_retries = 3;
  double task_timeout_s = 0;
  double wait_timeout_s = 0;
  std::string application_id;
};

int run_submit(const SubmitOptions& options);

}  // namespace lrts::cli
