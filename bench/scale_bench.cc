// Many workers: starts a scheduler and lrts_sim_workers with N simulated workers (each its own
// connection, heartbeating at 1 Hz, finishing every task at once), then measures
//   - heartbeat handling: the scheduler's CPU over 10 s with no tasks (% of one core);
//   - scheduling throughput: T no-op tasks from an application through those workers.
// With --relays, one `lrts relay` per generator of 10,000 workers carries them (the scheduler
// then holds one connection per relay), and it also measures
//   - the relays' CPU, the scheduler's memory per worker (its RSS with the workers, less its
//     RSS before any joined);
//   - the time for the scheduler to notice 10,000 workers vanishing at once (one generator
//     SIGKILLed: from the kill until lrts status counts them gone).
//
// With --churn PCT, PCT % of the workers leave (saying goodbye; with --crash, by closing their
// connection) and as many join every minute (new ids) while the tasks run, and each task must
// end exactly once.
//
//   lrts_scale_bench --workers N [--capacity C] [--tasks T] [--runs R] [--relays] [--churn PCT]
//                    [--json]
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
#include <unordered_set>
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

long rss_kb_of(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(st, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

// The scheduler's worker count (lrts status), or -1 when it does not answer.
long workers_now(int port) {
  lrts::AdminOptions o;
  o.scheduler_port = port;
  o.timeout = std::chrono::seconds(5);
  try {
    return static_cast<long>(lrts::Admin(o).status().workers);
  } catch (const lrts::AdminError&) {
    return -1;
  }
}

int main(int argc, char** argv) {
  int workers = 10000, capacity = 2048, tasks = 100000, runs = 3;
  bool json = false, relays = false;
  std::string churn = "0";
  bool crash = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--json")
      json = true;
    else if (f == "--relays")
      relays = true;
    else if (i + 1 < argc && f == "--churn")
      churn = argv[++i];
    else if (f == "--crash")
      crash = true;
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
  std::vector<std::string> sched_argv = {
      LRTS_BIN, "scheduler", "--port", std::to_string(port), "--log-level", "warn", "--no-journal"};
  if (!relays) {
    sched_argv.push_back("--worker-timeout");  // 15,000 heartbeats a second may lag
    sched_argv.push_back("30");
  }
  lrts::ChildProcess sched = lrts::bench::start(sched_argv, "/tmp/lrts-bench-scale-scheduler.log");
  while (workers_now(port) < 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const long rss_base_kb = rss_kb_of(sched.pid());
  // Generators of at most 15,000 workers each (a process's descriptors are limited too), or
  // 10,000 behind each relay.
  const int per_generator = relays ? 10000 : 15000;
  std::vector<lrts::ChildProcess> gens, relay_procs;
  std::vector<std::string> gen_logs;
  for (int first = 0, g = 0; first < workers; first += per_generator, ++g) {
    const int n = std::min(per_generator, workers - first);
    int target = port;
    if (relays) {
      target = lrts::bench::free_port();
      relay_procs.push_back(
          lrts::bench::start({LRTS_BIN, "relay", "--port", std::to_string(target),
                              "--scheduler-port", std::to_string(port), "--log-level", "warn"},
                             "/tmp/lrts-bench-scale-relay-" + std::to_string(g) + ".log"));
    }
    gen_logs.push_back("/tmp/lrts-bench-scale-workers-" + std::to_string(g) + ".log");
    gens.push_back(lrts::bench::start(
        {LRTS_SIM_WORKERS, "--port", std::to_string(target), "--workers", std::to_string(n),
         "--first-uid", std::to_string(first + 1), "--capacity", std::to_string(capacity),
         "--seconds", "3600", "--churn", churn, "--crash", crash ? "1" : "0"},
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

  // The scheduler counts them too (a relay's hellos arrive in batches).
  while (workers_now(port) < workers) {
    if (Clock::now() - t0 > std::chrono::seconds(180)) {
      std::fprintf(stderr, "the scheduler counts %ld of %d workers after 180 s\n",
                   workers_now(port), workers);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling lrts status
  }
  const double join_s = seconds_since(t0);

  // Heartbeats only: 10 s of the scheduler's (and relays') CPU.
  std::this_thread::sleep_for(std::chrono::seconds(2));  // let the first heartbeat round settle
  auto relays_cpu = [&] {
    double c = 0;
    for (const auto& r : relay_procs) c += lrts::bench::cpu_seconds(r.pid());
    return c;
  };
  const double c0 = lrts::bench::cpu_seconds(sched.pid()), r0 = relays_cpu();
  std::this_thread::sleep_for(std::chrono::seconds(10));  // the measurement window
  const double hb_pct = 10.0 * (lrts::bench::cpu_seconds(sched.pid()) - c0);
  const double relay_pct = 10.0 * (relays_cpu() - r0);
  const long rss_workers_kb = rss_kb_of(sched.pid());

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
    std::unordered_set<std::string> seen;
    seen.reserve(ids.size());
    for (const auto& res : app.as_completed(ids, std::chrono::seconds(900))) {
      if (!seen.insert(res.service_id()).second) {
        std::fprintf(stderr, "%s ended twice\n", res.service_id().c_str());
        return 1;
      }
      n += res.ok();
    }
    if (n != static_cast<size_t>(tasks)) {
      std::fprintf(stderr, "%zu of %d tasks finished\n", n, tasks);
      return 1;
    }
    rates.push_back(tasks / seconds_since(start));
  }
  app.stop_application();
  std::vector<double> sorted = rates;
  std::sort(sorted.begin(), sorted.end());
  const double median = sorted[sorted.size() / 2];
  const long rss_kb = rss_kb_of(sched.pid());
  const double bytes_per_worker =
      1024.0 * static_cast<double>(rss_workers_kb - rss_base_kb) / workers;
  // 10,000 (one generator) vanish at once: how long until the scheduler counts them gone.
  double vanish_s = -1;
  if (relays && gens.size() > 1 && std::atof(churn.c_str()) == 0) {
    const long before = workers_now(port);
    const int gone = std::min(per_generator, workers);
    const auto k0 = Clock::now();
    gens.back().signal(SIGKILL);
    while (Clock::now() - k0 < std::chrono::seconds(120)) {
      const long n = workers_now(port);
      if (n >= 0 && n <= before - gone) {
        vanish_s = seconds_since(k0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));  // polling lrts status
    }
  }
  for (auto& g : gens) g.signal(SIGTERM);
  for (auto& r : relay_procs) r.signal(SIGTERM);
  sched.signal(SIGTERM);
  if (json) {
    const std::string sys = "lrts (" + std::to_string(workers) + " workers" +
                            (relays ? ", " + std::to_string(relay_procs.size()) + " relays" : "") +
                            ")";
    lrts::bench::json_line(sys, "workers_heartbeat_cpu", hb_pct, "% of a core", workers,
                           {{"connect_s", connect_s},
                            {"join_s", join_s},
                            {"relays", static_cast<double>(relay_procs.size())},
                            {"churn_pct_per_min", std::atof(churn.c_str())},
                            {"churn_crash", crash ? 1.0 : 0.0},
                            {"relay_cpu_pct", relay_pct},
                            {"scheduler_bytes_per_worker", bytes_per_worker},
                            {"vanish_10000_s", vanish_s},
                            {"scheduler_rss_mb", rss_kb / 1024.0},
                            {"capacity", static_cast<double>(capacity)}});
    lrts::bench::json_line(sys, "workers_throughput", median, "tasks/s", tasks,
                           {{"workers", static_cast<double>(workers)},
                            {"capacity", static_cast<double>(capacity)},
                            {"relays", static_cast<double>(relay_procs.size())},
                            {"churn_pct_per_min", std::atof(churn.c_str())},
                            {"churn_crash", crash ? 1.0 : 0.0}},
                           rates);
  } else {
    std::printf(
        "%d simulated workers (capacity %d, %zu relay(s)): connected in %.1f s, counted by the "
        "scheduler in %.1f s; liveness costs the scheduler %.1f%% of a core (relays %.1f%% in "
        "all); %d no-op tasks: %.0f tasks/s (median of %d); scheduler RSS %.0f MB, %.0f bytes "
        "per worker",
        workers, capacity, relay_procs.size(), connect_s, join_s, hb_pct, relay_pct, tasks, median,
        runs, rss_kb / 1024.0, bytes_per_worker);
    if (vanish_s >= 0) std::printf("; 10,000 vanished: noticed in %.1f s", vanish_s);
    std::printf("\n");
  }
  return 0;
}
