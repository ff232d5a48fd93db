// Journal: the scheduler's durable state in SQLite (WAL), written by a thread of its own.
//
// DESIGN
// The event loop appends records (as a JournalSink) to an in-memory batch encoded with
// MessagePack, and hands the batch to the writer thread after each burst (hand_off). The writer
// waits up to 2 ms for more, applies every batch waiting in one transaction (group commit), then
// publishes how
// many records are durable and wakes the loop through an eventfd; the loop passes that number to
// the core, which only then releases the acknowledgements that depended on those records.
// While one transaction commits, the next batches accumulate, so the commit rate adapts to the
// load by itself. A task that is submitted, finished and acknowledged within the batches of one
// transaction never touches the database: its records cancel out.
//
// The JournalSink methods and hand_off are for the loop thread only; committed() and
// notify_fd() may be used from it too; load() must be called before start().
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "scheduler/core.hpp"

struct sqlite3;

namespace lrts::scheduler {

struct JournalOptions {
  std::string dir;           // holds lrts-state.db (created if missing)
  bool sync_full = false;    // fsync every commit (survives power loss), not just process death
};

struct JournalStats {
  uint64_t transactions = 0;
  uint64_t records = 0;
  uint64_t coalesced = 0;  // records that cancelled out and were never written
};

class Journal final : public JournalSink {
 public:
  static Result<std::unique_ptr<Journal>> open(const JournalOptions& options);
  ~Journal() override;

  Result<RecoveredState> load();
  void start();
  // Waits until everything handed off is committed, then stops the writer.
  void stop();

  // JournalSink
  void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                      std::string_view fields, uint32_t max_retries,
                      uint32_t timeout_ms) override;
  void task_attempts(const TaskKey& key, uint32_t attempts) override;
  void task_finished(const TaskKey& key, protocol::TaskStatus status, std::string_view payload,
                     uint32_t attempt, std::string_view worker, uint64_t run_ns) override;
  void task_removed(const TaskKey& key) override;
  void app_registered(std::string_view app_id, uint64_t grace_ms) override;
  void app_removed(std::string_view app_id) override;

  // Gives the records appended since the last call to the writer.
  void hand_off();
  // Records known durable (counted from this process's start).
  uint64_t committed() const { return committed_.load(std::memory_order_acquire); }
  // Readable after a commit; drain with drain_notify().
  int notify_fd() const { return notify_.get(); }
  void drain_notify();
  JournalStats stats() const;
  const std::string& path() const { return path_; }

 private:
  Journal(std::string path, bool sync_full);
  Status init_schema();
  Status apply(const std::vector<std::string>& batches, JournalStats* stats);
  void writer_loop();

  struct Statements;
  std::string path_;
  bool sync_full_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> stmts_;  // prepared once, used by the writer

  // Loop thread.
  std::string current_;
  uint64_t appended_ = 0;

  // Shared with the writer.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> pending_;
  uint64_t pending_upto_ = 0;
  bool stopping_ = false;
  JournalStats stats_;
  std::atomic<uint64_t> committed_{0};
  UniqueFd notify_;
  std::thread writer_;
};

}  // namespace lrts::scheduler
