// The worker's placement policy on its own: depth, slow start, recall of stranded tasks,
// surplus — with time moved by hand.
#include "worker/dispatch.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace lrts::worker {
namespace {

using namespace std::chrono_literals;

class DispatchTest : public ::testing::Test {
 protected:
  explicit DispatchTest(int slots = 4) : d_(slots) {
    for (int i = 0; i < d_.slots(); ++i) d_.slot_up(i);
  }

  // Runs one plan and returns what each slot was sent.
  std::vector<std::vector<uint32_t>> plan() {
    std::vector<Dispatch::Batch> runs, recalls;
    d_.plan(now_, runs, recalls);
    recalls_.insert(recalls_.end(), recalls.begin(), recalls.end());
    std::vector<std::vector<uint32_t>> per(d_.slots());
    for (auto& b : runs) per[b.slot] = b.refs;
    return per;
  }
  // Lets every slot finish its front task after `run` (results come back one by one).
  void finish_fronts(Duration run) {
    now_ += run;
    for (int i = 0; i < d_.slots(); ++i) {
      if (!d_.in_flight(i).empty()) d_.on_result(i, d_.in_flight(i).front(), to_ns(run), now_);
    }
  }

  Dispatch d_;
  TimePoint now_ = TimePoint{} + 1000s;
  std::vector<Dispatch::Batch> recalls_;
  uint32_t next_ref_ = 0;
};

TEST_F(DispatchTest, IdleSlotsGetOneTaskEachBeforeAnySlotGetsMore) {
  for (int i = 0; i < 8; ++i) d_.enqueue(next_ref_++);
  auto per = plan();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(per[i].size(), 1u) << "slot " << i;
  EXPECT_EQ(d_.queued(), 4u);
}

TEST_F(DispatchTest, ShortTasksArePipelinedOnceASlotHasShownThemShort) {
  for (int i = 0; i < 400; ++i) d_.enqueue(next_ref_++);
  plan();
  finish_fronts(10us);  // each slot returns a quick result
  auto per = plan();
  // 2 ms of 10 us tasks: deep pipelines (up to the cap).
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d_.in_flight(i).size(), Dispatch::kMaxDepth);
  EXPECT_GT(d_.capacity(now_), 4u * Dispatch::kMaxDepth);
}

TEST_F(DispatchTest, LongTasksAfterShortOnesAreSpreadAndStrandedOnesRecalled) {
  // A burst of short tasks makes the estimate short ...
  for (int i = 0; i < 2000; ++i) d_.enqueue(next_ref_++);
  while (d_.queued() + d_.in_slots() > 0) {
    plan();
    finish_fronts(5us);
  }
  ASSERT_EQ(d_.in_slots(), 0u);
  // ... then 8 long tasks arrive: one per slot first.
  std::vector<uint32_t> longs;
  for (int i = 0; i < 8; ++i) {
    longs.push_back(next_ref_++);
    d_.enqueue(longs.back());
  }
  auto per = plan();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d_.in_flight(i).size(), 1u) << "slot " << i;
  EXPECT_EQ(d_.queued(), 4u);
  // Whatever was placed behind a task that runs long is recalled once it is clearly long.
  now_ += 2ms;
  plan();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(d_.in_flight(i).size(), 1u);
  EXPECT_EQ(d_.capacity(now_), 4u);  // one per slot: the scheduler keeps the rest for others
  EXPECT_EQ(d_.take_surplus(now_).size(), 4u);
}

TEST_F(DispatchTest, ATaskStrandedBehindALongOneIsRecalledAndPlacedOnTheNextFreeSlot) {
  for (int i = 0; i < 400; ++i) d_.enqueue(next_ref_++);
  plan();
  finish_fronts(10us);
  plan();  // slots now hold deep pipelines
  ASSERT_GT(d_.in_flight(0).size(), 1u);
  // Slot 0's front turns out long; the others keep finishing quickly.
  now_ += 5ms;
  recalls_.clear();
  plan();
  ASSERT_EQ(recalls_.size(), 4u);  // every slot's front has now run 5 ms: all are recalled
  for (const auto& r : recalls_) {
    EXPECT_EQ(r.refs.size(), d_.in_flight(r.slot).size() - 1);
    d_.on_recalled(r.slot, r.refs);
    EXPECT_EQ(d_.in_flight(r.slot).size(), 1u);
  }
  // The recalled tasks wait in the worker, in order, for the next slot that frees up.
  EXPECT_GT(d_.queued(), 0u);
  const uint32_t next = d_.take_queued().front();
  EXPECT_LT(next, next_ref_);
}

TEST_F(DispatchTest, ATaskAskedBackByNameIsRecalled) {
  for (int i = 0; i < 400; ++i) d_.enqueue(next_ref_++);
  plan();
  finish_fronts(10us);
  plan();
  ASSERT_GT(d_.in_flight(1).size(), 2u);
  const uint32_t behind = d_.in_flight(1)[2];
  d_.want_back(1, behind);
  recalls_.clear();
  plan();
  ASSERT_EQ(recalls_.size(), 1u);
  EXPECT_EQ(recalls_[0].slot, 1);
  EXPECT_EQ(recalls_[0].refs, std::vector<uint32_t>{behind});
}

TEST_F(DispatchTest, AResultForATaskTheSlotWasNotRunningIsRefused) {
  d_.enqueue(next_ref_++);
  d_.enqueue(next_ref_++);
  plan();
  EXPECT_FALSE(d_.on_result(0, 12345, 1, now_));
  EXPECT_TRUE(d_.on_result(0, d_.in_flight(0).front(), 1, now_));
}

TEST_F(DispatchTest, ADeadSlotGetsNothingUntilItIsUpAgain) {
  d_.slot_down(2);
  for (int i = 0; i < 4; ++i) d_.enqueue(next_ref_++);
  auto per = plan();
  EXPECT_TRUE(per[2].empty());
  EXPECT_EQ(d_.queued(), 1u);
  d_.slot_up(2);
  per = plan();
  EXPECT_EQ(per[2].size(), 1u);
}

}  // namespace
}  // namespace lrts::worker
