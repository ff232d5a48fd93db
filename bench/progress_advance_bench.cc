// Cost of advancing a progress bar inside a task (Google Benchmark).
#include <benchmark/benchmark.h>

#include <thread>

#include "shm/region.hpp"

namespace {

using lrts::ProgressBar;
using lrts::shm::BarAllocator;
using lrts::shm::ProgressRegion;

struct Fixture {
  ProgressRegion region = std::move(*ProgressRegion::create(4));
  BarAllocator alloc{&region};
  ProgressBar bar;
  Fixture() {
    alloc.begin_task({1, 1}, 1);
    bar = alloc.create("bench", 0, "it");
  }
};

// The hot path: a bar in the slot's shared memory, advanced by one thread.
void BM_Advance(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) f.bar.advance();
  benchmark::DoNotOptimize(f.bar.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Advance);

// From several threads at once: an atomic add.
void BM_AdvanceShared(benchmark::State& state) {
  Fixture f;
  for (auto _ : state) f.bar.advance_shared();
  benchmark::DoNotOptimize(f.bar.count());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AdvanceShared);

// The same work on a plain local counter, for scale.
void BM_PlainIncrement(benchmark::State& state) {
  uint64_t n = 0;
  for (auto _ : state) {
    ++n;
    benchmark::DoNotOptimize(n);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PlainIncrement);

// Advancing while the worker's sampler reads the region from another thread every 20 ms.
void BM_AdvanceWhileSampled(benchmark::State& state) {
  Fixture f;
  std::atomic<bool> stop{false};
  std::thread sampler([&] {
    lrts::shm::Sampler s(&f.region);
    std::vector<lrts::protocol::BarState> out;
    while (!stop.load()) {
      s.scan(lrts::shm::monotonic_ns(), out);
      out.clear();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  for (auto _ : state) f.bar.advance();
  stop = true;
  sampler.join();
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AdvanceWhileSampled);

}  // namespace

BENCHMARK_MAIN();
