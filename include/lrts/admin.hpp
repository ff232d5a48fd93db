// Asking a running cluster what it holds, and steering it: what `lrts status`, `lrts workers`,
// `lrts tasks`, `lrts cancel` and `lrts drain` do, from C++.
//
//   lrts::Admin admin;                                   // 127.0.0.1:5555, or AdminOptions
//   lrts::ClusterStatus s = admin.status();              // one round trip, microseconds there
//   for (const lrts::WorkerInfo& w : admin.workers()) ...
//   admin.tasks({.application_id = id, .state = "failed"});
//   admin.cancel({service_id});   admin.drain("host:1234");
//
// The scheduler answers from its own tables (counters, and listings cut at `limit`), so a query
// never slows scheduling measurably. With --auth, the key decides what is seen and allowed:
// admin.key (or viewer.key for queries only) sees every application; an application key sees
// and cancels only its own; drain needs admin.key. Each call throws AdminError with a one-line
// reason when the scheduler cannot be reached within the timeout or refuses. An Admin holds one
// connection; use it from one thread at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace lrts {

struct AdminOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  // Cluster keys (lrts keygen): admin.key, else viewer.key, else application.key is used.
  // Empty: $LRTS_AUTH_DIR if set, else no authentication.
  std::string auth_dir;
  std::chrono::milliseconds timeout{5000};  // for each call
};

class AdminError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `lrts status`: the whole cluster at a glance. Counts of ended tasks are since the scheduler
// started; `json` is the scheduler's whole answer (docs/protocol.md lists its keys).
struct ClusterStatus {
  uint64_t workers = 0;
  uint64_t relays = 0;           // lrts relay processes connected
  uint64_t relayed_workers = 0;  // of workers: those behind a relay
  uint64_t heartbeat_ms = 0;     // the interval workers connected directly are told
  uint64_t slots = 0;
  uint64_t busy_slots = 0;
  uint64_t idle_slots = 0;
  uint64_t queued = 0;
  uint64_t waiting = 0;  // after a restart, waiting for their workers to claim them
  uint64_t running = 0;
  uint64_t finished = 0;
  uint64_t failed = 0;
  uint64_t cancelled = 0;
  uint64_t timed_out = 0;
  uint64_t awaiting_collection = 0;
  uint64_t submitted = 0;
  uint64_t applications = 0;
  uint64_t applications_connected = 0;
  double throughput_per_s = 0;  // tasks ended per second over the last minute
  uint64_t completed_last_minute = 0;
  uint64_t failed_last_minute = 0;
  bool journal_enabled = false;
  std::string journal_path;
  uint64_t journal_backlog = 0;  // records appended, not yet durable
  double uptime_s = 0;
  // The work left, from the run times workers measured per service: seconds of known work, how
  // many unfinished tasks are of services with no finished run yet (not in work_remaining_s),
  // and when it ends at the present slot count (empty: no slot, or nothing known yet).
  double work_remaining_s = 0;
  uint64_t unknown_tasks = 0;
  std::optional<double> finish_in_s;
  std::string json;
};

struct WorkerInfo {
  std::string name;
  std::string host;
  std::string uid;
  uint32_t slots = 0;
  uint32_t running = 0;
  uint32_t held = 0;  // tasks assigned to it (running or waiting there for a slot)
  std::vector<std::string> services;
  double last_heartbeat_s = 0;  // seconds since the scheduler last heard from it
  uint64_t memory_bytes = 0;
  std::string state;  // ok, draining, hoarding
};

struct TaskInfo {
  std::string service_id;
  std::string application_id;
  std::string service;
  // queued, waiting, running, finished, failed, cancelled, timed_out
  std::string state;
  uint32_t attempt = 0;
  uint32_t max_retries = 0;
  std::string worker;
  std::optional<double> run_time_s;
  std::optional<double> wait_s;  // how long it has been queued
  std::string error;
};

struct TaskQuery {
  std::string application_id;  // empty: every application the key may see
  std::string state;           // empty: any; or one of TaskInfo::state, or "done"
  std::string worker;          // empty: any; a worker's name or uid
  uint32_t offset = 0;
  uint32_t limit = 100;  // at most 1,000
};

struct CancelOutcome {
  uint64_t cancelled = 0;
  uint64_t already_done = 0;
  std::vector<std::string> unknown;
};

class Admin {
 public:
  explicit Admin(AdminOptions options = {});
  ~Admin();
  Admin(const Admin&) = delete;
  Admin& operator=(const Admin&) = delete;

  ClusterStatus status();
  std::vector<WorkerInfo> workers(uint32_t offset = 0, uint32_t limit = 1000);
  std::vector<TaskInfo> tasks(const TaskQuery& query = {});
  // Cancels these tasks (they end as cancelled; running attempts are stopped).
  CancelOutcome cancel(const std::vector<std::string>& service_ids);
  CancelOutcome cancel_application(const std::string& application_id);
  // Asks a worker (by name or uid) to drain as on SIGTERM: it takes no new tasks, finishes
  // what runs (or hands it back, per its --on-stop) and exits. Returns the names drained.
  std::vector<std::string> drain(const std::string& worker);

  // Any query as the scheduler's JSON text: `what` is status, workers, worker, applications,
  // tasks, task or failures (docs/protocol.md); `id` names the task or worker for task/worker.
  std::string query_json(std::string_view what, const TaskQuery& query = {},
                         std::string_view id = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lrts
