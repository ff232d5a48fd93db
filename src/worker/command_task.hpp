// CommandTask: the built-in service "lrts.command", which runs any program as a task (what
// `lrts submit -- PROGRAM ARGS...` schedules). It runs in a slot like any service: the program
// is a child of the slot, in the slot's process group, so whatever stops the slot (cancel,
// timeout, memory limit) stops the program and everything it started.
//
// Policy, from the slot's environment (the worker daemon sets it from its flags):
//   LRTS_ALLOW_COMMANDS     unset or empty: no program runs. "*": any program. Otherwise a
//                           ':'-separated list of absolute paths; a program runs only if its
//                           realpath is the realpath of one of them.
//   LRTS_COMMAND_OUTPUT     directory for the full output (default ${TMPDIR:-/tmp}/lrts-commands,
//                           created with mode 0700): DIR/<service id>.<attempt>.out and .err
//   LRTS_COMMAND_OUTPUT_MB  cap of each of those files in MiB (default 64); past it the file
//                           ends with "[lrts: output truncated at N MB]"
//
// The program's environment is the slot's, without the variables above, plus LRTS_SERVICE_ID,
// LRTS_TASK_INDEX (0..N-1 of `lrts submit --count N`), LRTS_ATTEMPT and LRTS_PROGRESS_FD=3.
// Its stdin is /dev/null. Exit status 0 makes the task finish with a CommandResult; any other
// status, or death by a signal, makes it fail with the status and the end of its stderr.
//
// PROGRESS LINE PROTOCOL
// A program reports progress by writing lines to file descriptor 3 ($LRTS_PROGRESS_FD), a pipe.
// One command per line, fields separated by single spaces. A line holds at most 1024 bytes
// before its newline; a longer one is ignored up to its newline. A trailing carriage return is
// dropped, and a last line without a newline still counts when the program ends.
//
//   bar ID TOTAL UNIT DESCRIPTION...   starts bar ID: TOTAL an integer (0 = unknown), UNIT a
//                                      word (cut to 15 bytes), DESCRIPTION the rest of the line
//                                      (cut to 47 bytes; if empty, the ID is shown)
//   add ID N                           advances bar ID by N
//   set ID COUNT                       sets bar ID's count
//   total ID TOTAL                     sets bar ID's total (0 = unknown)
//   done ID                            closes bar ID
//   N                                  advances the task's default bar by N, so that
//                                      `echo 1 >&$LRTS_PROGRESS_FD` works with no set-up
//
// ID is 1 to 32 of [A-Za-z0-9_.-]; integers are decimal, 0 to 2^64-1. An ID names one open bar.
// `add`, `set` or `total` with an ID that has no open bar (before its `bar`, or after its
// `done`) starts one with total 0, unit "it" and the ID as description; `bar` with an ID that
// is open closes that bar and starts a new one; `done` with an ID that has none does nothing.
// A task starts at most 256 bars; lines that would start more are ignored. Other lines are
// ignored too; the first of them is noted in the .err file as
// "[lrts: ignored progress line: ...]". Empty lines are ignored silently.
//
// Not thread-safe: run() is called on the slot's task thread, like any service's.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lrts/service.hpp"

namespace lrts::worker {

inline constexpr char kCommandServiceName[] = "lrts.command";

// What a task that ran a program returns when the program exits with status 0.
struct CommandResult {
  int exit_code = 0;
  std::string stdout_tail;  // the last 4096 bytes of stdout
  std::string stderr_tail;  // the last 4096 bytes of stderr
  std::string output;       // the full output is in `output`.out and `output`.err
  LRTS_FIELDS(exit_code, stdout_tail, stderr_tail, output);
};

class CommandTask : public Service {
 public:
  std::vector<std::string> argv;  // the program (a path, or a name looked up in PATH) and its args
  uint64_t index = 0;             // this task's index among those one `lrts submit` made
  std::string cwd;                // working directory; empty: the slot's

  std::string service_name() const override { return kCommandServiceName; }
  // Runs the program to its end. Throws std::runtime_error (the task fails with its message)
  // if the policy refuses it, it cannot start, or it does not exit with status 0.
  CommandResult run(TaskContext& ctx);

  LRTS_FIELDS(argv, index, cwd);
};

}  // namespace lrts::worker
