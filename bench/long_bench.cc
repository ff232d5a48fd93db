// Long tasks: two slots each run a task that spins the CPU for S seconds. lrts's own cost over
// that time — the scheduler, the worker's main process and the application, not the slots that
// run the tasks — should be about nothing: no polling anywhere.
//
//   lrts_long_bench [--seconds S] [--json]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <lrts/lrts.hpp>
#include <string>

#include "bench_cluster.hpp"
#include "bench_json.hpp"
#include "bench_services.hpp"

using bench_services::Spin;

int main(int argc, char** argv) {
  double seconds = 60;
  bool json = false;
  for (int i = 1; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--seconds" && i + 1 < argc) seconds = std::atof(argv[++i]);
    if (f == "--json") json = true;
  }
  lrts::bench::LocalCluster cluster(1, 2);
  lrts::ApplicationInformation info;
  info.scheduler_port = cluster.port;
  info.track_progress = false;
  lrts::ClientApplication app(info);
  app.start_application();
  app.wait_for(app.schedule_service(Spin{}), std::chrono::seconds(30));  // all up

  const int sched = cluster.scheduler.pid(), worker = cluster.workers[0].pid(), self = ::getpid();
  const double s0 = lrts::bench::cpu_seconds(sched), w0 = lrts::bench::cpu_seconds(worker),
               a0 = lrts::bench::cpu_seconds(self);
  Spin spin;
  spin.ms = static_cast<int64_t>(seconds * 1000);
  const auto t0 = std::chrono::steady_clock::now();
  auto results = app.wait_for_multi({app.schedule_service(spin), app.schedule_service(spin)},
                                    std::chrono::seconds(static_cast<int64_t>(seconds * 3 + 60)));
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double ds = lrts::bench::cpu_seconds(sched) - s0,
               dw = lrts::bench::cpu_seconds(worker) - w0, da = lrts::bench::cpu_seconds(self) - a0;
  const double overhead = ds + dw + da;
  for (const auto& r : results) {
    if (!r.ok()) return 1;
  }
  if (json) {
    lrts::bench::json_line("lrts", "long", 100.0 * overhead / (2 * seconds), "% of task CPU", 2,
                           {{"overhead_cpu_s", overhead},
                            {"scheduler_cpu_s", ds},
                            {"worker_main_cpu_s", dw},
                            {"application_cpu_s", da},
                            {"wall_s", wall},
                            {"seconds", seconds}});
  } else {
    std::printf("2 tasks x %.0f s of spinning, wall %.2f s\n", seconds, wall);
    std::printf(
        "  lrts overhead: %.3f CPU s = %.3f%% of the tasks' CPU (scheduler %.3f s, worker "
        "main %.3f s, application %.3f s)\n",
        overhead, 100.0 * overhead / (2 * seconds), ds, dw, da);
  }
  return 0;
}
