// Services for benchmarks: a no-op, and a spin that holds the CPU for a given time.
#include <lrts/lrts.hpp>

#include <chrono>

namespace bench_services {

class Noop : public lrts::Service {
 public:
  std::string service_name() const override { return "bench.noop"; }
  void run() {}
  LRTS_NO_FIELDS();
};

class Spin : public lrts::Service {
 public:
  int64_t ms = 0;
  std::string service_name() const override { return "bench.spin"; }
  int64_t run() {
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    int64_t n = 0;
    while (std::chrono::steady_clock::now() < end) ++n;
    return n;
  }
  LRTS_FIELDS(ms);
};

}  // namespace bench_services

LRTS_REGISTER_SERVICE(bench_services::Noop);
LRTS_REGISTER_SERVICE(bench_services::Spin);
