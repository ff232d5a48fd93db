// What watching a cluster costs it:
//   queries: round trips of `status`, a page of `tasks` and a filtered listing through
//            lrts::Admin, on an empty scheduler and with --queued tasks waiting (no worker);
//   observed: no-op throughput on a local cluster, alternately plain and observed — a dashboard
//            (lrts dashboard) with a client doing what an open page does (its event stream, a
//            page of tasks and of workers on each event) and, if installed, a real Prometheus
//            server scraping the scheduler, the worker and the progress server every second.
//
//   lrts_operate_bench [--queued N] [--queries Q] [--tasks T] [--runs K] [--slots S]
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <lrts/admin.hpp>
#include <lrts/lrts.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_client.hpp"
#include "bench_cluster.hpp"

namespace {

using lrts::bench::Clock;
using lrts::bench::Noop;
using lrts::bench::seconds_since;

struct Figures {
  double p50_us = 0, p99_us = 0, mean_us = 0;
};

template <class F>
Figures time_calls(int n, F call) {
  std::vector<double> us;
  us.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto t = Clock::now();
    call();
    us.push_back(seconds_since(t) * 1e6);
  }
  std::sort(us.begin(), us.end());
  Figures f;
  f.p50_us = us[us.size() / 2];
  f.p99_us = us[static_cast<size_t>(0.99 * static_cast<double>(us.size() - 1))];
  double sum = 0;
  for (double v : us) sum += v;
  f.mean_us = sum / static_cast<double>(us.size());
  return f;
}

void print(const char* what, const Figures& f) {
  std::printf("  %-44s p50 %8.1f us   p99 %8.1f us   mean %8.1f us\n", what, f.p50_us, f.p99_us,
              f.mean_us);
}

void query_costs(int queued, int queries) {
  lrts::bench::LocalCluster cluster(0, 1);
  lrts::AdminOptions ao;
  ao.scheduler_port = cluster.port;
  ao.timeout = std::chrono::seconds(30);
  lrts::Admin admin(ao);
  while (true) {
    try {
      admin.status();
      break;
    } catch (const lrts::AdminError&) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  auto run_all = [&](const char* label) {
    std::printf("%s\n", label);
    print("status", time_calls(queries, [&] { admin.status(); }));
    lrts::TaskQuery page;
    page.limit = 100;
    print("tasks --limit 100 (first page)", time_calls(queries, [&] { admin.tasks(page); }));
    lrts::TaskQuery deep = page;
    deep.offset = 100'000;
    print("tasks --limit 100 --offset 100000",
          time_calls(std::max(1, queries / 10), [&] { admin.tasks(deep); }));
    lrts::TaskQuery none;
    none.state = "running";  // nothing runs: the listing looks at its 200,000 tasks and stops
    print("tasks --state running (none: worst case)",
          time_calls(std::max(1, queries / 10), [&] { admin.tasks(none); }));
  };
  run_all("queries, empty scheduler:");

  lrts::ApplicationInformation info;
  info.scheduler_port = cluster.port;
  info.track_progress = false;
  lrts::ClientApplication app(info);
  app.start_application();
  const auto t0 = Clock::now();
  for (int i = 0; i < queued; ++i) (void)app.schedule_service(Noop());
  if (!app.flush(std::chrono::seconds(600))) {
    std::fprintf(stderr, "the scheduler did not take the tasks\n");
    std::exit(1);
  }
  double rss_mib = 0;
  {
    std::ifstream st("/proc/" + std::to_string(cluster.scheduler.pid()) + "/status");
    for (std::string line; std::getline(st, line);) {
      if (line.rfind("VmRSS:", 0) == 0) rss_mib = std::atof(line.c_str() + 6) / 1024;
    }
  }
  std::printf("(%d tasks queued in %.1f s; scheduler resident %.0f MiB)\n", queued,
              seconds_since(t0), rss_mib);
  char label[96];
  std::snprintf(label, sizeof label, "queries, %d tasks queued:", queued);
  run_all(label);
  const lrts::ClusterStatus s = admin.status();
  std::printf("  (status says %llu queued)\n", static_cast<unsigned long long>(s.queued));
  app.detach_application();
}

// What an open dashboard page asks: its event stream, and a page of tasks and workers on each
// event.
class PageLoad {
 public:
  explicit PageLoad(int port) : port_(port) {
    events_ = std::thread([this] {
      httplib::Client c("127.0.0.1", port_);
      c.set_read_timeout(60, 0);
      c.Get("/events", [this](const char*, size_t) {
        ++events;
        return !stop_.load();
      });
    });
    pages_ = std::thread([this] {
      httplib::Client c("127.0.0.1", port_);
      uint64_t seen = 0;
      while (!stop_.load()) {
        if (events.load() == seen) {
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
          continue;
        }
        seen = events.load();
        c.Get("/api/tasks?limit=50");
        c.Get("/api/workers?limit=50");
        c.Get("/api/applications");
        ++pages;
      }
    });
  }
  ~PageLoad() {
    stop_ = true;
    pages_.join();
    events_.join();
  }
  std::atomic<uint64_t> events{0}, pages{0};

 private:
  int port_;
  std::atomic<bool> stop_{false};
  std::thread events_, pages_;
};

double throughput(lrts::ClientApplication& app, int tasks) {
  std::vector<std::string> ids;
  ids.reserve(static_cast<size_t>(tasks));
  const auto start = Clock::now();
  for (int i = 0; i < tasks; ++i) ids.push_back(app.schedule_service(Noop()));
  size_t n = 0;
  for (const auto& r : app.as_completed(ids, std::chrono::seconds(600))) n += r.ok() ? 1 : 0;
  if (n != static_cast<size_t>(tasks)) {
    std::fprintf(stderr, "only %zu of %d tasks finished\n", n, tasks);
    std::exit(1);
  }
  return tasks / seconds_since(start);
}

void observed_throughput(int tasks, int runs, int slots) {
  const int sm = lrts::bench::free_port(), wm = lrts::bench::free_port(),
            dash = lrts::bench::free_port(), prom = lrts::bench::free_port();
  lrts::bench::LocalCluster cluster(0, slots, {"--metrics-port", std::to_string(sm)}, true);
  // The cluster's worker, with /metrics.
  cluster.workers.push_back(lrts::bench::start(
      {LRTS_BIN, "worker", "--scheduler-port", std::to_string(cluster.port), "--progress-port",
       std::to_string(cluster.progress_port), "--max-jobs", std::to_string(slots), "--service-lib",
       LRTS_BENCH_SERVICES, "--log-level", "warn", "--metrics-port", std::to_string(wm)},
      "/tmp/lrts-bench-worker-0.log"));
  lrts::ApplicationInformation info;
  info.scheduler_port = cluster.port;
  info.track_progress = false;
  lrts::ClientApplication app(info);
  app.start_application();
  throughput(app, 1000);  // warm up

  std::vector<double> plain, observed;
  uint64_t page_loads = 0, scrapes = 0;
  const bool have_prometheus = std::ifstream("/usr/bin/prometheus").good();
  for (int run = 0; run < runs; ++run) {
    plain.push_back(throughput(app, tasks));
    std::printf("  run %d plain:    %8.0f tasks/s\n", run + 1, plain.back());
    lrts::ChildProcess dashboard = lrts::bench::start(
        {LRTS_BIN, "dashboard", "--port", std::to_string(dash), "--scheduler-port",
         std::to_string(cluster.port), "--progress-port", std::to_string(cluster.progress_port)},
        "/tmp/lrts-bench-dashboard.log");
    lrts::ChildProcess prometheus;
    if (have_prometheus) {
      const std::string dir = "/tmp/lrts-bench-prometheus";
      std::system(("rm -rf " + dir + " && mkdir -p " + dir).c_str());
      std::ofstream(dir + "/prometheus.yml")
          << "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: lrts\n"
          << "    static_configs:\n      - targets: ['127.0.0.1:" << sm << "', '127.0.0.1:" << wm
          << "']\n";
      prometheus =
          lrts::bench::start({"/usr/bin/prometheus", "--config.file=" + dir + "/prometheus.yml",
                              "--storage.tsdb.path=" + dir + "/tsdb",
                              "--web.listen-address=127.0.0.1:" + std::to_string(prom)},
                             dir + "/log");
    }
    {
      // The dashboard answers before the run starts.
      httplib::Client probe("127.0.0.1", dash);
      for (int i = 0; i < 200 && !probe.Get("/api/status"); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(25));
      }
      PageLoad page(dash);
      observed.push_back(throughput(app, tasks));
      page_loads += page.pages.load();
    }
    if (have_prometheus) {
      // How many scrapes it made of the two targets during the run.
      httplib::Client q("127.0.0.1", prom);
      if (auto r = q.Get("/api/v1/query?query=sum(count_over_time(up%5B10m%5D))")) {
        // ..."value":[1700000000.1,"12"]}]}}: the number between the last two quotes.
        const auto end = r->body.rfind('"');
        const auto begin = end == std::string::npos ? end : r->body.rfind('"', end - 1);
        if (begin != std::string::npos) {
          scrapes += std::strtoull(r->body.c_str() + begin + 1, nullptr, 10);
        }
      }
      prometheus.signal(SIGTERM);
      prometheus.wait();
    }
    dashboard.signal(SIGTERM);
    dashboard.wait();
    std::printf("  run %d observed: %8.0f tasks/s\n", run + 1, observed.back());
  }
  std::sort(plain.begin(), plain.end());
  std::sort(observed.begin(), observed.end());
  const double p = plain[plain.size() / 2], o = observed[observed.size() / 2];
  std::printf(
      "no-op throughput, median of %d: plain %.0f tasks/s, observed %.0f tasks/s (%+.1f %%); "
      "%llu dashboard page refreshes; Prometheus: %s, %llu scrapes\n",
      runs, p, o, (o / p - 1) * 100, static_cast<unsigned long long>(page_loads),
      have_prometheus ? "scheduler and worker every 1 s" : "not installed",
      static_cast<unsigned long long>(scrapes));
  app.stop_application();
}

}  // namespace

int main(int argc, char** argv) {
  int queued = 1'000'000, queries = 1000, tasks = 100'000, runs = 3, slots = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    const int v = std::atoi(argv[i + 1]);
    if (flag == "--queued") queued = v;
    if (flag == "--queries") queries = v;
    if (flag == "--tasks") tasks = v;
    if (flag == "--runs") runs = v;
    if (flag == "--slots") slots = v;
  }
  query_costs(queued, queries);
  observed_throughput(tasks, runs, slots);
  return 0;
}
