// Faults with real processes and real signals: nothing accepted is lost, nothing is delivered
// twice.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"
#include "services/mult_service.hpp"
#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

// Fast failure detection for tests: heartbeats every 200 ms, a worker lost after 1 s.
const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout", "1", "--app-timeout", "1"};

class ResilienceTest : public ClusterFixture {
 protected:
  bool scheduler_logged(const std::string& text, std::chrono::milliseconds timeout = 20s) {
    return wait_until([&] { return cluster_.scheduler_logs().find(text) != std::string::npos; },
                      timeout);
  }
};

TEST_F(ResilienceTest, ATaskComputingLongerThanTheWorkerTimeoutKeepsItsLease) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::SpinProgressService spin;  // no syscalls: the slot never heartbeats
  spin.ms = 3500;                           // 3.5 x the worker timeout
  const auto r = app.wait_for(app.schedule_service(spin), 60s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.attempt(), 1u);
  EXPECT_EQ(cluster_.scheduler_logs().find("lost"), std::string::npos);
}

TEST_F(ResilienceTest, TasksOfAKilledWorkerCompleteElsewhere) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& doomed = cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 1500;
  s.value = 42;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started));
  cluster_.start_worker(1);
  doomed.signal(SIGKILL);
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 42);
  EXPECT_EQ(r.attempt(), 2u);
  EXPECT_EQ(r.worker(), "worker1");
  EXPECT_TRUE(scheduler_logged("worker 'worker0' lost"));
}

TEST_F(ResilienceTest, CrashingSlotsAreReplacedAndTheirTasksRetried) {
  cluster_.start_scheduler();
  Daemon& w = cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  for (const char* mode : {"segv", "abort", "exit", "kill"}) {
    test_services::CrashService crash;
    crash.mode = mode;
    crash.crash_attempts = 1;
    const auto r = app.wait_for(app.schedule_service(crash), 30s);
    ASSERT_TRUE(r.ok()) << mode << ": " << r.error();
    EXPECT_EQ(r.attempt(), 2u) << mode;
  }
  EXPECT_TRUE(w.running());
  EXPECT_TRUE(w.log_contains("killed by signal 11 (Segmentation fault)"));
  EXPECT_TRUE(w.log_contains("killed by signal 6 (Aborted)"));
  EXPECT_TRUE(w.log_contains("exited with status 3"));
}

TEST_F(ResilienceTest, ATaskThatAlwaysCrashesFailsWithTheReasonAfterItsRetries) {
  cluster_.start_scheduler();
  cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::CrashService crash;
  crash.mode = "segv";
  const auto r = app.wait_for(app.schedule_service(crash, TaskOptions{.max_retries = 2}), 30s);
  EXPECT_EQ(r.status(), ServiceStatus::failed);
  EXPECT_EQ(r.attempt(), 3u);
  EXPECT_EQ(r.error(),
            "gave up after 3 attempts: slot process killed by signal 11 (Segmentation fault) "
            "while running the task");
  // The worker is still there for the next task.
  EXPECT_EQ(
      app.wait_for(app.schedule_service(examples::MultService(3, 5)), 30s).service_result<int>(),
      15);
}

TEST_F(ResilienceTest, ASlotKilledFromOutsideIsReplacedAndItsTaskRetried) {
  cluster_.start_scheduler();
  Daemon& w = cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 2000;
  s.value = 7;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started));
  const auto slots = children_of(w.pid());
  ASSERT_EQ(slots.size(), 1u);
  ::kill(slots[0], SIGKILL);
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.attempt(), 2u);
  EXPECT_EQ(r.service_result<int64_t>(), 7);
}

TEST_F(ResilienceTest, ASlotOverTheMemoryLimitIsStoppedWithThatReason) {
  if (kUnderAddressSanitizer)
    GTEST_SKIP() << "a slot's own memory is over 64 MB under AddressSanitizer";
  cluster_.start_scheduler();
  cluster_.start_worker(1, {"--max-job-memory-mb", "64"});
  ClientApplication app(info());
  app.start_application();
  test_services::AllocService big;
  big.mb = 256;
  big.hold_ms = 3000;
  const auto r = app.wait_for(app.schedule_service(big, TaskOptions{.max_retries = 1}), 60s);
  EXPECT_EQ(r.status(), ServiceStatus::failed);
  EXPECT_EQ(r.attempt(), 2u);
  EXPECT_NE(r.error().find("gave up after 2 attempts: exceeded the memory limit of 64 MB"),
            std::string::npos)
      << r.error();
  test_services::AllocService small;
  small.mb = 16;
  EXPECT_TRUE(app.wait_for(app.schedule_service(small), 30s).ok());
}

TEST_F(ResilienceTest, AWorkerCutOffAndBackDeliversEachResultOnce) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& w0 = cluster_.start_worker(2);
  cluster_.start_worker(2);
  ASSERT_TRUE(cluster_.wait_for_workers(2));
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 400;
  std::vector<std::string> ids;
  for (int i = 0; i < 24; ++i) {
    s.value = i;
    ids.push_back(app.schedule_service(s));
  }
  ASSERT_TRUE(wait_until([&] { return !children_of(w0.pid()).empty(); }));
  w0.signal(SIGSTOP);  // cut off: no heartbeats, slots frozen too
  // "lost" is logged only for a worker that held tasks ("removed" otherwise): it had work.
  ASSERT_TRUE(scheduler_logged("worker 'worker0' lost"));
  w0.signal(SIGCONT);
  std::map<std::string, int> seen;
  for (const auto& r : app.as_completed(ids, 60s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    ++seen[r.service_id()];
  }
  ASSERT_EQ(seen.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(seen[ids[i]], 1);
  // It came back and registered again.
  EXPECT_TRUE(wait_until(
      [&] { return occurrences(cluster_.scheduler_logs(), "worker 'worker0' registered") == 2; }));
}

TEST_F(ResilienceTest, WorkersJoinAndLeaveDuringARunAndADrainingWorkerFinishesItsTasks) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& first = cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 3;
  std::vector<std::string> ids;
  for (int i = 0; i < 2000; ++i) {
    s.value = i;
    ids.push_back(app.schedule_service(s));
  }
  std::map<std::string, int64_t> got;
  size_t n = 0;
  for (const auto& r : app.as_completed(ids, 120s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    ASSERT_TRUE(got.emplace(r.service_id(), r.service_result<int64_t>()).second) << "twice";
    ++n;
    if (n == 200) cluster_.start_worker(2);
    if (n == 600) first.signal(SIGTERM);  // drain: finish what runs, hand back the rest
    if (n == 1000) cluster_.start_worker(2);
  }
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(got[ids[i]], static_cast<int64_t>(i));
  const int status = first.wait_exit(30s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(first.log_contains("draining"));
  EXPECT_TRUE(first.log_contains("drained: every task finished and delivered"));
}

TEST_F(ResilienceTest, HandBackOnStopReturnsARunningTaskWithoutUsingAnAttempt) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& leaving = cluster_.start_worker(1, {"--on-stop", "handback"});
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 1000;
  s.value = 5;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started));
  leaving.signal(SIGTERM);
  ASSERT_NE(leaving.wait_exit(20s), -1);
  cluster_.start_worker(1);
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.attempt(), 1u);
  EXPECT_EQ(r.worker(), "worker1");
}

TEST_F(ResilienceTest, ASchedulerKilledAndRestartedLosesNothingAndDuplicatesNothing) {
  const std::vector<std::string> durable = {"--state-dir",          dir_.file("state"),
                                            "--reclaim-grace",      "2",
                                            "--heartbeat-interval", "0.2",
                                            "--worker-timeout",     "2"};
  Daemon& first = cluster_.start_scheduler(durable);
  cluster_.start_worker(2);
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 20;
  std::vector<std::string> ids;
  for (int i = 0; i < 400; ++i) {
    s.value = i;
    ids.push_back(app.schedule_service(s));
  }
  std::map<std::string, int64_t> got;
  for (const auto& r : app.as_completed(ids, 120s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    ASSERT_TRUE(got.emplace(r.service_id(), r.service_result<int64_t>()).second) << "twice";
    if (got.size() == 100) {
      first.signal(SIGKILL);
      ASSERT_NE(first.wait_exit(), -1);
      cluster_.start_scheduler(durable);  // same state directory
    }
  }
  ASSERT_EQ(got.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(got[ids[i]], static_cast<int64_t>(i));
  EXPECT_TRUE(scheduler_logged("restored"));
}

TEST_F(ResilienceTest, AnApplicationRestartedWithinItsGraceGetsAllItsResults) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(2);
  Daemon crashing({test_app(), std::to_string(cluster_.port()), "restartable", "6", "1500"},
                  dir_.file("app.log"));
  ASSERT_TRUE(wait_until([&] { return crashing.log_contains("READY"); }));
  crashing.signal(SIGKILL);
  ASSERT_NE(crashing.wait_exit(), -1);
  std::vector<std::string> scheduled;
  std::istringstream lines(crashing.log());
  for (std::string line; std::getline(lines, line) && line != "READY";) scheduled.push_back(line);
  ASSERT_EQ(scheduled.size(), 6u);

  ApplicationInformation i = info();
  i.application_id = "restartable";
  ClientApplication again(i);
  again.start_application();
  ASSERT_TRUE(again.wait_connected(20s));
  auto pending = again.pending_service_ids();
  std::sort(pending.begin(), pending.end());
  auto expected = scheduled;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(pending, expected);
  const auto results = again.wait_for_multi(scheduled, 60s);
  for (size_t k = 0; k < results.size(); ++k) {
    ASSERT_TRUE(results[k].ok()) << results[k].error();
    EXPECT_EQ(results[k].service_result<int64_t>(), static_cast<int64_t>(k));
  }
}

TEST_F(ResilienceTest, AnApplicationGoneLongerThanItsGraceLosesItsWork) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& w = cluster_.start_worker(1);
  Daemon crashing({test_app(), std::to_string(cluster_.port()), "forgotten", "3", "60000", "1000"},
                  dir_.file("app.log"));
  ASSERT_TRUE(wait_until([&] { return crashing.log_contains("READY"); }));
  ASSERT_TRUE(wait_until([&] { return children_of(w.pid()).size() == 1; }));
  crashing.signal(SIGKILL);
  ASSERT_TRUE(
      scheduler_logged("application 'forgotten' did not come back; dropping its 3 task(s)"));
  // The running task was stopped on the worker.
  EXPECT_TRUE(wait_until([&] { return w.log_contains("to cancel the task it runs"); }));
  ApplicationInformation i = info();
  i.application_id = "forgotten";
  ClientApplication again(i);
  again.start_application();
  ASSERT_TRUE(again.wait_connected(20s));
  EXPECT_TRUE(again.pending_service_ids().empty());
}

// ---- bad input ------------------------------------------------------------------------------

void send_raw_tcp(int port, const std::string& bytes) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    [[maybe_unused]] auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  ::close(fd);
}

// Receives one message on a DEALER within the deadline.
std::string receive(net::ZmqSocket& s, std::chrono::milliseconds timeout = 5s) {
  std::string out;
  net::ZmqFrame f;
  wait_until(
      [&] {
        if (!s.recv(f)) return false;
        out.assign(f.view());
        return true;
      },
      timeout);
  return out;
}

TEST_F(ResilienceTest, BadInputOnEveryPortNeverBringsADaemonDown) {
  Daemon& sched = cluster_.start_scheduler({"--max-message-mb", "1"});
  Daemon& ps = cluster_.start_progress_server();
  Daemon& w = cluster_.start_worker(1);
  ASSERT_TRUE(cluster_.wait_for_workers(1));
  std::mt19937 rng(1);
  auto junk = [&](size_t n) {
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng());
    return s;
  };
  // Raw TCP garbage, not even ZeroMQ.
  for (int port : {cluster_.port(), cluster_.progress_port()}) {
    for (int i = 0; i < 20; ++i) send_raw_tcp(port, junk(1 + rng() % 2000));
  }

  net::ZmqContext ctx;
  net::ZmqSocket peer(ctx, ZMQ_DEALER);
  ASSERT_TRUE(peer.connect("tcp://127.0.0.1:" + std::to_string(cluster_.port())).ok());
  net::ZmqSocket progress_peer(ctx, ZMQ_DEALER);
  ASSERT_TRUE(
      progress_peer.connect("tcp://127.0.0.1:" + std::to_string(cluster_.progress_port())).ok());
  // Well-framed garbage, multi-frame messages, an oversized message.
  for (int i = 0; i < 200; ++i) {
    peer.send(junk(rng() % 300));
    progress_peer.send(junk(rng() % 300));
  }
  peer.send("a", true);
  peer.send("b");
  peer.send(std::string(2u << 20, 'x'));  // over --max-message-mb 1: the connection is dropped
  net::ZmqSocket peer2(ctx, ZMQ_DEALER);
  ASSERT_TRUE(peer2.connect("tcp://127.0.0.1:" + std::to_string(cluster_.port())).ok());

  // Another protocol version: answered with an error saying so.
  std::string msg;
  protocol::mp::Writer v(msg);
  v.array(2);
  v.uint(protocol::kVersion + 7);
  v.uint(static_cast<uint8_t>(protocol::MsgType::kAppHeartbeat));
  peer2.send(msg);
  const std::string reply_bytes = receive(peer2);  // decoded views point into it
  auto reply = protocol::decode<protocol::ToApp>(reply_bytes);
  ASSERT_TRUE(reply.ok()) << reply.error().text;
  const auto& err = std::get<protocol::ErrorMsg>(*reply);
  EXPECT_EQ(err.code, protocol::ErrorCode::kVersionMismatch);
  EXPECT_NE(
      std::string(err.text).find("protocol version " + std::to_string(protocol::kVersion + 7)),
      std::string::npos);

  // A fake worker: registers twice (duplicate registration), then reports a result for a task
  // that does not exist; it is acknowledged and dropped.
  protocol::WorkerHello hello;
  hello.worker_uid = 777;
  hello.name = "impostor";
  hello.slots = 1;
  hello.capacity = 0;
  for (int i = 0; i < 2; ++i) {
    msg.clear();
    protocol::encode(hello, msg);
    peer2.send(msg);
    const std::string bytes = receive(peer2);
    auto welcome = protocol::decode<protocol::ToWorker>(bytes);
    ASSERT_TRUE(welcome.ok() && std::holds_alternative<protocol::WorkerWelcome>(*welcome));
  }
  protocol::WorkerResults results;
  results.items.push_back({{12345, 678}, 1, protocol::TaskStatus::kFinished, "\x01", 0, 1});
  msg.clear();
  protocol::encode(results, msg);
  peer2.send(msg);
  const std::string ack_bytes = receive(peer2);
  auto ack = protocol::decode<protocol::ToWorker>(ack_bytes);
  ASSERT_TRUE(ack.ok()) << ack.error().text;
  ASSERT_TRUE(std::holds_alternative<protocol::ResultAck>(*ack));
  EXPECT_EQ(std::get<protocol::ResultAck>(*ack).acked.at(0).key, (protocol::TaskKey{12345, 678}));
  // The same peer now claiming to be an application is refused.
  msg.clear();
  protocol::encode(protocol::AppHello{"x", 1, 0, 0}, msg);
  peer2.send(msg);
  const std::string refused_bytes = receive(peer2);
  auto refused = protocol::decode<protocol::ToApp>(refused_bytes);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(std::get<protocol::ErrorMsg>(*refused).code, protocol::ErrorCode::kBadMessage);

  // Everybody is still up and the cluster still works.
  EXPECT_TRUE(sched.running());
  EXPECT_TRUE(ps.running());
  EXPECT_TRUE(w.running());
  ClientApplication app(info());
  app.start_application();
  EXPECT_EQ(
      app.wait_for(app.schedule_service(examples::MultService(7, 6)), 30s).service_result<int>(),
      42);
  EXPECT_TRUE(sched.log_contains("dropped a bad message"));
}

}  // namespace
}  // namespace lrts::testing
