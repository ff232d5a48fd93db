// Services for benchmarks: a no-op, a spin that holds the CPU for a given time, a sleep,
// payloads of a given size each way, and two that drive progress bars. Declared once here for
// the benchmark applications (which schedule them) and bench_services.cc (which registers them
// in the service library the benchmark workers load).
#pragma once

#include <chrono>
#include <lrts/lrts.hpp>
#include <string>
#include <thread>

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

// Sleeps for `ms`: a long task that holds a slot but no CPU.
class Sleep : public lrts::Service {
 public:
  int64_t ms = 0;
  std::string service_name() const override { return "bench.sleep"; }
  int64_t run() {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    return ms;
  }
  LRTS_FIELDS(ms);
};

// Takes `data` in and gives `result_bytes` bytes back: payloads of any size, each way.
class Bytes : public lrts::Service {
 public:
  std::string data;
  int64_t result_bytes = 0;
  std::string service_name() const override { return "bench.bytes"; }
  std::string run() {
    std::string out(static_cast<size_t>(result_bytes), 'r');
    if (!out.empty()) out.front() = static_cast<char>(data.size() & 0x7f);
    return out;
  }
  LRTS_FIELDS(data, result_bytes);
};

// Publishes the monotonic clock (microseconds) as its bar's count, continuously, for `ms`:
// whoever sees the bar can tell how old the value is (advance -> application latency).
class Clock : public lrts::Service {
 public:
  int64_t ms = 1000;
  std::string service_name() const override { return "bench.clock"; }
  int64_t run(lrts::TaskContext& ctx) {
    lrts::ProgressBar bar = ctx.create_progress("clock", 0, "us");
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    int64_t n = 0;
    for (auto now = std::chrono::steady_clock::now(); now < end;
         now = std::chrono::steady_clock::now(), ++n) {
      bar.set_count(static_cast<uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count()));
    }
    return n;
  }
  LRTS_FIELDS(ms);
};

// Advances its bar in a tight loop for `ms`.
class SpinProgress : public lrts::Service {
 public:
  int64_t ms = 1000;
  std::string service_name() const override { return "bench.spin_progress"; }
  int64_t run(lrts::TaskContext& ctx) {
    lrts::ProgressBar bar = ctx.create_progress("spin", 0, "it");
    const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (std::chrono::steady_clock::now() < end) {
      for (int i = 0; i < 10'000; ++i) bar.advance();
    }
    return static_cast<int64_t>(bar.count());
  }
  LRTS_FIELDS(ms);
};

}  // namespace bench_services
