// What the benchmark applications share: the client side of the `bench.noop` service (its
// worker side is in bench_services.cc) and a stopwatch.
#pragma once

#include <chrono>
#include <lrts/lrts.hpp>
#include <string>

namespace lrts::bench {

class Noop : public lrts::Service {
 public:
  std::string service_name() const override { return "bench.noop"; }
  void run() {}
  LRTS_NO_FIELDS();
};

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace lrts::bench
