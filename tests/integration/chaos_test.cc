// Chaos: 5,000 short tasks on 3 workers while workers and slots are SIGKILLed and restarted,
// and the scheduler is SIGKILLed and restarted once (with its journal). At the end every task
// has exactly one result at the application, and it is correct.
//
// Run it alone: build/tests/integration_tests --gtest_filter='Chaos*'
// (LRTS_CHAOS_SEED=<n> picks another sequence of faults.)
#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <random>

#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

using ChaosTest = ClusterFixture;

TEST_F(ChaosTest, EveryTaskEndsExactlyOnceWhateverDies) {
  const char* env_seed = std::getenv("LRTS_CHAOS_SEED");
  const uint64_t seed = env_seed ? std::strtoull(env_seed, nullptr, 10) : 20261127;
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("LRTS_CHAOS_SEED=" + std::to_string(seed));

  const std::vector<std::string> scheduler_args = {"--state-dir",          dir_.file("state"),
                                                   "--heartbeat-interval", "0.2",
                                                   "--worker-timeout",     "1",
                                                   "--reclaim-grace",      "1"};
  Daemon& scheduler = cluster_.start_scheduler(scheduler_args);
  std::vector<Daemon*> workers;
  for (int i = 0; i < 3; ++i) workers.push_back(&cluster_.start_worker(2));

  ApplicationInformation info = app_info();
  info.track_progress = false;
  ClientApplication app(info);
  app.start_application();

  constexpr int kTasks = 5000;
  test_services::SleepService s;
  std::vector<std::string> ids;
  std::map<std::string, int64_t> expected;
  for (int i = 0; i < kTasks; ++i) {
    s.ms = 1 + static_cast<int>(rng() % 4);
    s.value = i;
    // Enough retries for a task to survive several kills of whatever runs it.
    ids.push_back(app.schedule_service(s, TaskOptions{.max_retries = 50}));
    expected[ids.back()] = i;
  }

  std::map<std::string, int> seen;
  int kills = 0, slot_kills = 0;
  bool scheduler_killed = false;
  size_t n = 0;
  for (const ServiceResult& r : app.as_completed(ids, std::chrono::seconds(240))) {
    ASSERT_TRUE(r.ok()) << r.service_id() << ": " << r.error();
    ASSERT_EQ(r.service_result<int64_t>(), expected.at(r.service_id()));
    ASSERT_EQ(++seen[r.service_id()], 1) << "delivered twice: " << r.service_id();
    ++n;
    if (n % 400 == 0 && n < kTasks - 400) {
      // A fault, picked by the seed.
      const size_t w = rng() % workers.size();
      if (rng() % 2 == 0) {
        workers[w]->signal(SIGKILL);
        workers[w]->wait_exit();
        workers[w] = &cluster_.start_worker(2);
        ++kills;
      } else {
        const auto slots = children_of(workers[w]->pid());
        if (!slots.empty()) {
          ::kill(slots[rng() % slots.size()], SIGKILL);
          ++slot_kills;
        }
      }
    }
    if (!scheduler_killed && n == kTasks / 2) {
      scheduler.signal(SIGKILL);
      ASSERT_NE(scheduler.wait_exit(), -1);
      cluster_.start_scheduler(scheduler_args);  // same state directory
      scheduler_killed = true;
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kTasks));
  EXPECT_TRUE(scheduler_killed);
  EXPECT_GT(kills + slot_kills, 5);
  std::fprintf(stderr, "chaos: %d worker kills, %d slot kills, 1 scheduler kill; %d tasks\n", kills,
               slot_kills, kTasks);
}

}  // namespace
}  // namespace lrts::testing
