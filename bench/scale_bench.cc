// Many workers: starts a scheduler and lrts_sim_workers with N simulated workers (each its own
// connection, heartbeating at 1 Hz, finishing every task at once), then measures
//   - heartbeat handling: the scheduler's CPU over 10 s with no tasks (% of one core);
//   - scheduling throughput: T no-op tasks from an application through those workers.
//
//   lrts_scale_bench --workers N [--capacity C] [--tasks T] [--runs R] [--json]
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <lrts/lrts.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_client.hpp"
#include "bench_cluster.hpp"
#include "bench_json.hpp"

namespace {

using lrts::bench::Clock;
using lrts::bench::Noop;
using lrts::bench::seconds_since;

size_t registered(const std::string& log) {
  std::ifstream in(log);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  return last.empty() ? 0 : std::strtoull(last.c_str(), nullptr, 10);
}

}  // namespace

int main(int argc, char** argv) {
  int workers = 10000, capacity = 2048, tasks = 100000, runs = 3;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--json")
      json = true;
    else if (i + 1 < argc && f == "--workers")
      workers = std::atoi(argv[++i]);
    else if (i + 1 < argc && f == "--capacity")
      capacity = std::atoi(argv[++i]);
    else if (i + 1 < argc && f == "--tasks")
      tasks = std::atoi(argv[++i]);
    else if (i + 1 < argc && f == "--runs")
      runs = std::atoi(argv[++i]);
  }
  // One descriptor per simulated worker, on both sides (root may raise the hard limit).
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_max < static_cast<rlim_t>(workers) + 1024) {
    rl.rlim_max = static_cast<rlim_t>(workers) + 1024;
    if (::setrlimit(RLIMIT_NOFILE, &rl) != 0) {
      ::getrlimit(RLIMIT_NOFILE, &rl);
      std::fprintf(stderr,
                   "note: the open-file limit stays at %llu (no CAP_SYS_RESOURCE); the "
                   "scheduler can hold about that many connections\n",
                   static_cast<unsigned long long>(rl.rlim_max));
    }
  }
  rl.rlim_cur = rl.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &rl);
  const int port = lrts::bench::free_port();
  lrts::ChildProcess sched =
      lrts::bench::start({LRTS_BIN, "scheduler", "--port", std::to_string(port), "--log-level",
                          "warn", "--worker-timeout", "30", "--no-journal"},
                         "/tmp/lrts-bench-scale-scheduler.log");
  // Generators of at most 15,000 workers each (a process's descriptors are limited too).
  constexpr int kPerGenerator = 15000;
  std::vector<lrts::ChildProcess> gens;
  std::vector<std::string> gen_logs;
  for (int first = 0, g = 0; first < workers; first += kPerGenerator, ++g) {
    const int n = std::min(kPerGenerator, workers - first);
    gen_logs.push_back("/tmp/lrts-bench-scale-workers-" + std::to_string(g) + ".log");
    gens.push_back(
        lrts::bench::start({LRTS_SIM_WORKERS, "--port", std::to_string(port), "--workers",
                            std::to_string(n), "--first-uid", std::to_string(first + 1),
                            "--capacity", std::to_string(capacity), "--seconds", "3600"},
                           gen_logs.back()));
  }
  auto all_registered = [&] {
    size_t n = 0;
    for (const auto& log : gen_logs) n += registered(log);
    return n;
  };
  const auto t0 = Clock::now();
  while (all_registered() < static_cast<size_t>(workers)) {
    if (Clock::now() - t0 > std::chrono::seconds(120)) {
      std::fprintf(stderr, "only %zu of %d workers registered within 120 s\n", all_registered(),
                   workers);
      if (json) {
        lrts::bench::json_line("lrts (" + std::to_string(workers) + " workers)",
                               "workers_registered", static_cast<double>(all_registered()),
                               "workers", workers, {}, {}, "not all workers could connect");
      }
      for (auto& g : gens) g.signal(SIGTERM);
      sched.signal(SIGTERM);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // polling the generators' logs
  }
  const double connect_s = seconds_since(t0);

  // Heartbeats only: 10 s of the scheduler's CPU.
  std::this_thread::sleep_for(std::chrono::seconds(2));  // let the first heartbeat round settle
  const double c0 = lrts::bench::cpu_seconds(sched.pid());
  std::this_thread::sleep_for(std::chrono::seconds(10));  // the measurement window
  const double hb_pct = 10.0 * (lrts::bench::cpu_seconds(sched.pid()) - c0);

  lrts::ApplicationInformation info;
  info.scheduler_port = port;
  info.track_progress = false;
  lrts::ClientApplication app(info);
  app.start_application();
  std::vector<double> rates;
  for (int r = 0; r < runs; ++r) {
    std::vector<std::string> ids;
    ids.reserve(static_cast<size_t>(tasks));
    const auto start = Clock::now();
    for (int i = 0; i < tasks; ++i) ids.push_back(app.schedule_service(Noop{}));
    size_t n = 0;
    for (const auto& res : app.as_completed(ids, std::chrono::seconds(600))) n += res.ok();
    if (n != static_cast<size_t>(tasks)) return 1;
    rates.push_back(tasks / seconds_since(start));
  }
  app.stop_application();
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  long rss_kb = 0;
  {
    std::ifstream st("/proc/" + std::to_string(sched.pid()) + "/status");
    std::string line;
    while (std::getline(st, line)) {
      if (line.rfind("VmRSS:", 0) == 0) rss_kb = std::stol(line.substr(6));
    }
  }
  for (auto& g : gens) g.signal(SIGTERM);
  sched.signal(SIGTERM);
  if (json) {
    const std::string sys = "lrts (" + std::to_string(workers) + " workers)";
    lrts::bench::json_line(sys, "workers_heartbeat_cpu", hb_pct, "% of a core", workers,
                           {{"connect_s", connect_s},
                            {"scheduler_rss_mb", rss_kb / 1024.0},
                            {"capacity", static_cast<double>(capacity)}});
    lrts::bench::json_line(
        sys, "workers_throughput", median, "tasks/s", tasks,
        {{"workers", static_cast<double>(workers)}, {"capacity", static_cast<double>(capacity)}},
        rates);
  } else {
    std::printf(
        "%d simulated workers (capacity %d): connected in %.1f s; heartbeats cost the "
        "scheduler %.1f%% of a core; %d no-op tasks: %.0f tasks/s (median of %d); "
        "scheduler RSS %.0f MB\n",
        workers, capacity, connect_s, hb_pct, tasks, median, runs, rss_kb / 1024.0);
  }
  return 0;
}
