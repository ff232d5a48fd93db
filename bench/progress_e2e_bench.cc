// Progress end to end on a local cluster (scheduler, progress server, one worker, two slots):
//   1. message rate: two tasks advance bars in tight loops; how many batches reach the
//      progress server per second, against how many advances the tasks made;
//   2. latency: a task publishes the monotonic clock as its bar's count; the application's
//      progress callback sees how old each value is (advance -> application, p50/p99).
//
//   lrts_progress_bench [--seconds S] [--tasks T] [--json]
//   (T tasks advance in tight loops on T slots; default 2)
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <lrts/lrts.hpp>
#include <mutex>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "bench_cluster.hpp"
#include "bench_json.hpp"
#include "bench_services.hpp"

namespace {

using bench_services::SpinProgress;
using ClockService = bench_services::Clock;

int64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  int seconds = 5, tasks = 2;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--json")
      json = true;
    else if (f == "--seconds" && i + 1 < argc)
      seconds = std::atoi(argv[++i]);
    else if (f == "--tasks" && i + 1 < argc)
      tasks = std::atoi(argv[++i]);
  }
  lrts::bench::LocalCluster cluster(1, tasks, {}, true);
  lrts::ApplicationInformation info;
  info.scheduler_port = cluster.port;
  info.progress_server_port = cluster.progress_port;
  lrts::ClientApplication app(info);

  std::mutex mu;
  std::vector<double> latency_ms;
  size_t updates = 0;
  app.on_progress([&](const std::vector<lrts::ProgressSnapshot>& changed) {
    const int64_t t = now_us();
    std::lock_guard lock(mu);
    for (const auto& b : changed) {
      ++updates;
      if (b.description == "clock" && !b.closed && b.count > 0) {
        latency_ms.push_back(static_cast<double>(t - static_cast<int64_t>(b.count)) / 1000.0);
      }
    }
  });
  app.start_application();
  // Warm up: the whole path is connected.
  app.wait_for(app.schedule_service(ClockService{}), std::chrono::seconds(30));

  // 1. Message rate under two tight loops.
  SpinProgress spin;
  spin.ms = seconds * 1000;
  std::vector<std::string> spinning;
  for (int i = 0; i < tasks; ++i) spinning.push_back(app.schedule_service(spin));
  int64_t advances = 0;
  for (const auto& r : app.wait_for_multi(spinning, std::chrono::seconds(seconds * 4 + 60))) {
    advances += r.service_result<int64_t>();
  }

  // 2. Latency from advance to the application.
  {
    std::lock_guard lock(mu);
    latency_ms.clear();
    updates = 0;
  }
  ClockService clock;
  clock.ms = seconds * 1000;
  app.wait_for(app.schedule_service(clock), std::chrono::seconds(seconds * 4 + 30));
  app.stop_application();

  cluster.progress_server.signal(SIGTERM);
  cluster.progress_server.wait();
  std::smatch m;
  const std::string log = slurp(lrts::bench::LocalCluster::kProgressLog);
  long batches = -1;
  if (std::regex_search(log, m, std::regex(R"(\((\d+) batches served)"))) batches = std::stol(m[1]);

  std::sort(latency_ms.begin(), latency_ms.end());
  auto pct = [&](double p) {
    return latency_ms.empty() ? -1.0 : latency_ms[static_cast<size_t>(p * (latency_ms.size() - 1))];
  };
  // Batches over the whole run: warm-up, the spinning tasks, and the clock task.
  const double run_s = 3.0 * seconds;
  if (json) {
    lrts::bench::json_line("lrts", "progress_batches", static_cast<double>(batches) / run_s,
                           "batches/s", tasks,
                           {{"advances_per_s", static_cast<double>(advances) / seconds},
                            {"batches", static_cast<double>(batches)}});
    lrts::bench::json_line("lrts", "progress_latency", pct(0.5), "ms",
                           static_cast<long long>(latency_ms.size()),
                           {{"p50_ms", pct(0.5)}, {"p99_ms", pct(0.99)}});
    return 0;
  }
  std::printf("progress, 1 worker x %d slots, %d s per phase\n", tasks, seconds);
  std::printf(
      "  %d tight loops: %.0f advances/s in total; progress server received %ld batches "
      "in ~%.0f s of progress (%.1f batches/s)\n",
      tasks, static_cast<double>(advances) / seconds, batches, run_s,
      static_cast<double>(batches) / run_s);
  std::printf("  advance -> application: p50 %.1f ms, p99 %.1f ms, max %.1f ms over %zu updates\n",
              pct(0.5), pct(0.99), latency_ms.empty() ? -1.0 : latency_ms.back(),
              latency_ms.size());
  return 0;
}
