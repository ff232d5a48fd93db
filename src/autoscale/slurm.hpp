// Slurm as `lrts autoscale` uses it: sbatch to submit a worker job, squeue to list ours, scancel
// to cancel a pending one. Each call runs the real command (found on PATH, or where
// SlurmOptions says) with a time limit, and fails with its first line of error output.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace lrts::autoscale {

// What a command printed and how it ended.
struct CommandOutput {
  int exit_code = -1;  // -1: it did not exit normally (killed, or past its time)
  std::string out;
  std::string err;
  std::string error_line() const;  // the first non-empty line of err (or out), for logs
};

// Runs argv[0] (looked up on PATH) with no stdin, collecting stdout and stderr; kills it past
// `timeout`, or as soon as `interrupt_fd` (if not -1) is readable (a signal came: the caller
// reads it). An error only when it could not be started.
Result<CommandOutput> run_command(const std::vector<std::string>& argv,
                                  std::chrono::milliseconds timeout, int interrupt_fd = -1);

// Quotes a word for /bin/sh.
std::string shell_quote(const std::string& word);

struct SlurmJob {
  std::string id;
  std::string state;  // PENDING, RUNNING, COMPLETING, ...
};

struct SlurmOptions {
  std::string sbatch = "sbatch";
  std::string squeue = "squeue";
  std::string scancel = "scancel";
  std::chrono::milliseconds timeout{30'000};  // for each command
  int interrupt_fd = -1;                      // see run_command
};

class Slurm {
 public:
  explicit Slurm(SlurmOptions options) : options_(std::move(options)) {}
  // sbatch --parsable ARGS: the new job's id.
  Result<std::string> submit(const std::vector<std::string>& args) const;
  // Our jobs named `name` that have not ended.
  Result<std::vector<SlurmJob>> jobs(const std::string& name) const;
  Result<void> cancel(const std::string& id) const;

 private:
  SlurmOptions options_;
};

}  // namespace lrts::autoscale
