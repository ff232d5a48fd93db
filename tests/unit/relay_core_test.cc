// RelayCore alone: what it keeps, forwards and answers, with a fake link.
#include "relay/relay_core.hpp"

#include <gtest/gtest.h>

#include <map>

#include "protocol/codec.hpp"

namespace lrts::relay {
namespace {

using namespace std::chrono_literals;

struct FakeLink final : RelayLink {
  bool to_worker(std::string_view routing_id, std::string_view bytes) override {
    down[std::string(routing_id)].emplace_back(bytes);
    return true;
  }
  void to_upstream(std::string_view bytes) override { up.emplace_back(bytes); }
  std::map<std::string, std::vector<std::string>> down;
  std::vector<std::string> up;
};

std::string encoded(const protocol::ToScheduler& m) {
  std::string out;
  protocol::encode(m, out);
  return out;
}

std::string encoded_down(const protocol::ToRelay& m) {
  std::string out;
  protocol::encode(m, out);
  return out;
}

// How many workers' messages went up in RELAYED batches, and of which types.
std::vector<protocol::MsgType> relayed_types(const std::vector<std::string>& up) {
  std::vector<protocol::MsgType> out;
  for (const auto& bytes : up) {
    auto m = protocol::decode<protocol::ToScheduler>(bytes);
    EXPECT_TRUE(m.ok());
    if (!m.ok()) continue;
    if (const auto* r = std::get_if<protocol::Relayed>(&*m)) {
      for (const auto& item : r->items) {
        auto inner = protocol::decode<protocol::ToScheduler>(item.message);
        EXPECT_TRUE(inner.ok());
        if (inner.ok()) out.push_back(std::visit([](const auto& x) { return x.kType; }, *inner));
      }
    }
  }
  return out;
}

class RelayCoreUnitTest : public ::testing::Test {
 protected:
  RelayCoreUnitTest() : core_(RelayCoreOptions{99}, link_) {
    protocol::RelayAck ack{7, 1000, 2000, 20000};
    core_.from_upstream(encoded_down(ack), now_);
  }
  void heartbeat(const char* who) {
    core_.from_worker(who, encoded(protocol::WorkerHeartbeat{1, 0, 0, false}), {}, now_);
    core_.flush();
  }
  void welcome(uint32_t sub) {
    std::string w;
    protocol::WorkerWelcome m;
    m.scheduler_epoch = 7;
    protocol::encode(protocol::ToWorker(m), w);
    protocol::RelayDown down;
    down.items.push_back({sub, w});
    core_.from_upstream(encoded_down(down), now_);
  }

  FakeLink link_;
  RelayCore core_;
  TimePoint now_ = TimePoint{} + 1000s;
};

TEST_F(RelayCoreUnitTest, HeartbeatsGoUpUntilTheSchedulerWelcomesTheWorkerThenStopHere) {
  heartbeat("w1");  // a worker the scheduler has not welcomed through us: it must hear it
  EXPECT_EQ(relayed_types(link_.up), std::vector{protocol::MsgType::kWorkerHeartbeat});
  EXPECT_TRUE(link_.down["w1"].empty());
  link_.up.clear();
  welcome(1);                              // the first connection is sub 1
  ASSERT_EQ(link_.down["w1"].size(), 1u);  // the welcome itself
  link_.down["w1"].clear();
  heartbeat("w1");
  EXPECT_TRUE(link_.up.empty());  // absorbed
  // Answered as the scheduler would, with the interval it gave for workers.
  ASSERT_EQ(link_.down["w1"].size(), 1u);
  auto ack = protocol::decode<protocol::ToWorker>(link_.down["w1"][0]);
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(std::get<protocol::HeartbeatAck>(*ack).scheduler_epoch, 7u);
  EXPECT_EQ(std::get<protocol::HeartbeatAck>(*ack).heartbeat_ms, 2000u);
  // A new upstream connection knows nobody: heartbeats go up again.
  core_.new_upstream();
  heartbeat("w1");
  EXPECT_EQ(relayed_types(link_.up), std::vector{protocol::MsgType::kWorkerHeartbeat});
}

TEST_F(RelayCoreUnitTest, ANewUpstreamAsksEveryWorkerForAHelloAtOnceAndSoDoesTheRelayAbove) {
  heartbeat("w1");
  welcome(1);
  link_.down["w1"].clear();
  auto asked = [&] {
    bool yes = false;
    for (const auto& bytes : link_.down["w1"]) {
      auto m = protocol::decode<protocol::ToWorker>(bytes);
      EXPECT_TRUE(m.ok());
      if (m.ok()) {
        if (const auto* e = std::get_if<protocol::ErrorMsg>(&*m)) {
          yes |= e->code == protocol::ErrorCode::kHelloRequired;
        }
      }
    }
    link_.down["w1"].clear();
    return yes;
  };
  core_.new_upstream();  // its heartbeat may be minutes away: it is asked now
  EXPECT_TRUE(asked());
  welcome(1);
  link_.down["w1"].clear();
  // A relay above lost its own upstream and passes the request down.
  core_.from_upstream(
      encoded_down(protocol::ErrorMsg{protocol::ErrorCode::kHelloRequired, "new upstream"}), now_);
  EXPECT_TRUE(asked());
  link_.up.clear();
  heartbeat("w1");
  EXPECT_EQ(relayed_types(link_.up), std::vector{protocol::MsgType::kWorkerHeartbeat});
}

TEST_F(RelayCoreUnitTest, ANewSchedulerEpochForgetsTheWelcomes) {
  welcome(1);
  heartbeat("w1");  // the sub is created here: welcome(1) came before it existed
  link_.up.clear();
  welcome(1);
  heartbeat("w1");
  EXPECT_TRUE(link_.up.empty());
  core_.from_upstream(encoded_down(protocol::RelayAck{8, 1000, 2000, 20000}), now_);
  heartbeat("w1");
  EXPECT_EQ(relayed_types(link_.up), std::vector{protocol::MsgType::kWorkerHeartbeat});
}

TEST_F(RelayCoreUnitTest, AnEndedConnectionIsListedGoneOnceAndItsSubIsNeverReused) {
  heartbeat("w1");
  heartbeat("w2");
  core_.connection_ended("w1");
  core_.connection_ended("w1");  // twice: once in the summary
  link_.up.clear();
  core_.on_tick(now_);
  ASSERT_FALSE(link_.up.empty());
  auto m = protocol::decode<protocol::ToScheduler>(link_.up.back());
  ASSERT_TRUE(m.ok());
  const auto& summary = std::get<protocol::RelaySummary>(*m);
  EXPECT_EQ(summary.relay_uid, 99u);
  EXPECT_EQ(summary.workers, 1u);
  EXPECT_EQ(summary.gone, std::vector<uint32_t>{1});
  // The same routing id again is a new connection: a new sub.
  link_.up.clear();
  heartbeat("w1");
  auto r = protocol::decode<protocol::ToScheduler>(link_.up.back());
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(std::get<protocol::Relayed>(*r).items[0].sub, 3u);
}

TEST_F(RelayCoreUnitTest, AWorkerKeyCannotSendRelayBatchesThroughARelay) {
  protocol::Relayed nested;
  const std::string inner = encoded(protocol::WorkerHeartbeat{1, 0, 0, false});
  nested.items.push_back({1, {}, false, inner});
  core_.from_worker("w1", encoded(nested), Sender{"worker-a", false}, now_);
  core_.flush();
  EXPECT_TRUE(link_.up.empty());
  ASSERT_EQ(link_.down["w1"].size(), 1u);
  auto e = protocol::decode<protocol::ToWorker>(link_.down["w1"][0]);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(std::get<protocol::ErrorMsg>(*e).code, protocol::ErrorCode::kForbidden);
  // A relay key may: relays chain.
  core_.from_worker("r2", encoded(nested), Sender{"relay-b", true}, now_);
  core_.flush();
  EXPECT_EQ(relayed_types(link_.up), std::vector{protocol::MsgType::kRelayed});
}

TEST_F(RelayCoreUnitTest, AWorkerSilentPastTheTimeoutTheSchedulerNamedIsGone) {
  heartbeat("w1");
  now_ += 19s;
  core_.on_tick(now_);
  EXPECT_EQ(core_.workers(), 1u);
  now_ += 2s;  // 21 s: past the 20 s of the RELAY_ACK
  core_.on_tick(now_);
  EXPECT_EQ(core_.workers(), 0u);
  EXPECT_EQ(core_.stats().gone, 1u);
}

}  // namespace
}  // namespace lrts::relay
