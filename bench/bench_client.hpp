// What the benchmark applications share: the `bench.noop` service and a stopwatch.
#pragma once

#include <chrono>
#include <lrts/lrts.hpp>
#include <string>

#include "bench_services.hpp"

namespace lrts::bench {

using Noop = bench_services::Noop;

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace lrts::bench
