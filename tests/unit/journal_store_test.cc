// JournalStore on a real database file: a journal an older lrts wrote is upgraded in place and
// keeps what it held; the owners added by format 4 survive a reload.
#include "scheduler/journal_store.hpp"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "scheduler/journal_records.hpp"

namespace lrts::scheduler {
namespace {

class JournalStoreTest : public ::testing::Test {
 protected:
  JournalStoreTest() {
    char tmpl[] = "/tmp/lrts-journal-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  ~JournalStoreTest() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(JournalStoreTest, AFormat3JournalIsUpgradedAndKeepsItsApplicationsAndTasks) {
  {  // what lrts with state format 3 wrote
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_ + "/lrts-state.db").c_str(), &db), SQLITE_OK);
    const char* v3 =
        "CREATE TABLE apps(app TEXT PRIMARY KEY, grace_ms INTEGER NOT NULL, "
        "detached INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "CREATE TABLE tasks(session INTEGER NOT NULL, seq INTEGER NOT NULL, "
        "app TEXT NOT NULL, name TEXT NOT NULL, fields BLOB NOT NULL, "
        "max_retries INTEGER NOT NULL, timeout_ms INTEGER NOT NULL, "
        "attempts INTEGER NOT NULL DEFAULT 0, status INTEGER, result BLOB, worker TEXT, "
        "run_ns INTEGER, fields_blob INTEGER NOT NULL DEFAULT 0, "
        "result_blob INTEGER NOT NULL DEFAULT 0, done_ms INTEGER, "
        "PRIMARY KEY(session, seq)) WITHOUT ROWID;"
        "INSERT INTO apps VALUES('old-app', 60000, 1);"
        "INSERT INTO tasks(session, seq, app, name, fields, max_retries, timeout_ms, attempts) "
        "VALUES(7, 1, 'old-app', 'svc', x'80', 3, 0, 2);"
        "PRAGMA user_version=3;";
    ASSERT_EQ(sqlite3_exec(db, v3, nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
    sqlite3_close(db);
  }
  auto store = JournalStore::open(dir_, false);
  ASSERT_TRUE(store) << store.error();
  auto state = (*store)->load();
  ASSERT_TRUE(state) << state.error();
  ASSERT_EQ(state->apps.size(), 1u);
  EXPECT_EQ(state->apps[0].app_id, "old-app");
  EXPECT_TRUE(state->apps[0].detached);
  EXPECT_EQ(state->apps[0].owner, "");  // not known: the first key to say hello claims it
  ASSERT_EQ(state->tasks.size(), 1u);
  EXPECT_EQ(state->tasks[0].attempts, 2u);
  EXPECT_EQ(state->tasks[0].worker_uid, 0u);  // not known: any worker may claim the attempt

  // Format 4 records owners, and they come back.
  records::RecordWriter w;
  w.app_registered("old-app", 60000, true, "alice");
  w.task_assigned({7, 1}, 3, 0xfeedULL);
  JournalStats stats;
  ASSERT_TRUE((*store)->apply({w.take()}, &stats));
  store->reset();
  auto again = JournalStore::open(dir_, false);
  ASSERT_TRUE(again) << again.error();
  auto reloaded = (*again)->load();
  ASSERT_TRUE(reloaded) << reloaded.error();
  ASSERT_EQ(reloaded->apps.size(), 1u);
  EXPECT_EQ(reloaded->apps[0].owner, "alice");
  ASSERT_EQ(reloaded->tasks.size(), 1u);
  EXPECT_EQ(reloaded->tasks[0].attempts, 3u);
  EXPECT_EQ(reloaded->tasks[0].worker_uid, 0xfeedULL);
}

}  // namespace
}  // namespace lrts::scheduler
