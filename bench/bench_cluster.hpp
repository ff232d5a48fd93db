// Starts a local lrts cluster (scheduler + workers as real processes) for benchmarks.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "common/unique_fd.hpp"

namespace lrts::bench {

inline int free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

inline ChildProcess start(std::vector<std::string> argv, const std::string& log) {
  UniqueFd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  SpawnOptions so;
  so.argv = std::move(argv);
  so.fds = {{out.get(), 1}, {out.get(), 2}};
  auto child = ChildProcess::spawn(so);
  if (!child) {
    std::fprintf(stderr, "%s\n", child.error().c_str());
    std::exit(1);
  }
  return std::move(*child);
}

struct LocalCluster {
  int port = free_port();
  int progress_port = free_port();
  ChildProcess scheduler;
  ChildProcess progress_server;
  std::vector<ChildProcess> workers;
  static constexpr const char* kProgressLog = "/tmp/lrts-bench-progress.log";

  LocalCluster(int n_workers, int slots, const std::vector<std::string>& scheduler_extra = {},
               bool with_progress_server = false) {
    std::vector<std::string> s = {LRTS_BIN,      "scheduler", "--port", std::to_string(port),
                                  "--log-level", "warn"};
    s.insert(s.end(), scheduler_extra.begin(), scheduler_extra.end());
    // Benchmarks say which journal they measure: --state-dir DIR, or none.
    if (std::find(s.begin(), s.end(), "--state-dir") == s.end()) s.push_back("--no-journal");
    scheduler = start(s, "/tmp/lrts-bench-scheduler.log");
    if (with_progress_server) {
      progress_server = start({LRTS_BIN, "progress-server", "--port", std::to_string(progress_port),
                               "--log-level", "info"},
                              kProgressLog);
    }
    for (int i = 0; i < n_workers; ++i) {
      workers.push_back(
          start({LRTS_BIN, "worker", "--scheduler-port", std::to_string(port), "--progress-port",
                 std::to_string(progress_port), "--max-jobs", std::to_string(slots),
                 "--service-lib", LRTS_BENCH_SERVICES, "--log-level", "warn", "--name",
                 "bench-worker-" + std::to_string(i)},
                "/tmp/lrts-bench-worker-" + std::to_string(i) + ".log"));
    }
  }
};

}  // namespace lrts::bench
