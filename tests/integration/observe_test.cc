// Watching a running cluster from outside, with real tools: a Prometheus server scraping every
// daemon's /metrics, the dashboard in headless Chromium (Playwright), JSON log lines.
#include <gtest/gtest.h>
#include <httplib.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lrts/admin.hpp"
#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

using nlohmann::json;

const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout", "2", "--app-timeout", "2"};

std::string http_get(int port, const std::string& path, int* status = nullptr) {
  httplib::Client c("127.0.0.1", port);
  c.set_connection_timeout(2, 0);
  c.set_read_timeout(5, 0);
  auto res = c.Get(path.c_str());
  if (status) *status = res ? res->status : -1;
  return res ? res->body : std::string();
}

class ObserveTest : public ClusterFixture {};

TEST_F(ObserveTest, PrometheusScrapesEveryDaemonAndCountsTheCompletedTasks) {
  const int sm = free_port(), wm = free_port(), pm = free_port(), prom = free_port();
  std::vector<std::string> sched = kFastScheduler;
  sched.insert(sched.end(), {"--metrics-port", std::to_string(sm)});
  cluster_.start_scheduler(sched);
  cluster_.start_progress_server({"--metrics-port", std::to_string(pm)});
  cluster_.start_worker(2, {"--metrics-port", std::to_string(wm)});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  constexpr int kTasks = 37;
  ClientApplication app(info());
  app.start_application();
  std::vector<std::string> ids;
  for (int i = 0; i < kTasks; ++i)
    ids.push_back(app.schedule_service(test_services::NoopService()));
  for (const auto& r : app.wait_for_multi(ids, 30s)) ASSERT_TRUE(r.ok());
  test_services::ThrowingService t;
  t.message = "counted";
  EXPECT_FALSE(app.wait_for(app.schedule_service(t), 20s).ok());

  // The exposition is valid for Prometheus' own checker.
  ASSERT_TRUE(wait_until([&] {
    return http_get(sm, "/metrics").find("lrts_tasks_completed_total{status=\"finished\"} 37") !=
           std::string::npos;
  })) << http_get(sm, "/metrics");
  for (int port : {sm, wm, pm}) {
    const std::string file = dir_.file("metrics-" + std::to_string(port) + ".txt");
    std::ofstream(file) << http_get(port, "/metrics");
    const CommandResult check = run_command({"/bin/sh", "-c", "promtool check metrics < " + file});
    EXPECT_EQ(check.exit_code, 0) << check.out << check.err << read_file(file);
  }
  int status = 0;
  http_get(sm, "/nothing", &status);
  EXPECT_EQ(status, 404);

  // A real Prometheus server scrapes all three every second.
  const std::string config = dir_.file("prometheus.yml");
  std::ofstream(config)
      << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
      << "scrape_configs:\n"
      << "  - job_name: scheduler\n    static_configs:\n      - targets: ['127.0.0.1:" << sm
      << "']\n"
      << "  - job_name: worker\n    static_configs:\n      - targets: ['127.0.0.1:" << wm << "']\n"
      << "  - job_name: progress\n    static_configs:\n      - targets: ['127.0.0.1:" << pm
      << "']\n";
  Daemon prometheus(
      {"/usr/bin/prometheus", "--config.file=" + config, "--storage.tsdb.path=" + dir_.file("tsdb"),
       "--web.listen-address=127.0.0.1:" + std::to_string(prom)},
      dir_.file("prometheus.log"));
  auto query = [&](const std::string& promql) -> std::optional<double> {
    const std::string body =
        http_get(prom, "/api/v1/query?query=" + httplib::detail::encode_query_param(promql));
    const json j = json::parse(body, nullptr, false);
    if (j.is_discarded() || j.value("status", "") != "success") return std::nullopt;
    const json& result = j["data"]["result"];
    if (!result.is_array() || result.empty()) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  };
  std::optional<double> completed;
  ASSERT_TRUE(wait_until(
      [&] {
        completed = query("sum(lrts_tasks_completed_total{status=\"finished\"})");
        return completed.has_value();
      },
      60s))
      << read_file(dir_.file("prometheus.log"));
  EXPECT_EQ(*completed, kTasks);
  EXPECT_EQ(query("lrts_tasks_completed_total{status=\"failed\"}"), 1.0);
  EXPECT_EQ(query("lrts_workers"), 1.0);
  EXPECT_EQ(query("lrts_slots"), 2.0);
  ASSERT_TRUE(wait_until(
      [&] {
        return query("sum(up)") == 3.0 && query("lrts_worker_results_total") >= kTasks + 1.0 &&
               query("lrts_task_run_seconds_count") >= kTasks + 1.0;
      },
      30s));
  EXPECT_GE(query("sum(lrts_messages_received_total{kind=\"worker_heartbeat\"})").value_or(0), 1);
  app.stop_application();
  prometheus.signal(SIGTERM);
  prometheus.wait_exit();
}

TEST_F(ObserveTest, DaemonsLogOneJsonObjectPerLine) {
  std::vector<std::string> sched = kFastScheduler;
  sched.insert(sched.end(), {"--log-format", "json"});
  cluster_.start_scheduler(sched);
  // A name that is not UTF-8 still makes lines that parse.
  cluster_.start_worker(1, {"--log-format", "json", "--name", "bad\xff\x1bname"});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  for (const std::string& log : {cluster_.scheduler().log(), cluster_.worker(0).log()}) {
    std::istringstream in(log);
    int n = 0;
    for (std::string line; std::getline(in, line); ++n) {
      const json j = json::parse(line, nullptr, false);
      ASSERT_TRUE(j.is_object()) << line;
      for (const char* key : {"time", "level", "component", "pid", "message"}) {
        EXPECT_TRUE(j.contains(key)) << key << " in " << line;
      }
    }
    EXPECT_GT(n, 1);
  }
  const CommandResult bad = run_command({lrts_bin(), "scheduler", "--log-format", "xml"});
  EXPECT_EQ(bad.exit_code, 2);
  // A metrics port another daemon holds is an error at start, not a shared port.
  const int taken = free_port();
  Daemon holder({lrts_bin(), "progress-server", "--port", std::to_string(free_port()),
                 "--metrics-port", std::to_string(taken)},
                dir_.file("holder.log"));
  ASSERT_TRUE(wait_until([&] {
    int st = 0;
    http_get(taken, "/metrics", &st);
    return st == 200;
  }));
  const CommandResult clash =
      run_command({lrts_bin(), "scheduler", "--port", std::to_string(free_port()), "--no-journal",
                   "--metrics-port", std::to_string(taken)},
                  20s);
  EXPECT_EQ(clash.exit_code, 2) << clash.err;
  EXPECT_NE(clash.err.find("--metrics-port"), std::string::npos) << clash.err;
}

// Node, Playwright (tests/browser, installed by scripts/setup.sh) and Debian's Chromium.
TEST_F(ObserveTest, TheDashboardShowsWorkersMovingBarsAndFailuresInARealBrowser) {
  const std::string browser_dir = source_dir() + "/tests/browser";
  ASSERT_TRUE(std::filesystem::exists(browser_dir + "/node_modules/playwright-core"))
      << "run scripts/setup.sh (it installs playwright-core into tests/browser)";
  ASSERT_TRUE(std::filesystem::exists("/usr/bin/chromium")) << "apt-get install chromium";
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_progress_server();
  cluster_.start_worker(2);
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  const int port = free_port();
  Daemon dashboard({lrts_bin(), "dashboard", "--port", std::to_string(port), "--scheduler-port",
                    std::to_string(cluster_.port()), "--progress-port",
                    std::to_string(cluster_.progress_port())},
                   dir_.file("dashboard.log"));
  ClientApplication app(info());
  app.start_application();
  test_services::ProgressService p;
  p.bars = 1;
  p.step_ms = 1500;  // 15 s: a bar that moves while the browser looks
  const std::string moving = app.schedule_service(p);
  test_services::ThrowingService t;
  t.message = "cannot open <b>input.csv</b>";
  app.schedule_service(t);
  ASSERT_TRUE(wait_until([&] {
    int status = 0;
    http_get(port, "/api/status", &status);
    return status == 200 && Admin(cluster_.admin_options()).status().failed == 1;
  })) << dashboard.log();
  const std::string shot = dir_.file("dashboard.png");
  const CommandResult r = run_command(
      {"/usr/bin/env", "node", browser_dir + "/dashboard_check.mjs", "--url",
       "http://127.0.0.1:" + std::to_string(port) + "/", "--worker", "worker0", "--error-text",
       "cannot open <b>input.csv</b>", "--task", moving, "--screenshot", shot, "--timeout-s", "60"},
      120s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << dashboard.log();
  EXPECT_TRUE(std::filesystem::exists(shot));
  // The API it used answers the same as the scheduler, and bad requests are refused cleanly.
  const json tasks = json::parse(http_get(port, "/api/tasks?state=failed"));
  ASSERT_EQ(tasks["tasks"].size(), 1u);
  EXPECT_EQ(tasks["tasks"][0]["error"], "cannot open <b>input.csv</b>");
  int status = 0;
  http_get(port, "/api/tasks?limit=abc", &status);
  EXPECT_EQ(status, 400);
  http_get(port, "/api/task?id=ffffffffffffffff-1", &status);
  EXPECT_EQ(status, 404);
  http_get(port, "/api/tasks?state=sleeping", &status);
  EXPECT_EQ(status, 400);
  {
    // A page elsewhere that points its own name at 127.0.0.1 (DNS rebinding) gets nothing.
    httplib::Client c("127.0.0.1", port);
    auto res = c.Get("/api/tasks", {{"Host", "attacker.example"}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403);
  }
  app.stop_application();
  dashboard.signal(SIGTERM);
  EXPECT_EQ(dashboard.wait_exit(), 0);
}

}  // namespace
}  // namespace lrts::testing
