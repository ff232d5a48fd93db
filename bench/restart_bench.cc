// Scheduler restart with many queued tasks, journal on:
//   - submit rate of N small tasks (no workers: they stay queued) until all are durable;
//   - scheduler resident memory per queued task;
//   - SIGKILL, restart on the same state directory, time until it serves again (a new
//     application is welcomed).
//
//   lrts_restart_bench [--tasks N ...]     default: 100000 1000000
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <lrts/lrts.hpp>
#include <string>
#include <vector>

#include "bench_client.hpp"
#include "bench_cluster.hpp"
#include "bench_json.hpp"

namespace {

using lrts::bench::Clock;
using lrts::bench::Noop;
using lrts::bench::seconds_since;

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

lrts::ChildProcess start_scheduler(int port, const std::string& dir) {
  return lrts::bench::start({LRTS_BIN, "scheduler", "--port", std::to_string(port), "--state-dir",
                             dir, "--log-level", "info"},
                            "/tmp/lrts-bench-restart-scheduler.log");
}

bool serving(int port, double* seconds) {
  const auto t0 = Clock::now();
  lrts::ApplicationInformation info;
  info.scheduler_port = port;
  info.track_progress = false;
  lrts::ClientApplication probe(info);
  probe.start_application();
  const bool ok = probe.wait_connected(std::chrono::seconds(120));
  *seconds = seconds_since(t0);
  probe.detach_application();
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int> sizes;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") json = true;
    if (std::string(argv[i]) == "--tasks" && i + 1 < argc) sizes.push_back(std::atoi(argv[++i]));
  }
  if (sizes.empty()) sizes = {100'000, 1'000'000};
  if (!json) {
    std::printf("%10s %14s %16s %16s %14s\n", "queued", "submit/s", "sched bytes/task",
                "restart->serve", "db size MB");
  }
  for (int n : sizes) {
    const std::string dir = "/tmp/lrts-bench-restart-state";
    std::filesystem::remove_all(dir);
    const int port = lrts::bench::free_port();
    lrts::ChildProcess sched = start_scheduler(port, dir);
    double t_serve = 0;
    if (!serving(port, &t_serve)) return 1;
    const long rss_before = rss_kb(sched.pid());

    double submit_rate = 0;
    {
      lrts::ApplicationInformation info;
      info.scheduler_port = port;
      info.application_id = "restart-bench";
      info.track_progress = false;
      lrts::ClientApplication app(info);
      app.start_application();
      const auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) app.schedule_service(Noop{});
      if (!app.flush(std::chrono::seconds(600))) return 1;  // all journaled and acknowledged
      submit_rate = n / seconds_since(t0);
      app.detach_application();  // the tasks stay queued
    }
    const long rss_after = rss_kb(sched.pid());
    sched.signal(SIGKILL);
    sched.wait();

    const auto t0 = Clock::now();
    lrts::ChildProcess again = start_scheduler(port, dir);
    double probe_s = 0;
    if (!serving(port, &probe_s)) return 1;
    const double restart_s = seconds_since(t0);
    double db_mb = 0;
    for (const auto& f : std::filesystem::directory_iterator(dir)) {
      db_mb += static_cast<double>(std::filesystem::file_size(f.path())) / (1 << 20);
    }
    const double bytes = 1024.0 * static_cast<double>(rss_after - rss_before) / n;
    if (json) {
      lrts::bench::json_line("lrts", "submit", submit_rate, "tasks/s", n,
                             {{"bytes_per_task", bytes}, {"journal_mb", db_mb}}, {},
                             "rate until every task is durable; memory: scheduler RSS growth");
      lrts::bench::json_line("lrts", "restart", restart_s, "s", n, {});
    } else {
      std::printf("%10d %14.0f %16.0f %14.2f s %14.1f\n", n, submit_rate, bytes, restart_s, db_mb);
    }
    std::fflush(stdout);
    again.signal(SIGTERM);
    again.wait();
  }
  if (!json) {
    std::printf(
        "(bytes/task: scheduler resident memory growth per queued task; payload is 1 "
        "byte)\n");
  }
  return 0;
}
