// JournalStore: the scheduler's durable state in one SQLite database (WAL), without threads:
// open it (locked, checked), load what it holds, apply batches of records in a transaction.
// Journal (journal.hpp) runs it on a writer thread; the simulation runs it in memory.
//
// A transaction skips every record of a task that is both submitted and removed within it: a
// task that came and went between two commits never touches the database.
// Not thread-safe: one thread uses a store.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "scheduler/core.hpp"

struct sqlite3;

namespace lrts::scheduler {

struct JournalStats {
  uint64_t transactions = 0;
  uint64_t records = 0;
  uint64_t coalesced = 0;             // records that cancelled out and were never written
  metrics::Histogram commit_seconds;  // one transaction (Journal only)
};

class JournalStore {
 public:
  // The journal in `dir` (created if missing), locked against a second scheduler and checked
  // for damage. `dir` ":memory:" opens a private in-memory database (tests, simulations).
  static Result<std::unique_ptr<JournalStore>> open(const std::string& dir, bool sync_full);
  ~JournalStore();
  JournalStore(const JournalStore&) = delete;
  JournalStore& operator=(const JournalStore&) = delete;

  Result<RecoveredState> load();
  // Applies batches of records (journal_records.hpp) in one transaction.
  Status apply(const std::vector<std::string>& batches, JournalStats* stats);
  const std::string& path() const { return path_; }

 private:
  JournalStore(std::string path, bool sync_full);
  Status init_schema();

  struct Statements;
  std::string path_;
  bool sync_full_;
  UniqueFd lock_;  // the state directory, locked for the life of the store
  struct CloseDb {
    void operator()(sqlite3* db) const;
  };
  std::unique_ptr<sqlite3, CloseDb> db_;
  std::unique_ptr<Statements> stmts_;
};

}  // namespace lrts::scheduler
