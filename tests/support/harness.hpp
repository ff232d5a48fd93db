// Test support for integration tests: real lrts processes on loopback, free ports, a temporary
// directory per test with one log file per process, and waiting on conditions with deadlines.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <functional>
#include <lrts/client.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.hpp"

namespace lrts::testing {

using namespace std::chrono_literals;

// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port();

// Polls `pred` until it holds or `timeout` passes. Returns whether it held.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 20s);

std::string read_file(const std::string& path);
// How many times `needle` occurs in `haystack` (overlaps counted).
size_t occurrences(std::string_view haystack, std::string_view needle);
// Waits until the file at `path` exists and is not empty.
bool wait_for_file(const std::string& path, std::chrono::milliseconds timeout = 20s);

// A fresh directory under $TMPDIR, removed at the end unless the test failed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// One background process whose stdout and stderr go to a log file.
class Daemon {
 public:
  Daemon() = default;
  Daemon(std::vector<std::string> argv, std::string log_path);
  Daemon(Daemon&&) = default;
  Daemon& operator=(Daemon&&) = default;

  pid_t pid() const { return proc_.pid(); }
  // Started, not reaped, and not a zombie: a daemon that crashed is not running.
  bool running() const;
  void signal(int sig) const { proc_.signal(sig); }
  // Waits for the process to end; returns its wait status, or -1 on timeout.
  int wait_exit(std::chrono::milliseconds timeout = 20s);
  std::string log() const { return read_file(log_path_); }
  const std::string& log_path() const { return log_path_; }
  bool log_contains(const std::string& text) const;

 private:
  ChildProcess proc_;
  std::string log_path_;
};

struct CommandResult {
  int exit_code = -1;  // -1: killed or timed out
  std::string out;
  std::string err;
};

// Runs a command to completion (killed after `timeout`), capturing its output.
CommandResult run_command(const std::vector<std::string>& argv,
                          std::chrono::milliseconds timeout = 60s);

// Pids of the live children of `parent` (from /proc).
std::vector<pid_t> children_of(pid_t parent);
bool process_alive(pid_t pid);
// CPU time (user + system) a process has used, in clock ticks.
long cpu_ticks(pid_t pid);
// A memory figure of a process from /proc/PID/status ("VmRSS", "VmHWM" for the peak), in MiB;
// -1 if the process is gone.
double memory_mib(pid_t pid, const char* field = "VmRSS");

// Memory figures mean nothing under AddressSanitizer (shadow memory, quarantined frees), and
// gigabyte payloads take it minutes.
#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kUnderAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kUnderAddressSanitizer = true;
#else
inline constexpr bool kUnderAddressSanitizer = false;
#endif
#else
inline constexpr bool kUnderAddressSanitizer = false;
#endif

// Paths set by the build.
std::string lrts_bin();
std::string examples_dir();
std::string example_services_lib();
std::string test_services_lib();
std::string test_app();
std::string source_dir();

// A scheduler and workers on a free port in a temp dir. With LRTS_TEST_AUTH=1 in the
// environment every cluster runs with --auth (see enable_auth).
class Cluster {
 public:
  explicit Cluster(TempDir& dir);
  ~Cluster();
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  // Makes the cluster's keys (lrts keygen) and sets LRTS_AUTH_DIR to them in this process, so
  // that every daemon, program and ClientApplication started from now on uses --auth. Returns
  // the key directory.
  const std::string& enable_auth();
  const std::string& auth_dir() const { return auth_dir_; }
  int port() const { return port_; }
  int progress_port() const { return progress_port_; }

  Daemon& start_scheduler(std::vector<std::string> extra = {});
  Daemon& start_progress_server(std::vector<std::string> extra = {});
  Daemon& progress_server() { return progress_server_; }
  Daemon& start_worker(int slots, std::vector<std::string> extra = {});
  // A worker given `addresses` (host:port,...) as its --scheduler-address list.
  Daemon& start_worker_via(const std::string& addresses, int slots,
                           std::vector<std::string> extra = {});
  // An lrts relay on a free port in front of this cluster's scheduler; `port` says which.
  Daemon& start_relay(int* port, std::vector<std::string> extra = {});
  Daemon& relay(size_t i) { return relays_.at(i); }
  Daemon& scheduler() { return scheduler_; }
  Daemon& worker(size_t i) { return workers_.at(i); }
  // Everything the scheduler logged, across restarts.
  std::string scheduler_logs() const;
  // Waits until the scheduler log shows `n` worker registrations in total.
  bool wait_for_workers(size_t n, std::chrono::milliseconds timeout = 20s);
  // Everything logged, for failure messages.
  std::string logs() const;
  // For lrts::Admin: this cluster's scheduler (and its keys with enable_auth).
  AdminOptions admin_options() const;
  // Asks the scheduler (lrts status) until `n` workers are connected.
  bool wait_for_connected(size_t n, std::chrono::milliseconds timeout = 20s);

 private:
  TempDir& dir_;
  int port_;
  int progress_port_;
  std::string auth_dir_;
  Daemon scheduler_;
  int scheduler_starts_ = 0;
  Daemon progress_server_;
  int progress_starts_ = 0;
  std::deque<Daemon> workers_;  // stable references as workers are added
  std::deque<Daemon> relays_;
};

// A test with its own directory and cluster (started by the test); prints every log on failure.
class ClusterFixture : public ::testing::Test {
 protected:
  ClusterFixture() : cluster_(dir_) {}

  void TearDown() override {
    if (HasFailure()) std::fprintf(stderr, "%s\n", cluster_.logs().c_str());
  }

  // An application of this cluster's scheduler.
  ApplicationInformation app_info() const {
    ApplicationInformation i;
    i.scheduler_port = cluster_.port();
    return i;
  }
  // One that does not follow progress, under `id` (empty: a fresh one).
  ApplicationInformation info(const std::string& id = "") const {
    ApplicationInformation i = app_info();
    i.track_progress = false;
    i.application_id = id;
    return i;
  }

  TempDir dir_;
  Cluster cluster_;
};

}  // namespace lrts::testing
