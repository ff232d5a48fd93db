// The slot process: runs tasks that its worker sends over a socketpair, one after another.
//
// A slot is the worker's own executable started again with
// `--lrts-slot FD [--progress-fd FD] [--service-lib P]...`.
// It loads the service libraries, says hello with the services it knows, then loops: read a
// batch of tasks, run each, send results back in batches (a result leaves at once when the slot
// would otherwise wait, or when it has held results for a millisecond). It exits when the worker
// closes the socket, and dies with the worker (PR_SET_PDEATHSIG).
#pragma once

#include <string>
#include <vector>

namespace lrts::worker {

inline constexpr const char* kSlotFlag = "--lrts-slot";
inline constexpr const char* kProgressFdFlag = "--progress-fd";

// True if argv asks for slot mode.
bool is_slot_invocation(int argc, char** argv);
// Runs a slot until its worker goes away. Returns the process exit code.
int slot_main(int argc, char** argv);

}  // namespace lrts::worker
