#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "protocol/codec.hpp"
#include "protocol/relay_ids.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {
namespace {

using namespace std::chrono_literals;
using protocol::MsgType;
using protocol::TaskStatus;

// Records what the core sends, decoded, per peer.
class FakeTransport final : public Transport {
 public:
  void send_app(const PeerId& peer, const protocol::ToApp& message) override {
    protocol::encode(message, sent[peer].emplace_back());
  }
  void send_worker(const PeerId& peer, const protocol::ToWorker& message) override {
    protocol::encode(message, sent[peer].emplace_back());
  }
  void send_relay(const PeerId& peer, const protocol::ToRelay& message) override {
    protocol::encode(message, sent[peer].emplace_back());
  }
  // Messages for `peer` since the last call, decoded as the peer would.
  template <class Variant>
  std::vector<Variant> take(const std::string& peer) {
    std::vector<Variant> out;
    for (auto& bytes : sent[peer]) {
      storage.push_back(std::move(bytes));
      auto d = protocol::decode<Variant>(storage.back());
      EXPECT_TRUE(d.ok()) << d.error().text;
      if (d.ok()) out.push_back(std::move(*d));
    }
    sent[peer].clear();
    return out;
  }
  std::vector<PeerId> take_congested() override { return std::exchange(congested, {}); }
  std::map<std::string, std::vector<std::string>> sent;
  std::deque<std::string> storage;  // keeps decoded views valid
  std::vector<PeerId> congested;    // peers whose queue the next flush finds full
};

class SchedulerCoreTest : public ::testing::Test {
 protected:
  SchedulerCoreTest() : core_(options(), transport_, blobs_) {}

  static CoreOptions options() {
    CoreOptions o;
    o.epoch = 42;
    o.worker_timeout = 10s;
    o.app_timeout = 10s;
    o.app_grace = 60s;
    o.result_resend = 5s;
    return o;
  }

  void deliver(const std::string& peer, const protocol::ToScheduler& msg) {
    core_.on_message(peer, msg, now_);
    core_.flush(now_);
  }
  void advance(Duration d) {
    now_ += d;
    core_.on_tick(now_);
    core_.flush(now_);
  }

  void app_hello(const std::string& peer, const char* id = "app", uint64_t session = 100) {
    deliver(peer, protocol::AppHello{id, session, 0, 0});
  }
  void submit(const std::string& peer, std::vector<uint64_t> seqs, uint32_t max_retries = 2,
              uint64_t session = 100, std::string_view service = "svc") {
    protocol::Submit s;
    s.session = session;
    s.names = {service};
    for (uint64_t seq : seqs) {
      const std::string& f = texts_.emplace_back("f" + std::to_string(seq));  // outlives the view
      s.tasks.push_back({seq, 0, f, 0, max_retries, 0});
    }
    fields_.push_back(std::move(s));
    deliver(peer, fields_.back());
  }
  void worker_hello(const std::string& peer, uint64_t uid, uint32_t capacity,
                    std::vector<protocol::TaskAttempt> running = {},
                    std::vector<std::string_view> services = {"svc"}) {
    protocol::WorkerHello h;
    h.worker_uid = uid;
    h.name = peer;
    h.slots = capacity;
    h.capacity = capacity;
    h.services = std::move(services);
    h.held = std::move(running);
    deliver(peer, h);
  }
  void result(const std::string& worker, protocol::TaskKey key, uint32_t attempt, TaskStatus status,
              std::string payload, uint32_t capacity = 1) {
    payloads_.push_back(std::move(payload));
    protocol::WorkerResults r;
    r.capacity = capacity;
    r.items.push_back({key, attempt, status, payloads_.back(), 0, 7});
    deliver(worker, r);
  }

  std::vector<protocol::ToWorker> to_worker(const std::string& peer) {
    return transport_.take<protocol::ToWorker>(peer);
  }
  std::vector<protocol::ToApp> to_app(const std::string& peer) {
    return transport_.take<protocol::ToApp>(peer);
  }
  // The (seq, attempt) pairs assigned to a worker since last asked.
  std::vector<std::pair<uint64_t, uint32_t>> assigned(const std::string& peer) {
    std::vector<std::pair<uint64_t, uint32_t>> out;
    for (auto& m : to_worker(peer)) {
      if (auto* a = std::get_if<protocol::Assign>(&m)) {
        for (auto& t : a->tasks) out.emplace_back(t.key.seq, t.attempt);
      }
    }
    return out;
  }
  std::vector<protocol::AppResult> results(const std::string& peer) {
    std::vector<protocol::AppResult> out;
    for (auto& m : to_app(peer)) {
      if (auto* r = std::get_if<protocol::AppResults>(&m)) {
        out.insert(out.end(), r->items.begin(), r->items.end());
      }
    }
    return out;
  }

  FakeTransport transport_;
  MemoryBlobStore blobs_;
  SchedulerCore core_;
  TimePoint now_ = TimePoint{} + 1000s;
  std::deque<protocol::Submit> fields_;
  std::deque<std::string> texts_;  // what the views in fields_ point to
  std::deque<std::string> payloads_;
};

using Pairs = std::vector<std::pair<uint64_t, uint32_t>>;

TEST_F(SchedulerCoreTest, AssignsQueuedTasksInFifoOrderUpToCapacity) {
  app_hello("A");
  submit("A", {1, 2, 3, 4, 5});
  worker_hello("W", 1, 2);
  EXPECT_EQ(assigned("W"), (Pairs{{1, 1}, {2, 1}}));
  result("W", {100, 1}, 1, TaskStatus::kFinished, "r1", 2);
  EXPECT_EQ(assigned("W"), (Pairs{{3, 1}}));
  EXPECT_EQ(core_.stats().queued, 2u);
  EXPECT_EQ(core_.stats().assigned, 2u);
}

TEST_F(SchedulerCoreTest, SpreadsWorkOverWorkersWithFreeSlots) {
  worker_hello("W1", 1, 1);
  worker_hello("W2", 2, 1);
  app_hello("A");
  submit("A", {1, 2, 3});
  EXPECT_EQ(assigned("W1").size() + assigned("W2").size(), 2u);
  EXPECT_EQ(core_.stats().queued, 1u);
}

TEST_F(SchedulerCoreTest, AcknowledgesSubmissionsAndIgnoresResubmission) {
  app_hello("A");
  to_app("A");
  submit("A", {1, 2});
  submit("A", {2, 3});  // 2 again, as after a reconnect
  EXPECT_EQ(core_.stats().submitted, 3u);
  std::vector<uint64_t> acked;
  for (auto& m : to_app("A")) {
    if (auto* a = std::get_if<protocol::SubmitAck>(&m)) {
      acked.insert(acked.end(), a->seqs.begin(), a->seqs.end());
    }
  }
  EXPECT_EQ(acked, (std::vector<uint64_t>{1, 2, 2, 3}));
}

TEST_F(SchedulerCoreTest, DeliversResultOnceAndForgetsTaskAfterAck) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W", 1, 1);
  ASSERT_EQ(assigned("W"), (Pairs{{1, 1}}));
  to_app("A");
  result("W", {100, 1}, 1, TaskStatus::kFinished, "value");
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].payload, "value");
  EXPECT_EQ(r[0].worker, "W");
  // The worker is told to drop its copy.
  bool acked = false;
  for (auto& m : to_worker("W")) {
    if (auto* a = std::get_if<protocol::ResultAck>(&m)) acked |= a->acked.at(0).attempt == 1;
  }
  EXPECT_TRUE(acked);
  // A duplicate of the same result is not delivered again.
  result("W", {100, 1}, 1, TaskStatus::kFinished, "value");
  EXPECT_TRUE(results("A").empty());
  EXPECT_EQ(core_.stats().duplicates, 1u);
  // Received: no longer sent again, but kept until the application has handed it out.
  deliver("A", protocol::Received{{{100, 1}}});
  EXPECT_EQ(core_.stats().done, 1u);
  deliver("A", protocol::Collected{{{100, 1}}});
  EXPECT_EQ(core_.stats().done, 0u);
  EXPECT_EQ(core_.stats().delivered, 1u);
}

TEST_F(SchedulerCoreTest, ResendsUnacknowledgedResults) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W", 1, 1);
  result("W", {100, 1}, 1, TaskStatus::kFinished, "v");
  EXPECT_EQ(results("A").size(), 1u);
  deliver("A", protocol::AppHeartbeat{});
  advance(6s);
  EXPECT_EQ(results("A").size(), 1u);  // sent again: no ack came
  deliver("A", protocol::Received{{{100, 1}}});
  advance(6s);
  EXPECT_TRUE(results("A").empty());
}

TEST_F(SchedulerCoreTest, RequeuesTasksOfLostWorkerWithTheNextAttempt) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W1", 1, 1);
  ASSERT_EQ(assigned("W1"), (Pairs{{1, 1}}));
  worker_hello("W2", 2, 1);
  advance(5s);
  deliver("W2", protocol::WorkerHeartbeat{1});
  deliver("A", protocol::AppHeartbeat{});
  advance(6s);  // W1 silent for 11 s
  EXPECT_EQ(assigned("W2"), (Pairs{{1, 2}}));
  EXPECT_EQ(core_.stats().workers, 1u);
  EXPECT_EQ(core_.stats().requeued, 1u);
}

TEST_F(SchedulerCoreTest, FailsTaskWhenRetriesAreUsedUp) {
  app_hello("A");
  submit("A", {1}, /*max_retries=*/1);
  worker_hello("W", 1, 1);
  ASSERT_EQ(assigned("W"), (Pairs{{1, 1}}));
  result("W", {100, 1}, 1, TaskStatus::kLost, "slot process killed by signal 11");
  ASSERT_EQ(assigned("W"), (Pairs{{1, 2}}));
  to_app("A");
  result("W", {100, 1}, 2, TaskStatus::kLost, "slot process killed by signal 11");
  EXPECT_TRUE(assigned("W").empty());
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].status, TaskStatus::kFailed);
  EXPECT_EQ(r[0].payload, "gave up after 2 attempts: slot process killed by signal 11");
}

TEST_F(SchedulerCoreTest, FirstTerminalResultWinsOverALaterAttempt) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W1", 1, 1);
  assigned("W1");
  worker_hello("W2", 2, 1);
  // W1 is cut off long enough to lose its task, which goes to W2 ...
  advance(5s);
  deliver("W2", protocol::WorkerHeartbeat{1});
  deliver("A", protocol::AppHeartbeat{});
  advance(6s);
  ASSERT_EQ(assigned("W2"), (Pairs{{1, 2}}));
  // ... then W1 comes back with the task and its result.
  worker_hello("W1", 1, 1, {{{100, 1}, 1}});
  to_app("A");
  result("W1", {100, 1}, 1, TaskStatus::kFinished, "from W1");
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].payload, "from W1");
  // W2 is told to stop its now useless attempt, and its late result is dropped.
  bool cancelled = false;
  for (auto& m : to_worker("W2")) {
    if (std::get_if<protocol::CancelTasks>(&m)) cancelled = true;
  }
  EXPECT_TRUE(cancelled);
  result("W2", {100, 1}, 2, TaskStatus::kFinished, "from W2");
  EXPECT_TRUE(results("A").empty());
}

TEST_F(SchedulerCoreTest, ReconnectingWorkerKeepsWhatItHoldsAndLosesTheRest) {
  app_hello("A");
  submit("A", {1, 2});
  worker_hello("W", 1, 2);
  ASSERT_EQ(assigned("W").size(), 2u);
  // It re-registers holding only task 1. The same process lists all it has of its tasks, so it
  // never received task 2 (its ASSIGN was lost with the connection): task 2 goes again without
  // using an attempt.
  worker_hello("W", 1, 2, {{{100, 1}, 1}});
  EXPECT_EQ(assigned("W"), (Pairs{{2, 1}}));
  EXPECT_EQ(core_.stats().assigned, 2u);
  // Its result of task 2 sent, not acknowledged yet, when the link breaks again: listed as
  // unacknowledged, the task stays its own, and the result settles it.
  protocol::WorkerHello h;
  h.worker_uid = 1;
  h.name = "W";
  h.slots = 2;
  h.capacity = 2;
  h.services = {"svc"};
  h.held = {{{100, 1}, 1}};
  h.unacked = {{{100, 2}, 1}};
  deliver("W", h);
  EXPECT_TRUE(assigned("W").empty());
  EXPECT_EQ(core_.stats().assigned, 2u);
  result("W", {100, 2}, 1, TaskStatus::kFinished, "two", 1);
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].attempt, 1u);
}

TEST_F(SchedulerCoreTest, WorkerLeavingHandsBackTasksWithoutUsingAnAttempt) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W1", 1, 1);
  ASSERT_EQ(assigned("W1"), (Pairs{{1, 1}}));
  deliver("W1", protocol::WorkerBye{{{{100, 1}, 1}}});
  worker_hello("W2", 2, 1);
  EXPECT_EQ(assigned("W2"), (Pairs{{1, 1}}));
}

TEST_F(SchedulerCoreTest, CancelGivesACancelledResultAndStopsTheWorker) {
  app_hello("A");
  submit("A", {1, 2});
  worker_hello("W", 1, 1);
  ASSERT_EQ(assigned("W"), (Pairs{{1, 1}}));
  to_app("A");
  deliver("A", protocol::Cancel{{{100, 1}, {100, 2}}});
  auto r = results("A");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].status, TaskStatus::kCancelled);
  EXPECT_EQ(r[1].status, TaskStatus::kCancelled);
  bool cancel_sent = false;
  for (auto& m : to_worker("W")) {
    if (auto* k = std::get_if<protocol::CancelTasks>(&m)) {
      cancel_sent |= k->keys.size() == 1;
    }
  }
  EXPECT_TRUE(cancel_sent);
  EXPECT_EQ(core_.stats().queued, 0u);
}

TEST_F(SchedulerCoreTest, ApplicationGoodbyeDropsItsWork) {
  app_hello("A");
  submit("A", {1, 2, 3});
  worker_hello("W", 1, 1);
  assigned("W");
  deliver("A", protocol::AppBye{});
  EXPECT_EQ(core_.stats().queued + core_.stats().assigned + core_.stats().done, 0u);
  EXPECT_EQ(core_.stats().apps, 0u);
}

TEST_F(SchedulerCoreTest, SilentApplicationKeepsItsTasksForTheGracePeriod) {
  app_hello("A", "app-x");
  submit("A", {1});
  worker_hello("W", 1, 1);
  assigned("W");
  for (int i = 0; i < 5; ++i) {  // the worker stays alive, the application goes silent
    advance(5s);
    deliver("W", protocol::WorkerHeartbeat{1});
  }
  EXPECT_EQ(core_.stats().apps, 1u);  // 25 s < 10 s timeout + 60 s grace
  result("W", {100, 1}, 1, TaskStatus::kFinished, "kept");
  // The application comes back (new connection, new session) and gets the result.
  app_hello("A2", "app-x", 200);
  auto msgs = to_app("A2");
  ASSERT_EQ(msgs.size(), 4u);
  const auto& welcome = std::get<protocol::AppWelcome>(msgs[0]);
  EXPECT_EQ(welcome.outstanding, 1u);
  EXPECT_EQ(welcome.ready, 1u);
  // Its earlier tasks first (so it knows the result is its own), then the result.
  EXPECT_EQ(std::get<protocol::AppOutstanding>(msgs[1]).keys,
            (std::vector<protocol::TaskKey>{{100, 1}}));
  EXPECT_EQ(std::get<protocol::AppResults>(msgs[2]).items.at(0).payload, "kept");
  // And where its tasks stand: none running, none waiting.
  const auto& counts = std::get<protocol::AppCounts>(msgs[3]);
  EXPECT_EQ(counts.running, 0u);
  EXPECT_EQ(counts.queued, 0u);
}

TEST_F(SchedulerCoreTest, AnApplicationHearsHowManyOfItsTasksRunAndWait) {
  app_hello("A");
  submit("A", {1, 2, 3});
  worker_hello("W", 1, 1);
  assigned("W");
  auto last_counts = [&] {
    protocol::AppCounts c{UINT64_MAX, UINT64_MAX};
    for (const auto& m : to_app("A")) {
      if (auto* p = std::get_if<protocol::AppCounts>(&m)) c = *p;
    }
    return c;
  };
  advance(1s);  // counts go at most every kCountsEvery, the latest ones
  core_.flush(now_);
  auto c = last_counts();
  EXPECT_EQ(c.running, 1u);
  EXPECT_EQ(c.queued, 2u);
  advance(1s);  // past the minimum interval between two
  result("W", {100, 1}, 1, TaskStatus::kFinished, "x");
  advance(1s);
  core_.flush(now_);
  c = last_counts();
  EXPECT_EQ(c.running + c.queued, 2u);
}

TEST_F(SchedulerCoreTest, ApplicationGoneLongerThanGraceLosesItsWork) {
  app_hello("A");
  submit("A", {1, 2});
  for (int i = 0; i < 20; ++i) advance(5s);
  EXPECT_EQ(core_.stats().apps, 0u);
  EXPECT_EQ(core_.stats().queued, 0u);
}

TEST_F(SchedulerCoreTest, UnknownPeerIsAskedToSayHello) {
  deliver("X", protocol::WorkerHeartbeat{1});
  auto msgs = to_worker("X");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(std::get<protocol::ErrorMsg>(msgs[0]).code, protocol::ErrorCode::kHelloRequired);
}

TEST_F(SchedulerCoreTest, BadMessageIsAnsweredAndCounted) {
  core_.on_bad_message(
      "X", {protocol::DecodeCode::kMalformed, "malformed submit: truncated message"}, now_);
  auto msgs = to_worker("X");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(std::get<protocol::ErrorMsg>(msgs[0]).code, protocol::ErrorCode::kBadMessage);
  EXPECT_EQ(core_.stats().bad_messages, 1u);
}

TEST_F(SchedulerCoreTest, ResultForUnknownTaskIsAcknowledgedAndDropped) {
  worker_hello("W", 1, 1);
  result("W", {999, 9}, 1, TaskStatus::kFinished, "stray");
  EXPECT_EQ(core_.stats().duplicates, 1u);
  EXPECT_EQ(core_.stats().completed, 0u);
}

TEST_F(SchedulerCoreTest, IdleCoreHasNoTimers) {
  EXPECT_EQ(core_.next_deadline(), TimePoint::max());
  worker_hello("W", 1, 1);
  EXPECT_EQ(core_.next_deadline(), now_ + 10s);
}

TEST_F(SchedulerCoreTest, ReclaimAfterRestartIsDueBeforeLaterTimers) {
  CoreOptions o = options();
  o.reclaim_grace = 2s;  // shorter than the application timer restore() starts (10 s)
  SchedulerCore core(o, transport_, blobs_);
  RecoveredState state;
  state.apps.push_back({"app", 60000, false, ""});
  RecoveredTask task;
  task.key = {100, 1};
  task.app_id = "app";
  task.name = "svc";
  task.attempts = 1;
  state.tasks.push_back(task);
  core.restore(std::move(state), now_);
  EXPECT_EQ(core.next_deadline(), now_ + 2s);
}

TEST_F(SchedulerCoreTest, AKeptResultExpiresByItsRecordedAgeNotByTheRestart) {
  CoreOptions o = options();
  o.keep_results = 1h;
  SchedulerCore core(o, transport_, blobs_);
  RecoveredState state;
  state.apps.push_back({"app", 60000, true, ""});
  for (uint64_t seq : {1, 2}) {
    RecoveredTask task;
    task.key = {100, seq};
    task.app_id = "app";
    task.name = "svc";
    task.attempts = 1;
    task.done = true;
    task.result = "r";
    task.done_ms_ago = seq == 1 ? 50 * 60 * 1000 : 5 * 60 * 1000;  // 50 and 5 minutes ago
    state.tasks.push_back(task);
  }
  core.restore(std::move(state), now_);
  EXPECT_EQ(core.stats().done, 2u);
  now_ += 11min;  // the first has been kept an hour now; the second 16 minutes
  core.on_tick(now_);
  core.flush(now_);
  EXPECT_EQ(core.stats().done, 1u);
  now_ += 45min;
  core.on_tick(now_);
  core.flush(now_);
  EXPECT_EQ(core.stats().done, 0u);
}

TEST_F(SchedulerCoreTest, AWorkerThatDoesNotReadWhatItIsSentIsLostAndItsTasksMove) {
  app_hello("A");
  submit("A", {1, 2});
  worker_hello("W1", 1, 2);
  ASSERT_EQ(assigned("W1").size(), 2u);
  transport_.congested.push_back("W1");  // as if the ASSIGN had not fit in its queue
  worker_hello("W2", 2, 2);
  EXPECT_EQ(core_.stats().congested, 1u);
  EXPECT_EQ(assigned("W2"), (Pairs{{1, 2}, {2, 2}}));
}

TEST_F(SchedulerCoreTest, AnApplicationThatDoesNotReadWhatItIsSentIsDisconnectedAndKeepsItsWork) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W", 1, 1);
  ASSERT_EQ(assigned("W").size(), 1u);
  to_app("A");
  transport_.congested.push_back("A");
  result("W", {100, 1}, 1, TaskStatus::kFinished, "value");
  EXPECT_EQ(core_.stats().congested, 1u);
  to_app("A");  // what its full queue dropped
  // Its hello again gets the result.
  app_hello("A");
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].payload, "value");
}

TEST_F(SchedulerCoreTest, TasksGoOnlyToWorkersThatOfferTheirService) {
  worker_hello("Wa", 1, 10, {}, {"a"});
  worker_hello("Wb", 2, 10, {}, {"b", "c"});
  app_hello("A");
  submit("A", {1, 2}, 2, 100, "a");
  submit("A", {3, 4}, 2, 100, "b");
  submit("A", {5}, 2, 100, "c");
  EXPECT_EQ(assigned("Wa"), (Pairs{{1, 1}, {2, 1}}));
  EXPECT_EQ(assigned("Wb"), (Pairs{{3, 1}, {4, 1}, {5, 1}}));
}

TEST_F(SchedulerCoreTest, AServiceNobodyOffersGoesToAnyWorkerAfterTheWait) {
  worker_hello("W", 1, 10, {}, {"a"});
  app_hello("A");
  submit("A", {1}, 2, 100, "typo");
  EXPECT_TRUE(assigned("W").empty());
  for (int i = 0; i < 3; ++i) {
    advance(2s);
    deliver("W", protocol::WorkerHeartbeat{10});
    deliver("A", protocol::AppHeartbeat{});
  }
  // The worker will fail it with "unknown service", naming what it offers.
  EXPECT_EQ(assigned("W"), (Pairs{{1, 1}}));
}

TEST_F(SchedulerCoreTest, WithoutAnyWorkerTasksWaitAndAWorkerThatOffersTheServiceTakesThem) {
  app_hello("A");
  submit("A", {1}, 2, 100, "b");
  for (int i = 0; i < 5; ++i) {
    advance(3s);
    deliver("A", protocol::AppHeartbeat{});
  }
  worker_hello("Wa", 1, 10, {}, {"a"});  // the clock starts now, nothing goes yet
  EXPECT_TRUE(assigned("Wa").empty());
  worker_hello("Wb", 2, 10, {}, {"b"});
  EXPECT_EQ(assigned("Wb"), (Pairs{{1, 1}}));
  EXPECT_TRUE(assigned("Wa").empty());
}

TEST_F(SchedulerCoreTest, BatchesAssignmentsIntoOneMessagePerWorker) {
  app_hello("A");
  std::vector<uint64_t> seqs;
  for (uint64_t i = 1; i <= 1000; ++i) seqs.push_back(i);
  submit("A", seqs);
  worker_hello("W", 1, 1000);
  auto msgs = to_worker("W");
  size_t assigns = 0;
  for (auto& m : msgs) assigns += std::holds_alternative<protocol::Assign>(m);
  EXPECT_EQ(assigns, 1u);
}

// ---- what a key may do, and what a worker may claim ----

TEST_F(SchedulerCoreTest, AResultFromAWorkerNeverGivenTheAttemptIsRefused) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W1", 1, 1);
  worker_hello("W2", 2, 0);  // room for nothing: it is given nothing
  EXPECT_EQ(assigned("W1"), (Pairs{{1, 1}}));
  result("W2", {100, 1}, 1, TaskStatus::kFinished, "forged", 0);
  EXPECT_TRUE(results("A").empty());
  EXPECT_EQ(core_.stats().forged, 1u);
  result("W1", {100, 1}, 1, TaskStatus::kFinished, "real");
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].payload, "real");
}

TEST_F(SchedulerCoreTest, AWorkerGivenUpOnStillDeliversItsAttemptButNotAnother) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W1", 1, 1);
  EXPECT_EQ(assigned("W1"), (Pairs{{1, 1}}));
  deliver("W1", protocol::WorkerBye{});  // leaves without handing it back: attempt 1 is lost
  worker_hello("W2", 2, 1);
  EXPECT_EQ(assigned("W2"), (Pairs{{1, 2}}));
  worker_hello("W1", 1, 1);  // back, holding the result of attempt 1
  result("W1", {100, 1}, 2, TaskStatus::kFinished, "not its attempt");
  EXPECT_TRUE(results("A").empty());
  result("W1", {100, 1}, 1, TaskStatus::kFinished, "its attempt");
  auto r = results("A");
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].payload, "its attempt");
}

TEST_F(SchedulerCoreTest, AHelloCannotClaimQueuedTasksItWasNeverGiven) {
  app_hello("A");
  submit("A", {1});
  worker_hello("W", 5, 0, {{{100, 1}, 1}});  // claims it holds attempt 1
  auto w = to_worker("W");
  ASSERT_FALSE(w.empty());
  auto* welcome = std::get_if<protocol::WorkerWelcome>(&w[0]);
  ASSERT_NE(welcome, nullptr);
  ASSERT_EQ(welcome->cancel.size(), 1u);  // told to drop it
  EXPECT_EQ(core_.stats().queued, 1u);
}

TEST_F(SchedulerCoreTest, AnApplicationIdBelongsToTheKeyThatCreatedIt) {
  core_.on_message("A", protocol::AppHello{"app", 100, 0, 0}, now_, Caller{"alice"});
  submit("A", {1});
  core_.on_message("M", protocol::AppHello{"app", 200, 0, 0}, now_, Caller{"mallory"});
  core_.flush(now_);
  auto m = to_app("M");
  ASSERT_EQ(m.size(), 1u);
  auto* e = std::get_if<protocol::ErrorMsg>(&m[0]);
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->code, protocol::ErrorCode::kForbidden);
  deliver("M", protocol::AppBye{});  // not its peer: nothing happens to alice's application
  EXPECT_EQ(core_.stats().queued, 1u);
  // The same key may come back with a new connection.
  core_.on_message("A2", protocol::AppHello{"app", 300, 0, 0}, now_, Caller{"alice"});
  core_.flush(now_);
  auto a = to_app("A2");
  ASSERT_FALSE(a.empty());
  EXPECT_NE(std::get_if<protocol::AppWelcome>(&a[0]), nullptr);
}

TEST_F(SchedulerCoreTest, EachKeyMaySayOnlyTheHelloOfItsRole) {
  core_.on_message("W", protocol::AppHello{"app", 100, 0, 0}, now_, Caller{"w", true, false});
  protocol::WorkerHello h;
  h.worker_uid = 1;
  h.name = "x";
  h.slots = 1;
  h.capacity = 10;
  core_.on_message("A", h, now_, Caller{"a", false, true});
  core_.flush(now_);
  EXPECT_EQ(core_.stats().apps, 0u);
  EXPECT_EQ(core_.stats().workers, 0u);
}

TEST_F(SchedulerCoreTest, AWorkerThatRunsNothingItHoldsIsFlaggedAndOneThatRunsIsNot) {
  CoreOptions o = options();
  o.hoard_timeout = 30s;
  o.max_worker_capacity = 5;
  SchedulerCore core(o, transport_, blobs_);
  auto say = [&](const std::string& peer, const protocol::ToScheduler& m) {
    core.on_message(peer, m, now_);
    core.flush(now_);
  };
  say("A", protocol::AppHello{"app", 100, 0, 0});
  protocol::Submit s;
  s.session = 100;
  s.names = {"svc"};
  for (uint64_t seq = 1; seq <= 20; ++seq) s.tasks.push_back({seq, 0, "f", 0, 2, 0});
  say("A", s);
  protocol::WorkerHello h;
  h.worker_uid = 1;
  h.name = "hoarder";
  h.slots = 100;
  h.capacity = 1000;
  h.services = {"svc"};
  say("H", h);
  h.worker_uid = 2;
  h.name = "busy";
  say("B", h);
  EXPECT_EQ(core.stats().assigned, 10u) << "capped at --max-worker-capacity";
  for (int beat = 0; beat < 40; ++beat) {
    now_ += 1s;
    say("H", protocol::WorkerHeartbeat{1000, 0});
    say("B", protocol::WorkerHeartbeat{1000, 1});  // a long task runs
    core.on_tick(now_);
  }
  EXPECT_EQ(core.stats().hoarders, 1u);
  EXPECT_EQ(core.stats().assigned, 5u) << "the busy worker keeps its tasks";
  EXPECT_EQ(core.stats().queued, 15u) << "the hoarder's went back";
  EXPECT_TRUE(core.verify()) << core.verify().error();
}

TEST_F(SchedulerCoreTest, AfterARestartAnAttemptTheJournalMissedIsTakenWithinTheReclaimGrace) {
  CoreOptions o = options();
  o.reclaim_grace = 5s;
  SchedulerCore core(o, transport_, blobs_);
  RecoveredState state;
  state.apps.push_back({"app", 60000, false, ""});
  for (uint64_t seq : {1, 2}) {
    RecoveredTask task;  // assigned before the crash, the record of it not committed
    task.key = {100, seq};
    task.app_id = "app";
    task.name = "svc";
    state.tasks.push_back(task);
  }
  core.restore(std::move(state), now_);
  auto say = [&](const std::string& peer, const protocol::ToScheduler& m) {
    core.on_message(peer, m, now_);
    core.flush(now_);
  };
  protocol::WorkerHello h;
  h.worker_uid = 9;
  h.name = "w";
  h.slots = 1;
  h.capacity = 0;  // takes nothing new: only reports what it ran
  say("W", h);
  say("W", protocol::WorkerResults{0, {{{100, 1}, 1, TaskStatus::kFinished, "r1", 0, 1}}});
  EXPECT_EQ(core.stats().completed, 1u);
  EXPECT_EQ(core.stats().forged, 0u);
  now_ += 6s;  // past the grace: the same report for the other task is not believed
  say("W", protocol::WorkerResults{0, {{{100, 2}, 1, TaskStatus::kFinished, "r2", 0, 1}}});
  EXPECT_EQ(core.stats().completed, 1u);
  EXPECT_EQ(core.stats().forged, 1u);
}

// ---- queries and operator commands ---------------------------------------------------------

class SchedulerQueryTest : public SchedulerCoreTest {
 protected:
  // The reply to one QUERY or CONTROL from `caller` on connection "ops".
  nlohmann::json ask(protocol::ToScheduler msg, const Caller& caller = {},
                     uint8_t* code = nullptr) {
    std::visit(
        [&](auto& m) {
          if constexpr (requires { m.proof; }) m.proof = proof_;
        },
        msg);
    core_.on_message("ops", msg, now_, caller);
    core_.flush(now_);
    for (auto& m : to_app("ops")) {
      if (auto* r = std::get_if<protocol::QueryReply>(&m)) {
        if (code) *code = r->code;
        proof_ = r->next_proof;
        return nlohmann::json::parse(r->json);
      }
    }
    ADD_FAILURE() << "no reply";
    return {};
  }
  nlohmann::json query(std::string_view what, const Caller& caller = {}, uint8_t* code = nullptr,
                       std::string_view state = {}, std::string_view id = {}) {
    protocol::Query q;
    q.id = 9;
    q.what = what;
    q.state = state;
    q.service_id = id;
    return ask(q, caller, code);
  }
  uint64_t proof_ = 0;
};

TEST_F(SchedulerQueryTest, QueriesAnswerFromTheCoresTables) {
  app_hello("a");
  submit("a", {1, 2, 3});
  worker_hello("w", 7, 2);
  ASSERT_EQ(assigned("w").size(), 2u);
  advance(3s);
  result("w", {100, 1}, 1, TaskStatus::kFailed, "oops", 0);
  const auto st = query("status");
  EXPECT_EQ(st["workers"], 1);
  EXPECT_EQ(st["slots"], 2);
  EXPECT_EQ(st["busy_slots"], 1);
  EXPECT_EQ(st["submitted"], 3);
  EXPECT_EQ(st["failed"], 1);
  EXPECT_EQ(st["running"], 1);
  EXPECT_EQ(st["queued"], 1);
  EXPECT_EQ(st["completed_last_minute"], 1);
  EXPECT_EQ(st["applications"], 1);
  const auto failed = query("tasks", {}, nullptr, "failed");
  ASSERT_EQ(failed["tasks"].size(), 1u);
  EXPECT_EQ(failed["tasks"][0]["error"], "oops");
  EXPECT_EQ(failed["tasks"][0]["worker"], "w");
  const auto running = query("tasks", {}, nullptr, "running");
  ASSERT_EQ(running["tasks"].size(), 1u);
  EXPECT_EQ(running["tasks"][0]["service_id"], "0000000000000064-2");
  EXPECT_DOUBLE_EQ(running["tasks"][0]["run_time_s"].get<double>(), 3.0);
  EXPECT_EQ(query("tasks", {}, nullptr, "queued")["total"], 1);
  const auto task = query("task", {}, nullptr, {}, "0000000000000064-1");
  ASSERT_EQ(task["attempts"].size(), 1u);
  EXPECT_EQ(task["attempts"][0]["worker"], "w");
  EXPECT_EQ(query("workers")["workers"][0]["name"], "w");
  EXPECT_EQ(query("failures")["failures"][0]["error"], "oops");
  uint8_t code = 0;
  query("everything", {}, &code);
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kRefused));
  query("tasks", {}, &code, "sleeping");
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kRefused));
  query("task", {}, &code, {}, "0000000000000064-99");
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kRefused));
  EXPECT_TRUE(core_.verify().ok());
}

TEST_F(SchedulerQueryTest, QueriesAndCommandsAreHeldToTheCallersRole) {
  const Caller alice{"alice", false, true, false, false};
  const Caller bob{"bob", false, true, false, false};
  const Caller viewer{"viewer", false, false, true, false};
  const Caller admin{"admin", false, false, true, true};
  const Caller worker{"worker", true, false, false, false};
  core_.on_message("a", protocol::AppHello{"app", 100, 0, 0}, now_, alice);
  submit("a", {1, 2});
  core_.on_message(
      "w",
      [] {
        protocol::WorkerHello h;
        h.worker_uid = 7;
        h.name = "w";
        h.slots = 1;
        h.capacity = 1;
        h.services = {"svc"};
        return h;
      }(),
      now_, worker);
  core_.flush(now_);
  ASSERT_EQ(assigned("w").size(), 1u);
  EXPECT_EQ(query("tasks", alice)["total"], 2);
  EXPECT_EQ(query("tasks", bob)["total"], 0);
  EXPECT_EQ(query("tasks", viewer)["total"], 2);
  uint8_t code = 0;
  query("status", worker, &code);
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kForbidden));

  protocol::Control cancel;
  cancel.action = "cancel";
  cancel.keys = {{100, 1}, {100, 2}};
  EXPECT_EQ(ask(cancel, bob)["unknown"].size(), 2u);  // another key's: as if unknown
  ask(cancel, viewer, &code);
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kForbidden));
  cancel.keys = {{100, 1}};
  EXPECT_EQ(ask(cancel, alice)["cancelled"], 1);
  EXPECT_EQ(query("status", admin)["cancelled"], 1);
  // The running attempt is stopped on its worker.
  bool told = false;
  for (auto& m : to_worker("w")) told |= std::holds_alternative<protocol::CancelTasks>(m);
  EXPECT_TRUE(told);

  protocol::Control drain;
  drain.action = "drain";
  drain.worker = "w";
  ask(drain, viewer, &code);
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kForbidden));
  ask(drain, alice, &code);
  EXPECT_EQ(code, static_cast<uint8_t>(protocol::ErrorCode::kForbidden));
  EXPECT_EQ(ask(drain, admin)["draining"][0], "w");
  bool drained = false;
  for (auto& m : to_worker("w")) drained |= std::holds_alternative<protocol::Drain>(m);
  EXPECT_TRUE(drained);
  EXPECT_EQ(query("workers", admin)["workers"][0]["state"], "draining");
  EXPECT_TRUE(core_.verify().ok());
}

TEST_F(SchedulerQueryTest, AConnectionThatDoesNotReadItsAnswersGetsNoMore) {
  EXPECT_EQ(query("status")["workers"], 0);
  const uint64_t good = proof_;
  // Requests without the last answer's proof: one refusal (carrying the proof), then silence.
  protocol::Query q;
  q.what = "status";
  for (int i = 0; i < 100; ++i) {
    q.id = 100 + static_cast<uint64_t>(i);
    q.proof = 0;
    core_.on_message("ops", q, now_);
  }
  core_.flush(now_);
  const auto replies = to_app("ops");
  ASSERT_EQ(replies.size(), 1u);
  const auto& r = std::get<protocol::QueryReply>(replies[0]);
  EXPECT_EQ(r.code, static_cast<uint8_t>(protocol::ErrorCode::kRefused));
  EXPECT_EQ(r.next_proof, good);
  // With the proof, answered again; each connection has its own.
  EXPECT_EQ(query("status")["workers"], 0);
  protocol::Query other;
  other.what = "status";
  core_.on_message("other", other, now_);
  core_.flush(now_);
  EXPECT_EQ(to_app("other").size(), 1u);
}

// ---- relays ------------------------------------------------------------------------------------

class RelayCoreTest : public SchedulerCoreTest {
 protected:
  // `msg` from the worker `sub` behind `relay`, in a RELAYED batch.
  void via(const std::string& relay, uint32_t sub, const protocol::ToScheduler& msg) {
    std::string& bytes = texts_.emplace_back();
    protocol::encode(msg, bytes);
    protocol::Relayed r;
    r.items.push_back({sub, {}, false, bytes});
    deliver(relay, r);
  }
  void hello_via(const std::string& relay, uint32_t sub, uint64_t uid,
                 std::vector<protocol::TaskAttempt> held = {}) {
    protocol::WorkerHello h;
    h.worker_uid = uid;
    h.name = texts_.emplace_back("w" + std::to_string(uid));  // outlives the view
    h.slots = 1;
    h.capacity = 1;
    h.services = {"svc"};
    h.held = std::move(held);
    via(relay, sub, h);
  }
  void summary(const std::string& relay, std::vector<uint32_t> gone = {},
               std::vector<protocol::RelayBeat> beats = {}) {
    protocol::RelaySummary m;
    m.relay_uid = 7;
    m.workers = 1;
    m.beats = std::move(beats);
    m.gone = std::move(gone);
    deliver(relay, m);
  }
  static std::string behind(const std::string& relay, uint32_t sub) {
    return *protocol::relayed_peer(relay, sub);
  }
};

TEST_F(RelayCoreTest, SummariesKeepQuietRelayedWorkersAliveAndGoneLosesThem) {
  app_hello("app");
  hello_via("R", 1, 11);
  submit("app", {1});
  ASSERT_EQ(assigned(behind("R", 1)), (Pairs{{1, 1}}));
  // Three worker timeouts with no word from the worker itself, only its relay's summaries.
  for (int i = 0; i < 30; ++i) {
    summary("R");
    advance(1s);
  }
  EXPECT_EQ(core_.stats().workers, 1u);
  EXPECT_EQ(core_.stats().relayed_workers, 1u);
  EXPECT_EQ(core_.stats().assigned, 1u);
  // The relay says its connection ended: the worker has the worker timeout (10 s) to come
  // back another way, then the task goes back.
  summary("R", {1});
  EXPECT_EQ(core_.stats().relayed_workers, 0u);
  for (int i = 0; i < 9; ++i) advance(1s);
  EXPECT_EQ(core_.stats().workers, 1u);
  EXPECT_EQ(core_.stats().assigned, 1u);
  advance(2s);
  EXPECT_EQ(core_.stats().workers, 0u);
  EXPECT_EQ(core_.stats().queued, 1u);
}

TEST_F(RelayCoreTest, AWorkerThatMovedToAnotherRelayKeepsItsTaskWhateverTheOldRelaySays) {
  app_hello("app");
  hello_via("R1", 1, 11);
  submit("app", {1});
  ASSERT_EQ(assigned(behind("R1", 1)), (Pairs{{1, 1}}));
  // R1 dies; the worker says hello through R2 with the attempt it runs.
  hello_via("R2", 5, 11, {{{100, 1}, 1}});
  auto welcome = to_worker(behind("R2", 5));
  ASSERT_FALSE(welcome.empty());
  EXPECT_TRUE(std::get<protocol::WorkerWelcome>(welcome[0]).cancel.empty());
  // A late (or repeated) summary of R1 naming its old sub as gone, or beating for it, is
  // about another connection: ignored.
  summary("R1", {1}, {{1, 0, 0, 0, false}});
  summary("R1", {1});
  EXPECT_EQ(core_.stats().workers, 1u);
  EXPECT_EQ(core_.stats().assigned, 1u);
  EXPECT_TRUE(assigned(behind("R2", 5)).empty());
  // Its result, of attempt 1, is the task's.
  protocol::WorkerResults r;
  r.capacity = 1;
  payloads_.push_back("ok");
  r.items.push_back({{100, 1}, 1, TaskStatus::kFinished, payloads_.back(), 0, 7});
  via("R2", 5, r);
  auto got = results("app");
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].attempt, 1u);
}

TEST_F(RelayCoreTest, ABeatForAWorkerTheSchedulerDoesNotKnowAsksItForAHello) {
  summary("R", {}, {{9, 1, 0, 0, false}});
  auto msgs = to_worker(behind("R", 9));
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(std::get<protocol::ErrorMsg>(msgs[0]).code, protocol::ErrorCode::kHelloRequired);
  // The relay itself hears the interval and timeouts it passes on.
  auto acks = transport_.take<protocol::ToRelay>("R");
  ASSERT_FALSE(acks.empty());
  EXPECT_EQ(std::get<protocol::RelayAck>(acks.back()).scheduler_epoch, 42u);
}

TEST_F(RelayCoreTest, ARelayThatFallsSilentLeavesItsWorkersTheirTimeoutToComeBack) {
  app_hello("app");
  hello_via("R", 1, 11);
  submit("app", {1});
  ASSERT_EQ(assigned(behind("R", 1)), (Pairs{{1, 1}}));
  // No summary: the relay is lost after its timeout (10 s here); its worker then has its own.
  for (int i = 0; i < 15; ++i) advance(1s);
  EXPECT_EQ(core_.stats().relays, 0u);
  EXPECT_EQ(core_.stats().workers, 1u);
  EXPECT_EQ(core_.stats().assigned, 1u);
  // It comes back directly, running attempt 1: nothing is assigned again.
  worker_hello("direct", 11, 1, {{{100, 1}, 1}});
  EXPECT_TRUE(assigned("direct").empty());
  EXPECT_EQ(core_.stats().assigned, 1u);
  EXPECT_EQ(core_.stats().relayed_workers, 0u);
}

TEST_F(RelayCoreTest, RelayedMessagesMayNotComeFromANonRelayKey) {
  protocol::Relayed r;
  std::string& bytes = texts_.emplace_back();
  protocol::encode(protocol::WorkerHeartbeat{1, 0, 0, false}, bytes);
  r.items.push_back({1, {}, false, bytes});
  Caller worker_key;
  worker_key.identity = "w";
  worker_key.may_relay = false;
  core_.on_message("W", r, now_, worker_key);
  core_.flush(now_);
  auto msgs = to_worker("W");
  ASSERT_EQ(msgs.size(), 1u);
  EXPECT_EQ(std::get<protocol::ErrorMsg>(msgs[0]).code, protocol::ErrorCode::kForbidden);
  EXPECT_EQ(core_.stats().relays, 0u);
}

TEST(HeartbeatRateTest, TheIntervalDoublesUntilTheSchedulerHearsAtMostTheRateAndTimeoutsFollow) {
  FakeTransport transport;
  MemoryBlobStore blobs;
  CoreOptions o;
  o.epoch = 42;
  o.heartbeat_interval = 1s;
  o.worker_timeout = 10s;
  o.max_heartbeat_rate = 10;
  SchedulerCore core(o, transport, blobs);
  TimePoint now = TimePoint{} + 1000s;
  std::vector<uint32_t> told;
  std::deque<std::string> names;
  for (uint64_t uid = 1; uid <= 25; ++uid) {
    protocol::WorkerHello h;
    h.worker_uid = uid;
    h.name = names.emplace_back("w" + std::to_string(uid));
    h.slots = 1;
    h.capacity = 1;
    core.on_message(names.back(), h, now);
    core.flush(now);
    auto msgs = transport.take<protocol::ToWorker>(names.back());
    ASSERT_FALSE(msgs.empty());
    told.push_back(std::get<protocol::WorkerWelcome>(msgs[0]).heartbeat_ms);
  }
  EXPECT_EQ(told[0], 1000u);   // 1 worker: 1/s
  EXPECT_EQ(told[10], 2000u);  // 11 workers: 11/s at 1 s, 5.5/s at 2 s
  EXPECT_EQ(told[24], 4000u);  // 25: 6.25/s at 4 s
  EXPECT_EQ(core.stats().heartbeat_ms, 4000u);
  // Silent 35 s: those told 1 s and 2 s are gone (10 s and 20 s), the last ones (4 s: 40 s)
  // are not; at 45 s they are.
  for (int i = 0; i < 35; ++i) {
    now += 1s;
    core.on_tick(now);
    core.flush(now);
  }
  const size_t at_35 = core.stats().workers;
  EXPECT_GT(at_35, 0u);
  EXPECT_LT(at_35, 25u);
  for (int i = 0; i < 10; ++i) {
    now += 1s;
    core.on_tick(now);
    core.flush(now);
  }
  EXPECT_EQ(core.stats().workers, 0u);
}

// ---- the estimate of the work left (lrts status, lrts autoscale)
// ----------------------------------

TEST_F(SchedulerQueryTest, TheEstimateCountsMeasuredRunTimesQueuedWorkAndWhatRunningTasksHaveLeft) {
  app_hello("a");
  submit("a", {1, 2, 3, 4, 5, 6});
  auto st = query("status");
  EXPECT_EQ(st["estimate"]["tasks"], 6);
  EXPECT_EQ(st["estimate"]["unknown_tasks"], 6);  // no run of "svc" measured yet
  EXPECT_TRUE(st["estimate"]["finish_in_s"].is_null());
  // Within the same second, a change of the counts is seen at once (never a stale estimate
  // beside fresh counts).
  submit("a", {7, 8});
  EXPECT_EQ(query("status")["estimate"]["tasks"], 8);

  worker_hello("w", 7, 2);
  ASSERT_EQ(assigned("w").size(), 2u);
  advance(4s);
  // Each took 4 s as the worker measured it.
  payloads_.push_back("r");
  protocol::WorkerResults r;
  r.capacity = 2;
  r.items.push_back({{100, 1}, 1, TaskStatus::kFinished, payloads_.back(), 0, 4'000'000'000});
  r.items.push_back({{100, 2}, 1, TaskStatus::kFinished, payloads_.back(), 0, 4'000'000'000});
  deliver("w", r);
  ASSERT_EQ(assigned("w").size(), 2u);  // tasks 3 and 4 start now
  advance(1s);                          // a second into them
  st = query("status");
  const auto& e = st["estimate"];
  EXPECT_EQ(e["tasks"], 6);
  EXPECT_EQ(e["unknown_tasks"], 0);
  // Four queued at 4 s, two running with 3 s left each.
  EXPECT_NEAR(e["work_s"].get<double>(), 4 * 4 + 2 * 3, 1e-6);
  EXPECT_NEAR(e["longest_s"].get<double>(), 4, 1e-6);
  EXPECT_NEAR(e["finish_in_s"].get<double>(), 22.0 / 2, 1e-6);
  ASSERT_EQ(e["services"].size(), 1u);
  EXPECT_EQ(e["services"][0]["service"], "svc");
  EXPECT_EQ(e["services"][0]["queued"], 4);
  EXPECT_EQ(e["services"][0]["running"], 2);
  EXPECT_NEAR(e["services"][0]["mean_run_s"].get<double>(), 4, 1e-6);
}

}  // namespace
}  // namespace lrts::scheduler
