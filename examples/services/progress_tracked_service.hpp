// ProgressTrackedService: the original lrts's progress example. A random number of iterations,
// each a short sleep, tracked by two bars: a short "Loading" phase, then "Doing Work".
#pragma once

#include <chrono>
#include <lrts/lrts.hpp>
#include <random>
#include <string>
#include <thread>

namespace examples {

class ProgressTrackedService : public lrts::Service {
 public:
  int iterations = 0;  // 0: random, 20 to 60
  int sleep_ms = 100;  // per iteration, +-50%
  uint64_t seed = 0;   // 0: random

  std::string service_name() const override { return "Progress Tracked Service Example"; }

  int run(lrts::TaskContext& ctx) {
    std::mt19937_64 rng(seed ? seed : std::random_device{}());
    const int n = iterations > 0 ? iterations : 20 + static_cast<int>(rng() % 41);
    auto pause = [&] {
      const int jitter =
          sleep_ms > 1 ? static_cast<int>(rng() % static_cast<uint64_t>(sleep_ms)) : 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(sleep_ms / 2 + jitter));
    };

    lrts::ProgressBar loading = ctx.create_progress("Loading", 5, "files");
    for (int i = 0; i < 5; ++i) {
      pause();
      loading.advance();
    }
    loading.close();

    lrts::ProgressBar work =
        ctx.create_progress("Doing Work", static_cast<uint64_t>(n), "iterations");
    for (int i = 0; i < n; ++i) {
      pause();
      work.advance();
    }
    work.close();
    return n;
  }

  LRTS_FIELDS(iterations, sleep_ms, seed);
};

}  // namespace examples
