// Progress end to end: bars in slot shared memory -> worker sampler -> progress server ->
// application (and the terminal view and `lrts progress`), with real processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <regex>

#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

class ProgressTest : public ClusterFixture {
 protected:
  ApplicationInformation info() const {
    ApplicationInformation i = app_info();
    i.progress_server_port = cluster_.progress_port();
    return i;
  }

  // Runs one task with a bar and waits until the application has seen it finish: the path
  // worker -> progress server -> application is then connected.
  void warm_up() {
    ClientApplication app(info());
    app.start_application();
    test_services::ProgressService svc;
    const std::string id = app.schedule_service(svc);
    ASSERT_TRUE(app.wait_for(id, 30s).ok());
    ASSERT_EQ(final_bars(app, id, 1).size(), 1u) << "progress never reached the application";
  }

  // Bars of `id` as the application sees them, once all of attempt `attempt` (or a later one)
  // are closed — or what there is on timeout.
  static std::vector<ProgressSnapshot> final_bars(ClientApplication& app, const std::string& id,
                                                  size_t expected, uint32_t attempt = 1) {
    std::vector<ProgressSnapshot> bars;
    wait_until(
        [&] {
          bars = app.progress(id);
          if (bars.size() != expected) return false;
          for (const auto& b : bars) {
            if (!b.closed || b.attempt < attempt) return false;
          }
          return true;
        },
        20s);
    return bars;
  }
};

TEST_F(ProgressTest, FinalCountOfEveryBarEqualsWhatTheTaskAdvanced) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::ProgressService svc;
  svc.bars = 4;
  svc.step_ms = 5;
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(app.schedule_service(svc));
  for (const auto& r : app.wait_for_multi(ids, 60s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r.service_result<int64_t>(), 100);  // 10 * (1 + 2 + 3 + 4)
  }
  for (const auto& id : ids) {
    const auto bars = final_bars(app, id, 4);
    ASSERT_EQ(bars.size(), 4u) << id;
    for (uint32_t i = 0; i < 4; ++i) {
      EXPECT_EQ(bars[i].bar, i);
      EXPECT_EQ(bars[i].description, "bar " + std::to_string(i));
      EXPECT_EQ(bars[i].unit, "steps");
      EXPECT_EQ(bars[i].count, 10u * (i + 1)) << id << " bar " << i;
      EXPECT_EQ(bars[i].total, i == 0 ? 20u : 10u * (i + 1)) << id << " bar " << i;
      EXPECT_TRUE(bars[i].closed);
      EXPECT_EQ(bars[i].attempt, 1u);
    }
  }
}

TEST_F(ProgressTest, BarsComeBackAfterTheProgressServerRestarts) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::ProgressService svc;
  svc.bars = 1;
  svc.step_ms = 400;  // 4 s per task
  const std::string id = app.schedule_service(svc);
  ASSERT_TRUE(wait_until([&] {
    auto bars = app.progress(id);
    return !bars.empty() && bars[0].count >= 1;
  }));
  cluster_.progress_server().signal(SIGKILL);
  cluster_.progress_server().wait_exit();
  const uint64_t before = app.progress(id).at(0).count;
  cluster_.start_progress_server();
  // The worker sends its open bars again to the new server; the application re-subscribes.
  EXPECT_TRUE(wait_until([&] {
    auto bars = app.progress(id);
    return !bars.empty() && bars[0].count > before && !bars[0].closed;
  }));
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 10);
  const auto bars = final_bars(app, id, 1);
  ASSERT_EQ(bars.size(), 1u);
  EXPECT_EQ(bars[0].count, 10u);
}

TEST_F(ProgressTest, AStoppedProgressServerDoesNotSlowTasks) {
  cluster_.start_scheduler();
  Daemon& ps = cluster_.start_progress_server();
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  warm_up();
  ps.signal(SIGSTOP);
  test_services::SpinProgressService spin;
  spin.ms = 300;
  std::vector<std::string> ids;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) ids.push_back(app.schedule_service(spin));
  for (const auto& r : app.wait_for_multi(ids, 60s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_GT(r.service_result<int64_t>(), 1000);
  }
  // 4 x 300 ms on 2 slots is ~0.6 s from scheduling to the last result, progress server or
  // not; a worker waiting on the stopped server would take until the test's timeouts. The
  // bound is generous for a busy two-core machine.
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, 3s) << std::chrono::duration<double>(elapsed).count() << " s";
  ps.signal(SIGCONT);
}

TEST_F(ProgressTest, TightLoopsDoNotFloodTheProgressServer) {
  cluster_.start_scheduler();
  Daemon& ps = cluster_.start_progress_server();
  cluster_.start_worker(2);
  warm_up();
  ClientApplication app(info());
  app.start_application();
  test_services::SpinProgressService spin;
  spin.ms = 1000;
  const auto a = app.schedule_service(spin);
  const auto b = app.schedule_service(spin);
  int64_t advances = 0;
  for (const auto& r : app.wait_for_multi({a, b}, 60s)) advances += r.service_result<int64_t>();
  ps.signal(SIGTERM);
  ASSERT_NE(ps.wait_exit(), -1);
  std::smatch m;
  const std::string log = ps.log();
  ASSERT_TRUE(std::regex_search(log, m, std::regex(R"(\((\d+) batches served)")));
  const long batches = std::stol(m[1]);
  // Millions of advances, yet about one batch per 20 ms floor for the two seconds of work.
  EXPECT_GT(advances, 1'000'000);
  EXPECT_LE(batches, 150) << advances << " advances";
  EXPECT_GE(batches, 2);
}

TEST_F(ProgressTest, ARetriedTaskShowsItsNewAttempt) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::CrashService crash;
  crash.crash_attempts = 1;
  const std::string id = app.schedule_service(crash);
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.attempt(), 2u);
  EXPECT_EQ(r.service_result<int64_t>(), 2);
  // The first attempt's bar ends lost before the second's arrives: wait for the second's.
  const auto bars = final_bars(app, id, 1, 2);
  ASSERT_EQ(bars.size(), 1u);
  EXPECT_EQ(bars[0].attempt, 2u);
  EXPECT_EQ(bars[0].description, "attempt 2");
  EXPECT_EQ(bars[0].count, 10u);
}

TEST_F(ProgressTest, TheLiveViewDrawsBarsOnAPseudoTerminal) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(3);
  warm_up();
  const std::string cmd = examples_dir() + "/example_detailed_progress " +
                          std::to_string(cluster_.port()) + " " +
                          std::to_string(cluster_.progress_port()) + " 3 10";
  // script(1) runs the example on a pseudo-terminal and copies what it draws.
  auto r = run_command({"/usr/bin/script", "-qfec", cmd, "/dev/null"}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string& out = r.out;
  EXPECT_NE(out.find("lrts | Stage: Waiting For Results | 00:00:0"), std::string::npos);
  EXPECT_NE(out.find("Doing Work"), std::string::npos);
  EXPECT_NE(out.find("█"), std::string::npos);
  EXPECT_NE(out.find("| 5/5 ["), std::string::npos);  // the finished Loading bars
  EXPECT_NE(out.find("iterations/s]"), std::string::npos);
  EXPECT_NE(out.find("lrts | Stage: Done"), std::string::npos);
  // The status line counts the tasks by outcome.
  EXPECT_NE(out.find(" running · "), std::string::npos) << out;
  EXPECT_NE(out.find("3 ok · 0 failed · 0 running · 0 queued"), std::string::npos) << out;
  // The program's own output came out whole, above the bars.
  EXPECT_EQ(occurrences(out, "finished after"), 3u);
  // Only the escape sequences the view uses: cursor up, clear line/screen, cursor on/off.
  const std::regex allowed(R"(\x1b\[(\d+F|K|J|\?25[lh]))");
  size_t escapes = 0;
  for (size_t at = out.find('\x1b'); at != std::string::npos; at = out.find('\x1b', at + 1)) {
    std::smatch m;
    const std::string rest = out.substr(at, 8);
    ASSERT_TRUE(std::regex_search(rest, m, allowed, std::regex_constants::match_continuous))
        << "unexpected escape sequence at " << at << ": " << rest.substr(1);
    ++escapes;
  }
  EXPECT_GT(escapes, 10u);
}

TEST_F(ProgressTest, WithoutATerminalTheViewPrintsPlainLines) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(3);
  warm_up();
  auto r =
      run_command({examples_dir() + "/example_detailed_progress", std::to_string(cluster_.port()),
                   std::to_string(cluster_.progress_port()), "2", "10"},
                  60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.err.find('\x1b'), std::string::npos);
  EXPECT_NE(r.err.find("[lrts] lrts | Stage: Done"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Doing Work 100% |"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("finished after"), std::string::npos);
}

TEST_F(ProgressTest, TheProgressCommandShowsEveryApplicationOrOne) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  ApplicationInformation i = info();
  i.application_id = "watched-app";
  ClientApplication app(i);
  app.start_application();
  test_services::ProgressService svc;
  svc.bars = 2;
  svc.step_ms = 300;
  const std::string id = app.schedule_service(svc);
  ASSERT_TRUE(wait_until([&] { return app.progress(id).size() == 2; }));
  const std::string port = std::to_string(cluster_.progress_port());
  auto all = run_command({lrts_bin(), "progress", "-port", port, "--seconds", "1.5"}, 30s);
  EXPECT_EQ(all.exit_code, 0) << all.err;
  EXPECT_NE(all.out.find("bar 1"), std::string::npos) << all.out;
  auto mine = run_command({lrts_bin(), "progress", "-port", port, "--application-id", "watched-app",
                           "--seconds", "1.5"},
                          30s);
  EXPECT_NE(mine.out.find("bar 0"), std::string::npos) << mine.out;
  auto other = run_command({lrts_bin(), "progress", "-port", port, "--application-id",
                            "someone-else", "--seconds", "1.5"},
                           30s);
  EXPECT_EQ(other.out.find("bar 0"), std::string::npos) << other.out;
  EXPECT_NE(other.out.find("Watching application someone-else"), std::string::npos) << other.out;
  EXPECT_TRUE(app.wait_for(id, 30s).ok());
}

// Waits until every bar of `id` has `status`; returns the last bars seen.
std::vector<ProgressSnapshot> bars_with_status(ClientApplication& app, const std::string& id,
                                               BarStatus status, std::chrono::milliseconds t) {
  std::vector<ProgressSnapshot> bars;
  wait_until(
      [&] {
        bars = app.progress(id);
        return !bars.empty() && std::all_of(bars.begin(), bars.end(),
                                            [&](const auto& b) { return b.status == status; });
      },
      t);
  return bars;
}

TEST_F(ProgressTest, BarsOfFailedAndCancelledTasksEndSoAndFreeze) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::CrashService failing;
  failing.mode = "throw";
  const std::string f = app.schedule_service(failing);
  test_services::ProgressService slow;
  slow.step_ms = 2000;  // 20 s
  const std::string c = app.schedule_service(slow);
  EXPECT_EQ(app.wait_for(f, 30s).status(), ServiceStatus::failed);
  auto fb = bars_with_status(app, f, BarStatus::failed, 20s);
  ASSERT_EQ(fb.size(), 1u);
  EXPECT_EQ(fb[0].status, BarStatus::failed);
  EXPECT_EQ(fb[0].count, 7u);  // where it stood
  EXPECT_TRUE(fb[0].closed);
  ASSERT_FALSE(bars_with_status(app, c, BarStatus::running, 20s).empty());
  ASSERT_TRUE(app.cancel(c));
  EXPECT_EQ(app.wait_for(c, 30s).status(), ServiceStatus::cancelled);
  auto cb = bars_with_status(app, c, BarStatus::cancelled, 20s);
  ASSERT_EQ(cb.size(), 1u);
  EXPECT_EQ(cb[0].status, BarStatus::cancelled);
  EXPECT_LT(cb[0].count, 10u);
}

TEST_F(ProgressTest, BarsOfAWorkerKilledMidTaskEndLostInsteadOfRunningOn) {
  cluster_.start_scheduler({"--heartbeat-interval", "0.2", "--worker-timeout", "60"});
  cluster_.start_progress_server({"--worker-silence", "3"});
  Daemon& w = cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::ProgressService slow;
  slow.step_ms = 3000;  // 30 s
  std::vector<std::string> ids = {app.schedule_service(slow), app.schedule_service(slow)};
  for (const auto& id : ids)
    ASSERT_FALSE(bars_with_status(app, id, BarStatus::running, 20s).empty());
  w.signal(SIGKILL);
  ASSERT_NE(w.wait_exit(), -1);
  // Within the silence and a push: both bars lost, frozen, no longer counted as running.
  for (const auto& id : ids) {
    auto bars = bars_with_status(app, id, BarStatus::lost, 20s);
    ASSERT_EQ(bars.size(), 1u) << cluster_.logs();
    EXPECT_EQ(bars[0].status, BarStatus::lost);
    EXPECT_TRUE(bars[0].closed);
  }
  EXPECT_TRUE(cluster_.progress_server().log_contains("open bar(s) end lost"));
  for (const auto& id : ids) (void)app.cancel(id);  // whatever is left
}

TEST_F(ProgressTest, TheProgressCommandFindsTasksSubmittedByTheCli) {
  cluster_.start_scheduler();
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  const std::string port = std::to_string(cluster_.port());
  auto sub =
      run_command({lrts_bin(), "submit", "test.progress", "--fields", R"({"bars":1,"step_ms":400})",
                   "--count", "2", "--application-id", "from-the-cli", "--scheduler-port", port},
                  30s);
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  const std::string pport = std::to_string(cluster_.progress_port());
  std::string seen;
  ASSERT_TRUE(wait_until(
      [&] {
        auto r = run_command({lrts_bin(), "progress", "-port", pport, "--application-id",
                              "from-the-cli", "--seconds", "1"},
                             30s);
        seen = r.out;
        return r.exit_code == 0 && r.out.find("bar 0") != std::string::npos;
      },
      30s))
      << seen;
  auto other = run_command({lrts_bin(), "progress", "-port", pport, "--application-id",
                            "someone-else", "--seconds", "1"},
                           30s);
  EXPECT_EQ(other.out.find("bar 0"), std::string::npos) << other.out;
}

TEST_F(ProgressTest, TheProgressCommandSaysWhenNoServerAnswers) {
  auto r = run_command(
      {lrts_bin(), "progress", "-port", std::to_string(free_port()), "--seconds", "4"}, 30s);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("no progress server answers"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("no progress server answered"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lrts::testing
