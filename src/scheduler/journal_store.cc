#include "scheduler/journal_store.hpp"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "common/log.hpp"
#include "scheduler/journal_records.hpp"

namespace lrts::scheduler {

namespace records {

namespace {
template <class V, size_t I = 0>
bool read_kind(uint8_t kind, uint32_t nfields, protocol::mp::Reader& r, V& out) {
  if constexpr (I < std::variant_size_v<V>) {
    using R = std::variant_alternative_t<I, V>;
    if (static_cast<uint8_t>(R::kKind) != kind) return read_kind<V, I + 1>(kind, nfields, r, out);
    R rec;
    if (nfields != wire::wire_count<R>()) {
      r.fail("journal record has the wrong number of fields");
      return false;
    }
    wire::get_fields(r, rec);
    out = rec;
    return r.ok();
  } else {
    r.fail("unknown journal record kind");
    return false;
  }
}
}  // namespace

bool read(protocol::mp::Reader& r, Record& out) {
  const uint32_t n = r.array();
  if (!r.ok() || n < 1) {
    r.fail("not a journal record");
    return false;
  }
  const uint64_t kind = r.uint_max(255);
  if (!r.ok()) return false;
  return read_kind(static_cast<uint8_t>(kind), n - 1, r, out);
}

}  // namespace records

namespace {

constexpr int kSchemaVersion = 4;

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

// A query run to its end, finalized whatever happens.
class Query {
 public:
  Query(sqlite3* db, const char* sql) {
    ok_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) == SQLITE_OK;
  }
  ~Query() { sqlite3_finalize(s_); }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  bool ok() const { return ok_; }
  sqlite3_stmt* get() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  bool ok_ = false;
};

}  // namespace

struct JournalStore::Statements {
  Stmt submit, assign, finish, remove, app, app_remove;
};

JournalStore::JournalStore(std::string path, bool sync_full)
    : path_(std::move(path)), sync_full_(sync_full) {}

Result<std::unique_ptr<JournalStore>> JournalStore::open(const std::string& dir, bool sync_full) {
  std::string path = ":memory:";
  UniqueFd lock;
  if (dir != ":memory:") {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return make_error("cannot create state directory " + dir + ": " + ec.message());
    // One scheduler per state directory: the directory itself is locked (it cannot vanish
    // while it holds the journal).
    lock.reset(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!lock.valid()) return make_error("cannot open state directory " + dir);
    if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
      return make_error("state directory " + dir + " is in use by another scheduler");
    }
    path = dir + "/lrts-state.db";
  }
  std::unique_ptr<JournalStore> j(new JournalStore(path, sync_full));
  j->lock_ = std::move(lock);
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(j->path_.c_str(), &db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  j->db_.reset(db);  // owned even when the open failed (SQLite hands back a handle to close)
  if (rc != SQLITE_OK) return make_error(sql_error(db, ("cannot open " + j->path_).c_str()));
  if (auto s = j->init_schema(); !s) return Error{s.error()};
  return j;
}

void JournalStore::CloseDb::operator()(sqlite3* db) const { sqlite3_close(db); }

JournalStore::~JournalStore() {
  stmts_.reset();  // statements are finalized before the database closes
}

Status JournalStore::init_schema() {
  const std::string pragmas =
      std::string("PRAGMA journal_mode=WAL;") +
      (sync_full_ ? "PRAGMA synchronous=FULL;" : "PRAGMA synchronous=NORMAL;") +
      "PRAGMA temp_store=MEMORY; PRAGMA cache_size=-16384;";
  if (sqlite3_exec(db_.get(), pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(path_ + " is not a journal lrts can use (" + sqlite3_errmsg(db_.get()) +
                      "): move the state directory aside to start with an empty queue");
  }
  {
    // A damaged journal is refused rather than half read.
    Query check(db_.get(), "PRAGMA quick_check");
    std::string verdict = "unreadable";
    if (check.ok() && sqlite3_step(check.get()) == SQLITE_ROW) {
      verdict.assign(column_text(check.get(), 0));
    }
    if (verdict != "ok") {
      // One line: SQLite lists each problem on its own.
      std::replace(verdict.begin(), verdict.end(), '\n', ' ');
      if (verdict.size() > 300) verdict = verdict.substr(0, 300) + "...";
      return make_error(path_ + " is damaged (" + verdict +
                        "): move the state directory aside to start with an empty queue, or "
                        "put back a copy of it");
    }
  }
  int version = 0;
  {
    Query v(db_.get(), "PRAGMA user_version");
    if (v.ok() && sqlite3_step(v.get()) == SQLITE_ROW) version = sqlite3_column_int(v.get(), 0);
  }
  if (version > kSchemaVersion) {
    return make_error(path_ + " has state format " + std::to_string(version) +
                      "; this lrts reads formats up to " + std::to_string(kSchemaVersion));
  }
  const char* schema =
      "CREATE TABLE IF NOT EXISTS apps(app TEXT PRIMARY KEY, grace_ms INTEGER NOT NULL, "
      "detached INTEGER NOT NULL DEFAULT 0, owner TEXT NOT NULL DEFAULT '') WITHOUT ROWID;"
      "CREATE TABLE IF NOT EXISTS tasks(session INTEGER NOT NULL, seq INTEGER NOT NULL, "
      "app TEXT NOT NULL, name TEXT NOT NULL, fields BLOB NOT NULL, "
      "max_retries INTEGER NOT NULL, timeout_ms INTEGER NOT NULL, "
      "attempts INTEGER NOT NULL DEFAULT 0, status INTEGER, result BLOB, worker TEXT, "
      "run_ns INTEGER, fields_blob INTEGER NOT NULL DEFAULT 0, "
      "result_blob INTEGER NOT NULL DEFAULT 0, done_ms INTEGER, "
      "worker_uid INTEGER NOT NULL DEFAULT 0, "
      "PRIMARY KEY(session, seq)) WITHOUT ROWID;";
  if (sqlite3_exec(db_.get(), schema, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_.get(), "create journal tables"));
  }
  if (version == 1) {  // format 1: no payload files, no detached applications
    const char* migrate =
        "ALTER TABLE apps ADD COLUMN detached INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE tasks ADD COLUMN fields_blob INTEGER NOT NULL DEFAULT 0;"
        "ALTER TABLE tasks ADD COLUMN result_blob INTEGER NOT NULL DEFAULT 0;";
    if (sqlite3_exec(db_.get(), migrate, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return make_error(sql_error(db_.get(), "upgrade the journal from format 1"));
    }
  }
  if (version == 1 || version == 2) {  // format 2: no time a result was recorded
    if (sqlite3_exec(db_.get(), "ALTER TABLE tasks ADD COLUMN done_ms INTEGER;", nullptr, nullptr,
                     nullptr) != SQLITE_OK) {
      return make_error(sql_error(db_.get(), "upgrade the journal from format 2"));
    }
  }
  if (version >= 1 && version <= 3) {  // format 3: no owners of applications and attempts
    const char* migrate =
        "ALTER TABLE apps ADD COLUMN owner TEXT NOT NULL DEFAULT '';"
        "ALTER TABLE tasks ADD COLUMN worker_uid INTEGER NOT NULL DEFAULT 0;";
    if (sqlite3_exec(db_.get(), migrate, nullptr, nullptr, nullptr) != SQLITE_OK) {
      return make_error(sql_error(db_.get(), "upgrade the journal from format 3"));
    }
    LRTS_INFO("journal {} upgraded from state format {} to {}", path_, version, kSchemaVersion);
  }
  sqlite3_exec(db_.get(), ("PRAGMA user_version=" + std::to_string(kSchemaVersion)).c_str(),
               nullptr, nullptr, nullptr);
  auto st = std::make_unique<Statements>();
  for (auto [stmt, sql] : std::initializer_list<std::pair<Stmt*, const char*>>{
           {&st->submit,
            "INSERT OR REPLACE INTO tasks(session, seq, app, name, fields, fields_blob, "
            "max_retries, timeout_ms, attempts) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0)"},
           {&st->assign, "UPDATE tasks SET attempts=?3, worker_uid=?4 WHERE session=?1 AND seq=?2"},
           {&st->finish,
            "UPDATE tasks SET status=?3, result=?4, result_blob=?5, attempts=?6, worker=?7, "
            "run_ns=?8, done_ms=?9, fields=x'', fields_blob=0 WHERE session=?1 AND seq=?2"},
           {&st->remove, "DELETE FROM tasks WHERE session=?1 AND seq=?2"},
           {&st->app,
            "INSERT OR REPLACE INTO apps(app, grace_ms, detached, owner) VALUES(?1, ?2, ?3, ?4)"},
           {&st->app_remove, "DELETE FROM apps WHERE app=?1"}}) {
    if (auto s = stmt->prepare(db_.get(), sql); !s) return s;
  }
  stmts_ = std::move(st);
  return {};
}

Result<RecoveredState> JournalStore::load() {
  RecoveredState state;
  {
    Query q(db_.get(), "SELECT app, grace_ms, detached, owner FROM apps");
    if (!q.ok()) return make_error(sql_error(db_.get(), "read applications"));
    while (sqlite3_step(q.get()) == SQLITE_ROW) {
      state.apps.push_back({std::string(column_text(q.get(), 0)),
                            static_cast<uint64_t>(sqlite3_column_int64(q.get(), 1)),
                            sqlite3_column_int64(q.get(), 2) != 0,
                            std::string(column_text(q.get(), 3))});
    }
  }
  Query q(db_.get(),
          "SELECT session, seq, app, name, fields, max_retries, timeout_ms, attempts, status, "
          "result, worker, run_ns, fields_blob, result_blob, done_ms, worker_uid FROM tasks");
  if (!q.ok()) return make_error(sql_error(db_.get(), "read tasks"));
  sqlite3_stmt* s = q.get();
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
    t.fields_blob = from_db(sqlite3_column_int64(s, 12));
    t.worker_uid = from_db(sqlite3_column_int64(s, 15));
    if (t.done) {
      const int64_t status = sqlite3_column_int64(s, 8);
      t.status = status >= 0 && status <= 3 ? static_cast<protocol::TaskStatus>(status)
                                            : protocol::TaskStatus::kFailed;
      t.result.assign(column_blob(s, 9));
      t.worker.assign(column_text(s, 10));
      t.run_ns = static_cast<uint64_t>(sqlite3_column_int64(s, 11));
      t.result_blob = from_db(sqlite3_column_int64(s, 13));
      // How long ago it was recorded, by the wall clock (the only clock that survives a
      // restart): its --keep-results time goes on from there. Unknown (format 2): from now.
      if (sqlite3_column_type(s, 14) != SQLITE_NULL) {
        t.done_ms_ago =
            static_cast<uint64_t>(std::max<int64_t>(0, wall_ms() - sqlite3_column_int64(s, 14)));
      }
    }
    state.tasks.push_back(std::move(t));
  }
  if (rc != SQLITE_DONE) return make_error(sql_error(db_.get(), "read tasks"));
  return state;
}

Status JournalStore::apply(const std::vector<std::string>& batches, JournalStats* stats) {
  *stats = {};
  // Pass 1: a task whose first record here is its submission and whose last is its removal
  // was born and gone within this transaction: it needs no row at all. (A removal first means a
  // row from before: that one must go.)
  struct Seen {
    bool born_here = false;
    bool gone = false;
  };
  std::unordered_map<TaskKey, Seen, protocol::TaskKeyHash> seen;
  for (const auto& batch : batches) {
    protocol::mp::Reader r(batch);
    records::Record rec;
    while (r.ok() && !r.at_end() && records::read(r, rec)) {
      std::visit(
          [&](const auto& x) {
            if constexpr (requires { x.key; }) {
              auto [it, first] = seen.try_emplace(x.key);
              using R = std::decay_t<decltype(x)>;
              if (first) it->second.born_here = std::is_same_v<R, records::Submit>;
              it->second.gone = std::is_same_v<R, records::Remove>;
            }
          },
          rec);
    }
    if (!r.ok()) return make_error(std::string("corrupt journal batch: ") + r.error());
  }
  std::unordered_set<TaskKey, protocol::TaskKeyHash> skip;
  for (const auto& [k, s] : seen) {
    if (s.born_here && s.gone) skip.insert(k);
  }

  Statements& st = *stmts_;
  if (sqlite3_exec(db_.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return make_error(sql_error(db_.get(), "begin"));
  }
  bool ok = true;
  auto skipped = [&](const TaskKey& k) {
    if (!skip.count(k)) return false;
    ++stats->coalesced;
    return true;
  };
  for (const auto& batch : batches) {
    protocol::mp::Reader r(batch);
    records::Record rec;
    while (ok && !r.at_end() && records::read(r, rec)) {
      std::visit(
          [&](const auto& x) {
            using R = std::decay_t<decltype(x)>;
            if constexpr (std::is_same_v<R, records::App>) {
              ok = st.app.text(1, x.app_id)
                       .i64(2, to_db(x.grace_ms))
                       .i64(3, x.detached)
                       .text(4, x.owner)
                       .run();
            } else if constexpr (std::is_same_v<R, records::AppRemove>) {
              ok = st.app_remove.text(1, x.app_id).run();
            } else {
              if (skipped(x.key)) return;
              const int64_t s = to_db(x.key.session), q = to_db(x.key.seq);
              if constexpr (std::is_same_v<R, records::Submit>) {
                ok = st.submit.i64(1, s)
                         .i64(2, q)
                         .text(3, x.app_id)
                         .text(4, x.name)
                         .blob(5, x.fields)
                         .i64(6, to_db(x.fields_blob))
                         .i64(7, x.max_retries)
                         .i64(8, x.timeout_ms)
                         .run();
              } else if constexpr (std::is_same_v<R, records::Assign>) {
                ok = st.assign.i64(1, s)
                         .i64(2, q)
                         .i64(3, x.attempt)
                         .i64(4, to_db(x.worker_uid))
                         .run();
              } else if constexpr (std::is_same_v<R, records::Finish>) {
                ok = st.finish.i64(1, s)
                         .i64(2, q)
                         .i64(3, static_cast<int64_t>(x.status))
                         .blob(4, x.payload)
                         .i64(5, to_db(x.payload_blob))
                         .i64(6, x.attempt)
                         .text(7, x.worker)
                         .i64(8, to_db(x.run_ns))
                         .i64(9, wall_ms())
                         .run();
              } else {
                ok = st.remove.i64(1, s).i64(2, q).run();
              }
            }
            ++stats->records;
          },
          rec);
    }
    if (!r.ok()) ok = false;
  }
  if (!ok) {
    const std::string why = sql_error(db_.get(), "write");
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    return make_error(why);
  }
  if (sqlite3_exec(db_.get(), "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    const std::string why = sql_error(db_.get(), "commit");
    sqlite3_exec(db_.get(), "ROLLBACK", nullptr, nullptr, nullptr);
    return make_error(why);
  }
  return {};
}

}  // namespace lrts::scheduler
