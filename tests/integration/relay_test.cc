// lrts relay between workers and the scheduler: real processes on loopback, killed with real
// signals.
#include <gtest/gtest.h>
#include <signal.h>

#include <map>
#include <set>

#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

class RelayTest : public ClusterFixture {
 protected:
  static std::string at(int port) { return "127.0.0.1:" + std::to_string(port); }

  ClusterStatus status() { return Admin(cluster_.admin_options()).status(); }
};

TEST_F(RelayTest, TwoRelaysASigkilledOneCostsItsWorkersAReconnectAndEveryResultComesOnce) {
  cluster_.start_scheduler();
  int p1 = 0, p2 = 0;
  Daemon& r1 = cluster_.start_relay(&p1);
  cluster_.start_relay(&p2);
  // Two workers behind each relay, each listing the other relay next.
  cluster_.start_worker_via(at(p1) + "," + at(p2), 2);
  cluster_.start_worker_via(at(p1) + "," + at(p2), 2);
  cluster_.start_worker_via(at(p2) + "," + at(p1), 2);
  cluster_.start_worker_via(at(p2) + "," + at(p1), 2);
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          const ClusterStatus s = status();
          return s.workers == 4 && s.relayed_workers == 4 && s.relays == 2;
        } catch (const AdminError&) {
          return false;
        }
      },
      30s));

  ClientApplication app(info());
  app.start_application();
  std::vector<std::string> ids;
  std::map<std::string, int64_t> want;
  for (int i = 0; i < 120; ++i) {
    test_services::SleepService s;
    s.ms = 150;
    s.value = i;
    ids.push_back(app.schedule_service(s));
    want[ids.back()] = i;
  }
  std::map<std::string, int64_t> got;
  std::set<uint32_t> attempts;
  bool killed = false;
  for (const auto& r : app.as_completed(ids, 120s)) {
    ASSERT_TRUE(r.ok()) << r.service_id() << ": " << r.error();
    ASSERT_TRUE(got.emplace(r.service_id(), r.service_result<int64_t>()).second)
        << r.service_id() << " came twice";
    attempts.insert(r.attempt());
    if (!killed && got.size() == 20) {
      r1.signal(SIGKILL);  // mid-run: its two workers hold running tasks
      killed = true;
    }
  }
  EXPECT_TRUE(killed);
  EXPECT_EQ(got, want);
  // A reconnect, not a retry: the workers said hello at the other relay with what they ran.
  EXPECT_EQ(attempts, (std::set<uint32_t>{1}));
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(cluster_.worker(i).log_contains("trying tcp://" + at(p2)));
  }
  const ClusterStatus s = status();
  EXPECT_EQ(s.workers, 4u);
  EXPECT_EQ(s.relayed_workers, 4u);
  EXPECT_EQ(s.finished, 120u);
  app.stop_application();
}

TEST_F(RelayTest, AWorkerBehindARelayThatRestartsAtTheSameAddressSaysHelloAgainAndKeepsItsTask) {
  cluster_.start_scheduler();
  int port = 0;
  Daemon& relay = cluster_.start_relay(&port);
  cluster_.start_worker_via(at(port), 1);
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return status().relayed_workers == 1;
        } catch (const AdminError&) {
          return false;
        }
      },
      30s));
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 3000;
  s.value = 7;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started));
  relay.signal(SIGKILL);
  ASSERT_GE(relay.wait_exit(), 0);
  // The same port again: libzmq reconnects the worker by itself, so only the new relay, which
  // forwards its heartbeats until it is welcomed, makes the scheduler ask for a hello.
  std::vector<std::string> same = {"--port", std::to_string(port)};
  int unused = 0;
  cluster_.start_relay(&unused, same);
  const auto r = app.wait_for(id, 60s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 7);
  EXPECT_EQ(r.attempt(), 1u);
  EXPECT_TRUE(wait_until(
      [&] { return cluster_.scheduler_logs().find("reconnected") != std::string::npos; }, 20s));
  app.stop_application();
}

TEST_F(RelayTest, RelaysChainAndTheWorkerBehindTwoOfThemRunsTasks) {
  cluster_.start_scheduler();
  int near = 0, far = 0;
  cluster_.start_relay(&near);
  // The far relay's upstream is the near one.
  cluster_.start_relay(&far, {"--scheduler-port", std::to_string(near)});
  cluster_.start_worker_via(at(far), 2);
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          const ClusterStatus s = status();
          return s.relayed_workers == 1 && s.relays == 2;
        } catch (const AdminError&) {
          return false;
        }
      },
      30s));
  ClientApplication app(info());
  app.start_application();
  std::vector<std::string> ids;
  for (int i = 0; i < 50; ++i) {
    test_services::SleepService s;
    s.ms = 1;
    s.value = i;
    ids.push_back(app.schedule_service(s));
  }
  int64_t sum = 0;
  for (const auto& r : app.wait_for_multi(ids, 60s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r.attempt(), 1u);
    sum += r.service_result<int64_t>();
  }
  EXPECT_EQ(sum, 49 * 50 / 2);
  app.stop_application();
}

TEST_F(RelayTest, WithAuthARelayCarriesWorkersAndAWorkerKeyCannotPoseAsARelay) {
  const std::string keys = cluster_.enable_auth();
  cluster_.start_scheduler();
  int port = 0;
  cluster_.start_relay(&port);
  cluster_.start_worker_via(at(port), 2);
  ASSERT_TRUE(wait_until(
      [&] {
        try {
          return status().relayed_workers == 1;
        } catch (const AdminError&) {
          return false;
        }
      },
      30s));
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 10;
  s.value = 3;
  const auto r = app.wait_for(app.schedule_service(s), 60s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 3);
  app.stop_application();
  // A relay started with a worker's key instead of relay.key is refused upstream.
  const std::string fake = dir_.file("fake");
  ASSERT_EQ(run_command({"/bin/cp", "-a", keys, fake}).exit_code, 0);
  ASSERT_EQ(run_command({"/bin/cp", fake + "/worker.key", fake + "/relay.key"}).exit_code, 0);
  int fake_port = 0;
  Daemon& impostor = cluster_.start_relay(&fake_port, {"--auth", fake});
  cluster_.start_worker_via(at(fake_port), 1);
  EXPECT_TRUE(wait_until(
      [&] { return cluster_.scheduler_logs().find("not a relay key") != std::string::npos; }, 20s));
  EXPECT_EQ(status().relayed_workers, 1u);
  EXPECT_TRUE(impostor.running());
}

}  // namespace
}  // namespace lrts::testing
