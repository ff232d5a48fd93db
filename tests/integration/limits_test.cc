// Daemons at the edge of their resources, on real processes: out of file descriptors.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"
#include "services/mult_service.hpp"
#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

// Plain TCP connections that say nothing: each costs the listener one descriptor.
class ConnectionFlood {
 public:
  ConnectionFlood(int port, int count) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int i = 0; i < count; ++i) {
      const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0) break;
      // Connections past the listener's backlog fail or hang in SYN: either way they are
      // pressure, so a failed connect is kept too.
      ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
      fds_.push_back(fd);
    }
  }
  ~ConnectionFlood() { close(); }
  void close() {
    for (int fd : fds_) ::close(fd);
    fds_.clear();
  }

 private:
  std::vector<int> fds_;
};

long cpu_used_over(pid_t pid, std::chrono::milliseconds window) {
  const long before = cpu_ticks(pid);
  const auto start = std::chrono::steady_clock::now();
  // A measurement window, not a synchronisation.
  wait_until([&] { return std::chrono::steady_clock::now() - start >= window; }, window + 1s);
  return cpu_ticks(pid) - before;
}

class LimitsTest : public ClusterFixture {};

TEST_F(LimitsTest, OnePeerCannotGrowTheSchedulerOrTheProgressServerWithoutBound) {
  if (kUnderAddressSanitizer)
    GTEST_SKIP() << "resident memory is not meaningful under AddressSanitizer";
  Daemon& sched = cluster_.start_scheduler();
  Daemon& ps = cluster_.start_progress_server();
  cluster_.start_worker(1);
  ASSERT_TRUE(cluster_.wait_for_workers(1));
  ASSERT_TRUE(wait_until([&] { return ps.log_contains("listening"); }));
  const double sched_before = memory_mib(sched.pid()), ps_before = memory_mib(ps.pid());
  net::ZmqContext ctx;
  net::ZmqSocket worker_peer(ctx, ZMQ_DEALER), viewer_peer(ctx, ZMQ_DEALER);
  ASSERT_TRUE(worker_peer.connect("tcp://127.0.0.1:" + std::to_string(cluster_.port())).ok());
  ASSERT_TRUE(
      viewer_peer.connect("tcp://127.0.0.1:" + std::to_string(cluster_.progress_port())).ok());
  std::mt19937_64 rng(7);
  auto unique = [&](size_t n) {
    std::string s = std::to_string(rng());
    s.resize(n, 'x');
    return s;
  };
  std::string msg;
  // Worker hellos with ever new names and service lists of the largest allowed size, and
  // subscriptions with ever new sessions and application ids: about 400 MB each if kept.
  for (int i = 0; i < 600; ++i) {
    std::vector<std::string> names;
    for (uint32_t k = 0; k < 1000; ++k) names.push_back(unique(protocol::kMaxNameBytes));
    protocol::WorkerHello hello;
    hello.worker_uid = 1000 + static_cast<uint64_t>(i);
    const std::string name = unique(protocol::kMaxNameBytes);
    hello.name = name;
    hello.slots = 1;
    for (const auto& n : names) hello.services.push_back(n);
    msg.clear();
    protocol::encode(hello, msg);
    worker_peer.send(msg);

    protocol::Subscribe sub;
    const std::string app = unique(protocol::kMaxAppIdBytes);
    sub.application_id = app;
    for (uint32_t k = 0; k < protocol::kMaxSubscribedSessions; ++k) sub.sessions.push_back(rng());
    msg.clear();
    protocol::encode(sub, msg);
    viewer_peer.send(msg);
  }
  // Every hello answered (so all were handled), and the subscriptions too.
  size_t welcomes = 0, updates = 0;
  net::ZmqFrame frame;
  ASSERT_TRUE(wait_until(
      [&] {
        while (worker_peer.recv(frame)) welcomes += frame.size() > 0;
        while (viewer_peer.recv(frame)) updates += frame.size() > 0;
        return welcomes >= 600 && updates >= 600;
      },
      60s))
      << welcomes << " welcomes, " << updates << " updates";
  // Both still answer, and neither kept what it was sent.
  ClientApplication app(app_info());
  app.start_application();
  EXPECT_EQ(
      app.wait_for(app.schedule_service(examples::MultService(3, 4)), 30s).service_result<int>(),
      12);
  EXPECT_TRUE(sched.running());
  EXPECT_TRUE(ps.running());
  EXPECT_LT(memory_mib(sched.pid()) - sched_before, 150) << memory_mib(sched.pid());
  EXPECT_LT(memory_mib(ps.pid()) - ps_before, 150) << memory_mib(ps.pid());
}

TEST_F(LimitsTest, ASchedulerOutOfDescriptorsStaysIdleWarnsOnceAndServesAgain) {
  Daemon scheduler(
      {"prlimit", "--nofile=64", lrts_bin(), "scheduler", "-address", "127.0.0.1", "-port",
       std::to_string(cluster_.port()), "--state-dir", dir_.file("state"), "--log-level", "debug"},
      dir_.file("scheduler.log"));
  cluster_.start_worker(1);
  ClientApplication app(app_info());
  app.start_application();
  ASSERT_TRUE(app.wait_connected(20s)) << scheduler.log();
  ASSERT_TRUE(wait_until([&] { return scheduler.log_contains("registered"); })) << scheduler.log();

  ConnectionFlood flood(cluster_.port(), 200);
  ASSERT_TRUE(wait_until([&] { return scheduler.log_contains("out of file descriptors"); }))
      << scheduler.log();
  // libzmq alone retries the failed accept at once, forever: a full core (about 200 ticks).
  EXPECT_LE(cpu_used_over(scheduler.pid(), 2s), 20);
  EXPECT_TRUE(scheduler.running());
  EXPECT_EQ(occurrences(scheduler.log(), "raise the limit with ulimit -n"), 1u);  // warned once

  // Its peers reconnect when it listens again, and their work goes on.
  const std::string id = app.schedule_service(examples::MultService(6, 7));
  EXPECT_EQ(app.wait_for(id, 30s).service_result<int>(), 42);

  flood.close();
  EXPECT_TRUE(scheduler.log_contains(" again (")) << scheduler.log();
  ClientApplication late(app_info());
  late.start_application();
  ASSERT_TRUE(late.wait_connected(20s)) << scheduler.log();
  const std::string id2 = late.schedule_service(examples::MultService(5, 5));
  EXPECT_EQ(late.wait_for(id2, 30s).service_result<int>(), 25);
}

TEST_F(LimitsTest, AProgressServerOutOfDescriptorsStaysIdleAndServesAgain) {
  Daemon progress({"prlimit", "--nofile=64", lrts_bin(), "progress-server", "-address", "127.0.0.1",
                   "-port", std::to_string(cluster_.progress_port()), "--log-level", "debug"},
                  dir_.file("progress.log"));
  ASSERT_TRUE(wait_until([&] { return progress.log_contains("listening"); })) << progress.log();
  ConnectionFlood flood(cluster_.progress_port(), 200);
  ASSERT_TRUE(wait_until([&] { return progress.log_contains("out of file descriptors"); }))
      << progress.log();
  EXPECT_LE(cpu_used_over(progress.pid(), 2s), 20);
  EXPECT_TRUE(progress.running());
  flood.close();
  // New connections work again: a worker's bars reach an application through it.
  cluster_.start_scheduler();
  cluster_.start_worker(1);
  ApplicationInformation info = app_info();
  info.progress_server_port = cluster_.progress_port();
  ClientApplication app(info);
  app.start_application();
  test_services::ProgressService svc;
  svc.bars = 2;
  svc.step_ms = 300;
  const std::string id = app.schedule_service(svc);
  EXPECT_TRUE(wait_until([&] { return app.progress(id).size() == 2; })) << progress.log();
  EXPECT_TRUE(app.wait_for(id, 30s).ok());
}

}  // namespace
}  // namespace lrts::testing
