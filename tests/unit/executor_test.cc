// The worker's executor on its own, with fake slot processes: which attempt a dead slot costs.
#include "worker/executor.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace lrts::worker {
namespace {

using namespace std::chrono_literals;

class FakeSlots : public SlotControl {
 public:
  void start_slot(int) override {}
  void run(int, const std::vector<uint32_t>& refs, const std::vector<const LocalTask*>&) override {
    sent.insert(sent.end(), refs.begin(), refs.end());
  }
  void recall(int, const std::vector<uint32_t>&) override {}
  void kill(int) override {}
  std::vector<uint32_t> sent;
};

class ExecutorTest : public ::testing::Test {
 protected:
  ExecutorTest() : ex_(ExecutorOptions{.slots = 1}, slots_) { ex_.on_slot_hello(0, now_); }

  void add(uint64_t seq) {
    LocalTask t;
    t.key = protocol::TaskKey{7, seq};
    t.attempt = 1;
    t.name = "s";
    ex_.add(std::move(t));
  }
  // Answers the front task after 10 µs, until the slot holds `depth` tasks at once.
  void pipeline(size_t depth) {
    for (int round = 0; round < 100 && ex_.dispatch().in_flight(0).size() < depth; ++round) {
      now_ += 10us;
      const uint32_t ref = ex_.dispatch().in_flight(0).front();
      std::vector<SlotOutcome> r{
          SlotOutcome{ref, protocol::TaskStatus::kFinished, Bytes("x"), 10'000, {}}};
      std::vector<Outcome> out;
      ASSERT_TRUE(ex_.on_slot_results(0, r, now_, out));
      ex_.on_tick(now_);
    }
    ASSERT_GE(ex_.dispatch().in_flight(0).size(), depth);
  }
  uint64_t seq_of(uint32_t ref) const { return ex_.task(ref)->key.seq; }

  FakeSlots slots_;
  Executor ex_;
  TimePoint now_ = TimePoint{} + 1000s;
};

TEST_F(ExecutorTest, ADeadSlotCostsTheAttemptOfTheTaskItsRegionNamesNotOfOnesBeforeIt) {
  for (uint64_t i = 1; i <= 200; ++i) add(i);
  ex_.on_tick(now_);
  pipeline(3);
  const auto in = ex_.dispatch().in_flight(0);
  const uint64_t finished_unreported = seq_of(in[0]);  // its result died in the slot's buffer
  const uint64_t crashed = seq_of(in[1]);
  std::vector<Outcome> out;
  ex_.on_slot_exit(0, "killed by signal 11 (Segmentation fault)", {}, now_, out, in[1]);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].key.seq, crashed);
  EXPECT_EQ(out[0].status, protocol::TaskStatus::kLost);
  const auto held = ex_.held();
  const bool kept = std::any_of(held.begin(), held.end(), [&](const protocol::TaskAttempt& a) {
    return a.key.seq == finished_unreported && a.attempt == 1;
  });
  EXPECT_TRUE(kept) << "the task before it goes back to the queue, its attempt intact";
}

TEST_F(ExecutorTest, WithoutARegionOrBetweenTasksTheFirstUnansweredTaskPays) {
  for (uint64_t i = 1; i <= 200; ++i) add(i);
  ex_.on_tick(now_);
  pipeline(3);
  for (uint32_t running : {kRunningUnknown, kRunningNone}) {
    const uint64_t front = seq_of(ex_.dispatch().in_flight(0).front());
    std::vector<Outcome> out;
    ex_.on_slot_exit(0, "killed by signal 11 (Segmentation fault)", {}, now_, out, running);
    ASSERT_EQ(out.size(), 1u);
    EXPECT_EQ(out[0].key.seq, front);
    ex_.on_slot_hello(0, now_);
    pipeline(3);
  }
}

}  // namespace
}  // namespace lrts::worker
