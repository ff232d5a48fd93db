// End-to-end figures on a local cluster of real processes:
//   throughput: N no-op tasks scheduled at once, until the last result is in the application;
//   round trip: one task at a time, schedule -> result in the application (p50, p99).
//
//   lrts_e2e_bench [--tasks N] [--workers W] [--slots S] [--round-trips R] [--runs K]
//                  [--state-dir DIR]   (journal on: the scheduler writes its state to DIR)
//                  [--workload NAME]   (name of the throughput figure in --json output)
//                  [--external-port P] (use a scheduler already running on port P, with its
//                                       workers, e.g. lrts_sim_workers; starts nothing)
//                  [--auth DIR]        (every connection with CURVE: keys from lrts keygen DIR)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <lrts/lrts.hpp>
#include <memory>
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

}  // namespace

int main(int argc, char** argv) {
  int tasks = 100'000, workers = 1, slots = 2, round_trips = 2000, runs = 3;
  std::vector<std::string> scheduler_args;
  int external_port = 0;
  bool json = false;
  std::string workload = "noop_throughput";
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--json") json = true;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--json") {
      --i;  // a flag without a value
      continue;
    }
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--state-dir") {
      scheduler_args = {"--state-dir", argv[i + 1]};
      continue;
    }
    if (flag == "--auth") {
      ::setenv("LRTS_AUTH_DIR", argv[i + 1], 1);  // the daemons and the application use it
      continue;
    }
    if (flag == "--workload") {
      workload = argv[i + 1];
      continue;
    }
    if (flag == "--tasks")
      tasks = v;
    else if (flag == "--workers")
      workers = v;
    else if (flag == "--slots")
      slots = v;
    else if (flag == "--round-trips")
      round_trips = v;
    else if (flag == "--runs")
      runs = v;
    else if (flag == "--external-port")
      external_port = v;
  }
  std::unique_ptr<lrts::bench::LocalCluster> cluster;
  if (!external_port) {
    cluster = std::make_unique<lrts::bench::LocalCluster>(workers, slots, scheduler_args);
  }
  lrts::ApplicationInformation info;
  info.scheduler_port = external_port ? external_port : cluster->port;
  info.track_progress = false;
  lrts::ClientApplication app(info);
  app.start_application();
  // Warm up: the cluster is up and every slot has run something.
  {
    std::vector<std::string> ids;
    for (int i = 0; i < 100; ++i) ids.push_back(app.schedule_service(Noop()));
    for (const auto& r : app.wait_for_multi(ids, std::chrono::seconds(60))) {
      if (!r.ok()) return 1;
    }
  }

  std::vector<double> rates;
  for (int run = 0; run < runs; ++run) {
    std::vector<std::string> ids;
    ids.reserve(static_cast<size_t>(tasks));
    const auto start = Clock::now();
    for (int i = 0; i < tasks; ++i) ids.push_back(app.schedule_service(Noop()));
    const double submit_s = seconds_since(start);
    size_t n = 0;
    for (const auto& r : app.as_completed(ids, std::chrono::seconds(600))) n += r.ok() ? 1 : 0;
    const double total_s = seconds_since(start);
    if (n != static_cast<size_t>(tasks)) {
      std::fprintf(stderr, "only %zu of %d tasks finished\n", n, tasks);
      return 1;
    }
    rates.push_back(tasks / total_s);
    if (!json) {
      std::printf(
          "throughput run %d: %d no-op tasks in %.3f s = %.0f tasks/s (schedule_service "
          "calls took %.3f s)\n",
          run + 1, tasks, total_s, tasks / total_s, submit_s);
    }
  }
  std::vector<double> run_rates = rates;
  std::sort(rates.begin(), rates.end());

  std::vector<double> rtt_us{0};
  if (round_trips > 0) rtt_us.clear();
  rtt_us.reserve(static_cast<size_t>(round_trips));
  for (int i = 0; i < round_trips; ++i) {
    const auto start = Clock::now();
    const std::string id = app.schedule_service(Noop());
    app.wait_for(id, std::chrono::seconds(30));
    rtt_us.push_back(seconds_since(start) * 1e6);
  }
  std::sort(rtt_us.begin(), rtt_us.end());
  auto pct = [&](double p) { return rtt_us[static_cast<size_t>(p * (rtt_us.size() - 1))]; };
  app.stop_application();

  if (json) {
    std::string sys = scheduler_args.empty() ? "lrts (journal off)" : "lrts";
    if (std::getenv("LRTS_AUTH_DIR")) sys += " --auth";
    lrts::bench::json_line(
        sys, workload, rates[rates.size() / 2], "tasks/s", tasks,
        {{"workers", static_cast<double>(workers)}, {"slots", static_cast<double>(slots)}},
        run_rates);
    if (round_trips > 0) {
      lrts::bench::json_line(sys, "round_trip", pct(0.5) / 1000, "ms", round_trips,
                             {{"p50_ms", pct(0.5) / 1000},
                              {"p99_ms", pct(0.99) / 1000},
                              {"p90_ms", pct(0.9) / 1000},
                              {"max_ms", rtt_us.back() / 1000}});
    }
    return 0;
  }
  std::printf("\nlrts end to end, %d worker(s) x %d slot(s), %u cores, journal %s\n", workers,
              slots, std::thread::hardware_concurrency(), scheduler_args.empty() ? "off" : "on");
  std::printf("  throughput (median of %d): %.0f tasks/s for %d no-op tasks\n", runs,
              rates[rates.size() / 2], tasks);
  std::printf("  round trip of one task: p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n",
              pct(0.5), pct(0.9), pct(0.99), rtt_us.back());
  return 0;
}
