// CPU topology, for resolving `-max-jobs`.
#pragma once

namespace lrts {

int logical_cores();
int physical_cores();

// -max-jobs semantics of the original lrts: N > 0 is N slots; -1 physical cores, -2 logical
// cores, -3 physical cores - 1, -4 logical cores - 1; never below 1. Other values are invalid
// and return 0.
int resolve_max_jobs(int requested);

// The most slots one worker on this machine may run: 16 per logical core (at least 256),
// bounded by the processes and descriptors this process may have.
int max_slots();

}  // namespace lrts
