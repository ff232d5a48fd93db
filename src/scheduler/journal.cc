#include "scheduler/journal.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <unistd.h>

#include <bit>
#include <filesystem>
#include <unordered_set>

#include "common/log.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::scheduler {

namespace {

constexpr int kSchemaVersion = 1;
constexpr auto kCommitWindow = std::chrono::milliseconds(2);
constexpr size_t kBatchesPerCommit = 64;  // a busy loop fills a transaction sooner

enum RecordKind : uint8_t {
  kSubmit = 0,
  kAttempts = 1,
  kFinish = 2,
  kRemove = 3,
  kApp = 4,
  kAppRemove = 5,
};

// Starts a task's record in `out`: [kind, session, seq, then `more` fields].
protocol::mp::Writer task_record(std::string& out, RecordKind kind, const TaskKey& key, uint32_t more) {
  protocol::mp::Writer w(out);
  w.array(3 + more);
  w.uint(kind);
  w.uint(key.session);
  w.uint(key.seq);
  return w;
}

int64_t to_db(uint64_t v) { return std::bit_cast<int64_t>(v); }
uint64_t from_db(int64_t v) { return std::bit_cast<uint64_t>(v); }

std::string sql_error(sqlite3* db, const char* what) {
  return std::string(what) + ": " + (db ? sqlite3_errmsg(db) : "out of memory");
}

// A prepared statement, reset after each use.
class Stmt {
 public:
  Stmt() = default;
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }
  Status prepare(sqlite3* db, const char* sql) {
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &s_, nullptr) != SQLITE_OK) {
      return make_error(sql_error(db, "prepare"));
    }
    return {};
  }
  Stmt& i64(int idx, int64_t v) {
    sqlite3_bind_int64(s_, idx, v);
    return *this;
  }
  Stmt& text(int idx, std::string_view v) {
    sqlite3_bind_text(s_, idx, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
    return *this;
  }
  Stmt& blob(int idx, std::string_view v) {
    sqlite3_bind_blob(s_, idx, v.empty() ? "" : v.data(), static_cast<int>(v.size()),
                      SQLITE_STATIC);
    return *this;
  }
  bool run() {
    const int rc = sqlite3_step(s_);
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
    return rc == SQLITE_DONE || rc == SQLITE_ROW;
  }
  sqlite3_stmt* get() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
};

std::string_view column_text(sqlite3_stmt* s, int i) {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : "";
}

std::string_view column_blob(sqlite3_stmt* s, int i) {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(s, i));
  return p ? std::string_view(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : "";
}

}  // namespace

struct Journal::Statements {
  Stmt submit, attempts, finish, remove, app, app_remove;
};

Journal::Journal(std::string path, bool sync_full) : path_(std::move(path)), sync_full_(sync_full) {}

Result<std::unique_ptr<Journal>> Journal::open(const JournalOptions& options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return make_error("cannot create state directory " + options.dir + ": " + ec.message());
  // One scheduler per state directory.
  const std::string lock_path = options.dir + "/lrts-state.lock";
  const int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock_fd < 0) return make_error("cannot open " + lock_path);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return make_error("state directory " + options.dir + " is in use by another scheduler");
  }  // the descriptor stays open (and locked) for the life of the process

  std::unique_ptr<Journal> j(new Journal(options.dir + "/lrts-state.db", options.sync_full));
  j->notify_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (sqlite3_open_v2(j->path_.c_str(), &j->db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      nullptr) != SQLITE_OK) {
    return make_error(sql_error(j->db_, ("cannot open " + j->path_).c_str()));
  }
  if (auto s = j->init_schema(); !s) return Error{s.error()};
  return j;
}

Status Journal::init_schema() {
  const std::string pragmas = std::string("PRAGMA journal_mode=WAL;") +
                              (sync_full_ ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;") +
                              "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384;";
  if (sqlite3_exec(db_, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_, "configure journal"));
  }
  sqlite3_stmt* v = nullptr;
  sqlite3_prepare_v2(db_, "PRAGMA user_version", -1, &v, nullptr);
  int version = 0;
  if (v && sqlite3_step(v) == SQLITE_ROW) version = sqlite3_column_int(v, 0);
  sqlite3_finalize(v);
  if (version != 0 && version != kSchemaVersion) {
    return make_error(path_ + " has state format " + std::to_string(version) +
                      "; this lrts reads format " + std::to_string(kSchemaVersion));
  }
  const char* schema =
      "CREATE TABLE IF NOT EXISTS apps(app TEXT PRIMARY KEY, grace_ms INTEGER NOT NULL) "
      "WITHOUT ROWID;"
      "CREATE TABLE IF NOT EXISTS tasks(session INTEGER NOT NULL, seq INTEGER NOT NULL, "
      "app TEXT NOT NULL, name TEXT NOT NULL, fields BLOB NOT NULL, "
      "max_retries INTEGER NOT NULL, timeout_ms INTEGER NOT NULL, "
      "attempts INTEGER NOT NULL DEFAULT 0, status INTEGER, result BLOB, worker TEXT, "
      "run_ns INTEGER, PRIMARY KEY(session, seq)) WITHOUT ROWID;";
  if (sqlite3_exec(db_, schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_, "create journal tables"));
  }
  sqlite3_exec(db_, ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(), nullptr,
               nullptr, nullptr);
  auto st = std::make_unique<Statements>();
  for (auto [stmt, sql] : std::initializer_list<std::pair<Stmt*, const char*>>{
           {&st->submit,
            "INSERT OR REPLACE INTO tasks(session, seq, app, name, fields, max_retries, "
            "timeout_ms, attempts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)"},
           {&st->attempts, "UPDATE tasks SET attempts=?3 WHERE session=?1 AND seq=?2"},
           {&st->finish,
            "UPDATE tasks SET status=?3, result=?4, attempts=?5, worker=?6, run_ns=?7, "
            "fields=x'' WHERE session=?1 AND seq=?2"},
           {&st->remove, "DELETE FROM tasks WHERE session=?1 AND seq=?2"},
           {&st->app, "INSERT OR REPLACE INTO apps(app, grace_ms) VALUES(?1, ?2)"},
           {&st->app_remove, "DELETE FROM apps WHERE app=?1"}}) {
    if (auto s = stmt->prepare(db_, sql); !s) return s;
  }
  stmts_ = std::move(st);
  return {};
}

Journal::~Journal() {
  stop();
  stmts_.reset();
  if (db_) sqlite3_close(db_);
}

Result<RecoveredState> Journal::load() {
  RecoveredState state;
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT app, grace_ms FROM apps", -1, &s, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_, "read applications"));
  }
  while (sqlite3_step(s) == SQLITE_ROW) {
    state.apps.push_back({std::string(column_text(s, 0)),
                          static_cast<uint64_t>(sqlite3_column_int64(s, 1))});
  }
  sqlite3_finalize(s);
  if (sqlite3_prepare_v2(db_,
                         "SELECT session, seq, app, name, fields, max_retries, timeout_ms, "
                         "attempts, status, result, worker, run_ns FROM tasks",
                         -1, &s, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_, "read tasks"));
  }
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
    RecoveredTask t;
    t.key = {from_db(sqlite3_column_int64(s, 0)), from_db(sqlite3_column_int64(s, 1))};
    t.app_id.assign(column_text(s, 2));
    t.name.assign(column_text(s, 3));
    t.fields.assign(column_blob(s, 4));
    t.max_retries = static_cast<uint32_t>(sqlite3_column_int64(s, 5));
    t.timeout_ms = static_cast<uint32_t>(sqlite3_column_int64(s, 6));
    t.attempts = static_cast<uint32_t>(sqlite3_column_int64(s, 7));
    t.done = sqlite3_column_type(s, 8) != SQLITE_NULL;
    if (t.done) {
      const int64_t status = sqlite3_column_int64(s, 8);
      t.status = status >= 0 && status <= 3 ? static_cast<protocol::TaskStatus>(status)
                                            : protocol::TaskStatus::kFailed;
      t.result.assign(column_blob(s, 9));
      t.worker.assign(column_text(s, 10));
      t.run_ns = static_cast<uint64_t>(sqlite3_column_int64(s, 11));
    }
    state.tasks.push_back(std::move(t));
  }
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return make_error(sql_error(db_, "read tasks"));
  return state;
}

void Journal::start() {
  writer_ = std::thread([this] {
    // Durability is throughput work: the event loop's latency-critical work goes first.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5);
    writer_loop();
  });
}

void Journal::stop() {
  hand_off();
  {
    std::lock_guard lock(mu_);
    if (!writer_.joinable()) return;
    stopping_ = true;
    cv_.notify_all();
  }
  writer_.join();
}

// ---- records (loop thread) ------------------------------------------------------------------

void Journal::task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                             std::string_view fields, uint32_t max_retries,
                             uint32_t timeout_ms) {
  protocol::mp::Writer w = task_record(current_, kSubmit, key, 5);
  w.str(app_id);
  w.str(name);
  w.bin(fields);
  w.uint(max_retries);
  w.uint(timeout_ms);
  ++appended_;
}

void Journal::task_attempts(const TaskKey& key, uint32_t attempts) {
  protocol::mp::Writer w = task_record(current_, kAttempts, key, 1);
  w.uint(attempts);
  ++appended_;
}

void Journal::task_finished(const TaskKey& key, protocol::TaskStatus status,
                            std::string_view payload, uint32_t attempt, std::string_view worker,
                            uint64_t run_ns) {
  protocol::mp::Writer w = task_record(current_, kFinish, key, 5);
  w.uint(static_cast<uint8_t>(status));
  w.bin(payload);
  w.uint(attempt);
  w.str(worker);
  w.uint(run_ns);
  ++appended_;
}

void Journal::task_removed(const TaskKey& key) {
  task_record(current_, kRemove, key, 0);
  ++appended_;
}

void Journal::app_registered(std::string_view app_id, uint64_t grace_ms) {
  protocol::mp::Writer w(current_);
  w.array(3);
  w.uint(kApp);
  w.str(app_id);
  w.uint(grace_ms);
  ++appended_;
}

void Journal::app_removed(std::string_view app_id) {
  protocol::mp::Writer w(current_);
  w.array(2);
  w.uint(kAppRemove);
  w.str(app_id);
  ++appended_;
}

void Journal::hand_off() {
  if (current_.empty()) return;
  std::lock_guard lock(mu_);
  pending_.push_back(std::move(current_));
  current_.clear();
  pending_upto_ = appended_;
  cv_.notify_one();
}

void Journal::drain_notify() {
  uint64_t v;
  [[maybe_unused]] auto n = ::read(notify_.get(), &v, sizeof v);
}

JournalStats Journal::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---- the writer -----------------------------------------------------------------------------

void Journal::writer_loop() {
  for (;;) {
    std::vector<std::string> batches;
    uint64_t upto = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and everything is written
      // Group commit: give the batch a moment to grow. A task submitted, finished and
      // acknowledged within the window never reaches the database, and a trickle of records
      // costs one transaction instead of one each. Only acknowledgements wait for this.
      const auto until = std::chrono::steady_clock::now() + kCommitWindow;
      cv_.wait_until(lock, until, [&] { return stopping_ || pending_.size() >= kBatchesPerCommit; });
      batches.swap(pending_);
      upto = pending_upto_;
    }
    JournalStats delta;
    Status st = apply(batches, &delta);
    for (int attempt = 1; !st; ++attempt) {
      // The disk is full or failing: nothing that depends on these records is acknowledged
      // until they are written. Keep trying, unless we are asked to stop.
      bool stopping;
      {
        std::lock_guard lock(mu_);
        stopping = stopping_;
      }
      if (stopping && attempt > 3) {
        LRTS_ERROR("journal: giving up on {} batch(es) while stopping; the work they hold was "
                   "never acknowledged to its senders, who will send it again",
                   batches.size());
        return;
      }
      LRTS_ERROR("journal: {} (attempt {}); acknowledgements wait until it succeeds", st.error(),
                 attempt);
      std::this_thread::sleep_for(std::chrono::seconds(std::min(attempt, 5)));
      st = apply(batches, &delta);
    }
    {
      std::lock_guard lock(mu_);
      ++stats_.transactions;
      stats_.records += delta.records;
      stats_.coalesced += delta.coalesced;
    }
    committed_.store(upto, std::memory_order_release);
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(notify_.get(), &one, sizeof one);
  }
}

Status Journal::apply(const std::vector<std::string>& batches, JournalStats* stats) {
  *stats = {};
  // Pass 1: tasks born and removed within this transaction need no row at all.
  std::unordered_set<TaskKey, protocol::TaskKeyHash> added, gone;
  for (const auto& batch : batches) {
    protocol::mp::Reader r(batch);
    while (r.ok() && !r.at_end()) {
      const uint32_t n = r.array();
      const auto kind = static_cast<RecordKind>(r.uint());
      if (kind == kSubmit || kind == kRemove) {
        TaskKey k;
        k.session = r.uint();
        k.seq = r.uint();
        (kind == kSubmit ? added : gone).insert(k);
        for (uint32_t i = 3; i < n; ++i) r.skip();
      } else {
        for (uint32_t i = 1; i < n; ++i) r.skip();
      }
    }
    if (!r.ok()) return make_error(std::string("corrupt journal batch: ") + r.error());
  }
  std::unordered_set<TaskKey, protocol::TaskKeyHash> skip;
  for (const auto& k : gone) {
    if (added.count(k)) skip.insert(k);
  }

  Statements& st = *stmts_;
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_, "begin"));
  }
  bool ok = true;
  for (const auto& batch : batches) {
    protocol::mp::Reader r(batch);
    while (ok && !r.at_end()) {
      r.array();
      const auto kind = static_cast<RecordKind>(r.uint());
      if (kind == kApp) {
        const std::string_view app = r.str();
        ok = st.app.text(1, app).i64(2, static_cast<int64_t>(r.uint())).run();
        ++stats->records;
        continue;
      }
      if (kind == kAppRemove) {
        ok = st.app_remove.text(1, r.str()).run();
        ++stats->records;
        continue;
      }
      TaskKey k;
      k.session = r.uint();
      k.seq = r.uint();
      const bool skipped = skip.count(k) != 0;
      switch (kind) {
        case kSubmit: {
          const std::string_view app = r.str(), name = r.str(), fields = r.bin();
          const uint64_t retries = r.uint(), timeout = r.uint();
          if (!skipped) {
            ok = st.submit.i64(1, to_db(k.session)).i64(2, to_db(k.seq)).text(3, app)
                     .text(4, name).blob(5, fields).i64(6, static_cast<int64_t>(retries))
                     .i64(7, static_cast<int64_t>(timeout)).run();
          }
          break;
        }
        case kAttempts: {
          const uint64_t attempts = r.uint();
          if (!skipped) {
            ok = st.attempts.i64(1, to_db(k.session)).i64(2, to_db(k.seq))
                     .i64(3, static_cast<int64_t>(attempts)).run();
          }
          break;
        }
        case kFinish: {
          const uint64_t status = r.uint();
          const std::string_view payload = r.bin();
          const uint64_t attempt = r.uint();
          const std::string_view worker = r.str();
          const uint64_t run_ns = r.uint();
          if (!skipped) {
            ok = st.finish.i64(1, to_db(k.session)).i64(2, to_db(k.seq))
                     .i64(3, static_cast<int64_t>(status)).blob(4, payload)
                     .i64(5, static_cast<int64_t>(attempt)).text(6, worker)
                     .i64(7, to_db(run_ns)).run();
          }
          break;
        }
        case kRemove:
          if (!skipped) ok = st.remove.i64(1, to_db(k.session)).i64(2, to_db(k.seq)).run();
          break;
        default:
          ok = false;
      }
      (skipped ? stats->coalesced : stats->records) += 1;
    }
    if (!r.ok()) ok = false;
  }
  if (!ok) {
    const std::string why = sql_error(db_, "write");
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return make_error(why);
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    const std::string why = sql_error(db_, "commit");
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    return make_error(why);
  }
  return {};
}

}  // namespace lrts::scheduler
