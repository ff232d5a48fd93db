#include <gtest/gtest.h>

#include "progress_server/store.hpp"

namespace lrts::progress_server {
namespace {

using namespace std::chrono_literals;

protocol::BarState update(uint64_t seq, uint32_t attempt, uint32_t bar, uint64_t count,
                          uint64_t total, bool closed = false, uint64_t elapsed_ms = 0) {
  protocol::BarState b;
  b.key = {1, seq};
  b.attempt = attempt;
  b.bar_no = bar;
  b.description = "work";
  b.unit = "it";
  b.count = count;
  b.total = total;
  b.phase = closed ? protocol::BarPhase::kDone : protocol::BarPhase::kOpen;
  b.elapsed_ms = elapsed_ms;
  return b;
}

TEST(ProgressStoreTest, KeepsTheLatestStateAndComputesRateAndEta) {
  ProgressStore store;
  TimePoint t = TimePoint{} + 100s;
  store.apply(update(1, 1, 0, 10, 100, false, 1000), t);  // 10 in the first second
  auto first = store.take_changes(t);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_DOUBLE_EQ(first[0].rate, 10.0);
  EXPECT_DOUBLE_EQ(first[0].eta_seconds, 9.0);
  for (int i = 1; i <= 20; ++i) {
    store.apply(update(1, 1, 0, 10 + 10u * i, 300, false, 1000 + 1000u * i), t + 1s * i);
  }
  auto later = store.take_changes(t + 20s);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_NEAR(later[0].rate, 10.0, 0.01);
  EXPECT_NEAR(later[0].eta_seconds, 9.0, 0.01);  // (300 - 210) / 10
  EXPECT_EQ(later[0].elapsed_ms, 21'000u);
  EXPECT_TRUE(store.take_changes(t + 20s).empty());
}

TEST(ProgressStoreTest, ANewAttemptReplacesTheOldOnesBars) {
  ProgressStore store;
  const TimePoint t{};
  store.apply(update(1, 1, 0, 5, 10), t);
  store.apply(update(1, 1, 1, 5, 10), t);
  store.apply(update(1, 2, 0, 1, 10), t);
  store.apply(update(1, 1, 1, 9, 10), t);  // late news from attempt 1: ignored
  auto all = store.snapshot(t, nullptr);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].attempt, 2u);
  EXPECT_EQ(all[0].count, 1u);
}

TEST(ProgressStoreTest, ClosedBarsAreForgottenAfterTheirTime) {
  StoreOptions o;
  o.keep_closed = 60s;
  ProgressStore store(o);
  const TimePoint t{};
  store.apply(update(1, 1, 0, 10, 10, true), t);
  store.apply(update(2, 1, 0, 3, 10), t);
  EXPECT_EQ(store.next_expiry(), t + 60s);
  store.expire(t + 59s);
  EXPECT_EQ(store.size(), 2u);
  store.expire(t + 60s);
  EXPECT_EQ(store.size(), 1u);
  EXPECT_EQ(store.next_expiry(), TimePoint::max());
}

TEST(ProgressStoreTest, MemoryIsBoundedOldestClosedBarsGoFirst) {
  StoreOptions o;
  o.max_bars = 3;
  ProgressStore store(o);
  const TimePoint t{};
  store.apply(update(1, 1, 0, 1, 1, true), t);
  store.apply(update(2, 1, 0, 1, 1, true), t);
  store.apply(update(3, 1, 0, 0, 1), t);
  store.apply(update(4, 1, 0, 0, 1), t);  // evicts task 1's closed bar
  EXPECT_EQ(store.size(), 3u);
  store.apply(update(5, 1, 0, 0, 1), t);  // evicts task 2's
  store.apply(update(6, 1, 0, 0, 1), t);  // nothing closed left: dropped
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.dropped(), 1u);
}

TEST(ProgressStoreTest, SnapshotFiltersBySession) {
  ProgressStore store;
  const TimePoint t{};
  auto a = update(1, 1, 0, 1, 2);
  auto b = update(2, 1, 0, 1, 2);
  b.key.session = 7;
  store.apply(a, t);
  store.apply(b, t);
  auto only7 = store.snapshot(t, [](uint64_t s) { return s == 7; });
  ASSERT_EQ(only7.size(), 1u);
  EXPECT_EQ(only7[0].key.session, 7u);
}

}  // namespace
}  // namespace lrts::progress_server
