// Journal: the scheduler's JournalSink on a writer thread of its own.
//
// DESIGN
// The event loop appends records (journal_records.hpp) to an in-memory batch and hands the
// batch to the writer thread after each burst (hand_off). The writer waits up to 2 ms for more,
// applies every batch waiting in one transaction (JournalStore, group commit), then publishes how
// many records are durable and wakes the loop through an eventfd; the loop passes that number
// to the core, which only then releases the acknowledgements that depended on those records.
// While one transaction commits, the next batches accumulate, so the commit rate adapts to the
// load by itself.
//
// Ownership: the JournalSink methods, hand_off, committed() and notify_fd() belong to the loop
// thread; the store belongs to the writer thread once start() was called (load() before).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "scheduler/core.hpp"
#include "scheduler/journal_records.hpp"
#include "scheduler/journal_store.hpp"

namespace lrts::scheduler {

struct JournalOptions {
  std::string dir;         // holds lrts-state.db (created if missing)
  bool sync_full = false;  // fsync every commit (survives power loss), not just process death
};

class Journal final : public JournalSink {
 public:
  static Result<std::unique_ptr<Journal>> open(const JournalOptions& options);
  ~Journal() override;

  Result<RecoveredState> load() { return store_->load(); }
  void start();
  // Waits until everything handed off is committed, then stops the writer.
  void stop();

  // JournalSink (the loop thread)
  void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                      std::string_view fields, uint64_t fields_blob, uint32_t max_retries,
                      uint32_t timeout_ms) override {
    records_.task_submitted(key, app_id, name, fields, fields_blob, max_retries, timeout_ms);
  }
  void task_assigned(const TaskKey& key, uint32_t attempt, uint64_t worker_uid) override {
    records_.task_assigned(key, attempt, worker_uid);
  }
  void task_finished(const TaskKey& key, protocol::TaskStatus status, std::string_view payload,
                     uint64_t payload_blob, uint32_t attempt, std::string_view worker,
                     uint64_t run_ns) override {
    records_.task_finished(key, status, payload, payload_blob, attempt, worker, run_ns);
  }
  void task_removed(const TaskKey& key) override { records_.task_removed(key); }
  void app_registered(std::string_view app_id, uint64_t grace_ms, bool detached,
                      std::string_view owner) override {
    records_.app_registered(app_id, grace_ms, detached, owner);
  }
  void app_removed(std::string_view app_id) override { records_.app_removed(app_id); }

  // Gives the records appended since the last call to the writer.
  void hand_off();
  // Records known durable (counted from this process's start).
  uint64_t committed() const { return committed_.load(std::memory_order_acquire); }
  // Readable after a commit; drain with drain_notify().
  int notify_fd() const { return notify_.get(); }
  void drain_notify();
  JournalStats stats() const;
  const std::string& path() const { return store_->path(); }

 private:
  explicit Journal(std::unique_ptr<JournalStore> store) : store_(std::move(store)) {}
  void writer_loop();

  std::unique_ptr<JournalStore> store_;
  records::RecordWriter records_;  // loop thread

  // Shared with the writer.
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<std::string> pending_ LRTS_GUARDED_BY(mu_);
  uint64_t pending_upto_ LRTS_GUARDED_BY(mu_) = 0;
  bool stopping_ LRTS_GUARDED_BY(mu_) = false;
  JournalStats stats_ LRTS_GUARDED_BY(mu_);
  std::atomic<uint64_t> committed_{0};
  UniqueFd notify_;
  std::thread writer_;
};

}  // namespace lrts::scheduler
