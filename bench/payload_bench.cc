// Payloads and mixed task lengths:
//   mixed    — a burst of short tasks, then 8 tasks of 2.5 s on one worker with 4 slots: the
//              makespan of the long ones against the ideal (2 rounds of 2.5 s);
//   large    — one task whose fields are N MiB, then one whose result is N MiB (default 1024):
//              time and rate each way, and the peak memory of the scheduler and the worker;
//   inflight — 4 tasks with 100 MiB results, none collected until all are done: the scheduler's
//              peak memory, with its journal (results spooled to the state directory) and
//              without (results in memory).
//
//   lrts_payload_bench [--mib N] [--short N] [--state-dir DIR] [--json]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <lrts/lrts.hpp>
#include <map>
#include <string>
#include <vector>

#include "bench_cluster.hpp"
#include "bench_json.hpp"
#include "bench_services.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using bench_services::Bytes;
using bench_services::Noop;
using bench_services::Sleep;

// Peak resident memory of a process (VmHWM), in MiB.
double peak_mib(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return -1;
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

lrts::ApplicationInformation info(int port) {
  lrts::ApplicationInformation i;
  i.scheduler_port = port;
  i.track_progress = false;
  return i;
}

bool mixed(int short_tasks, bool json) {
  lrts::bench::LocalCluster cluster(1, 4);
  lrts::ClientApplication app(info(cluster.port));
  app.start_application();
  std::vector<std::string> ids;
  for (int i = 0; i < short_tasks; ++i) ids.push_back(app.schedule_service(Noop{}));
  for (const auto& r : app.wait_for_multi(ids, 120s)) {
    if (!r.ok()) return false;
  }
  ids.clear();
  Sleep s;
  s.ms = 2500;
  const auto t0 = Clock::now();
  for (int i = 0; i < 8; ++i) ids.push_back(app.schedule_service(s));
  for (const auto& r : app.wait_for_multi(ids, 120s)) {
    if (!r.ok()) return false;
  }
  const double makespan = seconds_since(t0), ideal = 5.0;
  if (json) {
    lrts::bench::json_line("lrts", "mixed-makespan", makespan, "s", 8,
                           {{"ideal_s", ideal},
                            {"over_ideal_pct", 100 * (makespan / ideal - 1)},
                            {"short_tasks", short_tasks}});
  } else {
    std::printf(
        "mixed: %d short tasks, then 8 x 2.5 s on 4 slots: %.2f s (ideal %.1f s, +%.1f %%)\n",
        short_tasks, makespan, ideal, 100 * (makespan / ideal - 1));
  }
  app.stop_application();
  return true;
}

bool large(size_t mib, const std::string& state_dir, bool json) {
  std::vector<std::string> flags;
  if (!state_dir.empty()) flags = {"--state-dir", state_dir + "/large"};
  lrts::bench::LocalCluster cluster(1, 1, flags);
  lrts::ClientApplication app(info(cluster.port));
  app.start_application();
  if (!app.wait_for(app.schedule_service(Noop{}), 30s).ok()) return false;  // all up
  const size_t bytes = mib << 20;
  double in_s = 0, out_s = 0;
  {
    Bytes b;
    b.data.assign(bytes, 'f');
    const auto t0 = Clock::now();
    const auto r = app.wait_for(app.schedule_service(b), 600s);
    in_s = seconds_since(t0);
    if (!r.ok()) {
      std::fprintf(stderr, "fields of %zu MiB: %s\n", mib, r.error().c_str());
      return false;
    }
  }
  {
    Bytes b;
    b.result_bytes = static_cast<int64_t>(bytes);
    const auto t0 = Clock::now();
    const auto r = app.wait_for(app.schedule_service(b), 600s);
    out_s = seconds_since(t0);
    if (!r.ok() || r.service_result<std::string>().size() != bytes) {
      std::fprintf(stderr, "result of %zu MiB: %s\n", mib,
                   r.ok() ? "wrong size" : r.error().c_str());
      return false;
    }
  }
  const double sched = peak_mib(cluster.scheduler.pid()),
               worker = peak_mib(cluster.workers[0].pid());
  const double app_peak = peak_mib(::getpid());
  if (json) {
    const std::map<std::string, double> mem = {{"scheduler_peak_mib", sched},
                                               {"worker_peak_mib", worker},
                                               {"application_peak_mib", app_peak},
                                               {"journal", state_dir.empty() ? 0.0 : 1.0}};
    lrts::bench::json_line("lrts", "large-fields", static_cast<double>(mib) / in_s, "MiB/s",
                           static_cast<long long>(mib), mem);
    lrts::bench::json_line("lrts", "large-result", static_cast<double>(mib) / out_s, "MiB/s",
                           static_cast<long long>(mib), mem);
  } else {
    std::printf(
        "large (%s): %zu MiB of fields in %.2f s (%.0f MiB/s); a %zu MiB result in %.2f s "
        "(%.0f MiB/s); peak memory: scheduler %.0f MiB, worker %.0f MiB, application "
        "%.0f MiB\n",
        state_dir.empty() ? "no journal" : "journal", mib, in_s, mib / in_s, mib, out_s,
        mib / out_s, sched, worker, app_peak);
  }
  app.stop_application();
  return true;
}

bool inflight(const std::string& state_dir, bool json) {
  std::vector<std::string> flags;
  if (!state_dir.empty()) flags = {"--state-dir", state_dir + "/inflight"};
  lrts::bench::LocalCluster cluster(1, 4, flags);
  lrts::ClientApplication app(info(cluster.port));
  app.start_application();
  if (!app.wait_for(app.schedule_service(Noop{}), 30s).ok()) return false;  // all up
  const double before = peak_mib(cluster.scheduler.pid());
  Bytes b;
  b.result_bytes = 100 << 20;
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(app.schedule_service(b));
  const auto t0 = Clock::now();
  for (const auto& r : app.wait_for_multi(ids, 600s)) {
    if (!r.ok() || r.service_result<std::string>().size() != (100u << 20)) return false;
  }
  const double took = seconds_since(t0), sched = peak_mib(cluster.scheduler.pid());
  if (json) {
    lrts::bench::json_line(
        "lrts", "inflight-4x100mib-scheduler-peak", sched, "MiB", 4,
        {{"idle_peak_mib", before}, {"seconds", took}, {"journal", state_dir.empty() ? 0.0 : 1.0}});
  } else {
    std::printf(
        "in flight (%s): 4 x 100 MiB results in %.2f s; scheduler peak %.0f MiB (%.0f MiB "
        "before)\n",
        state_dir.empty() ? "no journal" : "journal", took, sched, before);
  }
  app.stop_application();
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = 1024;
  int short_tasks = 2000;
  std::string state_dir;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--mib" && i + 1 < argc) mib = std::stoul(argv[++i]);
    if (f == "--short" && i + 1 < argc) short_tasks = std::stoi(argv[++i]);
    if (f == "--state-dir" && i + 1 < argc) state_dir = argv[++i];
    if (f == "--json") json = true;
  }
  bool ok = mixed(short_tasks, json);
  ok = large(mib, state_dir, json) && ok;
  ok = inflight(state_dir, json) && ok;
  if (!state_dir.empty()) ok = inflight("", json) && ok;  // the same without a journal
  return ok ? 0 : 1;
}
