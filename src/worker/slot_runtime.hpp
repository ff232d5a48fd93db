// The slot process: runs tasks that its worker sends over a socketpair, one after another.
//
// A slot is the worker's own executable started again with
// `--lrts-slot FD [--progress-fd FD] [--max-result-bytes N] [--service-lib P]...`.
// It loads the service libraries, says hello with the services it knows, then runs the tasks it
// receives one after another, sending results back in batches (at once when it has nothing else
// to do, and never later than a millisecond after a result is ready). Tasks it has not started
// can be recalled. Whatever a task starts is killed when the task ends. It exits when the
// worker closes the socket, and dies with the worker (PR_SET_PDEATHSIG).
#pragma once

#include <string>
#include <vector>

namespace lrts::worker {

inline constexpr const char* kSlotFlag = "--lrts-slot";
inline constexpr const char* kProgressFdFlag = "--progress-fd";
inline constexpr const char* kMaxResultFlag = "--max-result-bytes";

// True if argv asks for slot mode.
bool is_slot_invocation(int argc, char** argv);
// Runs a slot until its worker goes away. Returns the process exit code.
int slot_main(int argc, char** argv);

}  // namespace lrts::worker
