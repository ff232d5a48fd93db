// The scheduler's journal on real processes: on by default, one scheduler per journal, and a
// damaged journal refused with a message that says what to do.
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "lrts/admin.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

class JournalTest : public ClusterFixture {
 protected:
  std::vector<std::string> lrts(std::vector<std::string> args) const {
    args.insert(args.begin(), lrts_bin());
    args.push_back("--scheduler-port");
    args.push_back(std::to_string(cluster_.port()));
    return args;
  }
  size_t json_lines(const std::string& out) const {
    size_t n = 0;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) n += !l.empty() && l[0] == '{';
    return n;
  }
  // Twenty tasks submitted and left: there is no worker yet, so they wait in the queue.
  void submit_twenty() {
    auto sub = run_command(lrts({"submit", "Multiplication Service Example", "--fields",
                                 R"({"a":6,"b":7})", "--count", "20", "--application-id", "kept"}));
    ASSERT_EQ(sub.exit_code, 0) << sub.err;
  }
};

TEST_F(JournalTest, ASchedulerStartedWithNoFlagsKeepsItsQueueThroughSigkill) {
  // No --state-dir and no --no-journal: the default state directory, under this HOME.
  const std::string home = dir_.file("home");
  const std::vector<std::string> argv = {
      "env",       "-u",       "XDG_STATE_HOME", "HOME=" + home, lrts_bin(),
      "scheduler", "-address", "127.0.0.1",      "-port",        std::to_string(cluster_.port())};
  const std::string state =
      home + "/.local/state/lrts/scheduler-" + std::to_string(cluster_.port());
  Daemon first(argv, dir_.file("first.log"));
  ASSERT_TRUE(cluster_.wait_for_connected(0)) << first.log();  // the scheduler answers
  EXPECT_EQ(Admin(cluster_.admin_options()).status().journal_path, state + "/lrts-state.db");
  submit_twenty();
  first.signal(SIGKILL);
  ASSERT_NE(first.wait_exit(), -1);

  Daemon second(argv, dir_.file("second.log"));
  ASSERT_TRUE(cluster_.wait_for_connected(0)) << second.log();
  EXPECT_EQ(Admin(cluster_.admin_options()).status().queued, 20u) << second.log();
  cluster_.start_worker(2);
  auto got =
      run_command(lrts({"results", "--application-id", "kept", "--wait", "--timeout", "30"}));
  EXPECT_EQ(got.exit_code, 0) << got.err;
  EXPECT_EQ(json_lines(got.out), 20u) << got.out;
  EXPECT_EQ(occurrences(got.out, "\"service_result\":42"), 20u) << got.out;
  second.signal(SIGTERM);
  EXPECT_NE(second.wait_exit(), -1);
}

TEST_F(JournalTest, ASecondSchedulerOnTheSameJournalIsRefusedEvenWithItsFilesRemoved) {
  Daemon& first = cluster_.start_scheduler();
  ASSERT_TRUE(cluster_.wait_for_connected(0)) << first.log();
  // Whatever lock files there are, gone: the lock does not depend on them.
  for (const auto& e : std::filesystem::directory_iterator(dir_.file("state"))) {
    if (e.path().extension() == ".lock") std::filesystem::remove(e.path());
  }
  auto second = run_command({lrts_bin(), "scheduler", "-address", "127.0.0.1", "-port",
                             std::to_string(free_port()), "--state-dir", dir_.file("state")},
                            20s);
  EXPECT_NE(second.exit_code, 0);
  EXPECT_NE(second.err.find("in use by another scheduler"), std::string::npos) << second.err;
  EXPECT_TRUE(first.running());
}

// Overwrites `bytes` bytes of the file at `offset` with garbage.
void damage(const std::string& path, std::streamoff offset, size_t bytes) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  f.seekp(offset);
  const std::string garbage(bytes, '\x5a');
  f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
}

TEST_F(JournalTest, ADamagedJournalIsRefusedWithWhatToDo) {
  Daemon& s = cluster_.start_scheduler();
  ASSERT_TRUE(cluster_.wait_for_connected(0)) << s.log();
  submit_twenty();
  s.signal(SIGTERM);
  ASSERT_NE(s.wait_exit(), -1);
  const std::string db = dir_.file("state") + "/lrts-state.db";
  ASSERT_GT(std::filesystem::file_size(db), 8192u);

  // The pages after the first (the schema's) overwritten: found by the integrity check.
  const auto size = static_cast<std::streamoff>(std::filesystem::file_size(db));
  damage(db, 4096 + 100, static_cast<size_t>(size - 4096 - 200));
  auto r = run_command({lrts_bin(), "scheduler", "-address", "127.0.0.1", "-port",
                        std::to_string(cluster_.port()), "--state-dir", dir_.file("state")},
                       20s);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("damaged"), std::string::npos) << r.exit_code << r.out << r.err;
  EXPECT_EQ(occurrences(r.err, "\n"), 1u) << r.err;
  EXPECT_NE(r.err.find("move the state directory aside"), std::string::npos) << r.err;

  // The header too: not a database at all any more.
  damage(db, 0, 100);
  auto h = run_command({lrts_bin(), "scheduler", "-address", "127.0.0.1", "-port",
                        std::to_string(cluster_.port()), "--state-dir", dir_.file("state")},
                       20s);
  EXPECT_NE(h.exit_code, 0);
  EXPECT_NE(h.err.find("move the state directory aside"), std::string::npos) << h.err;
}

}  // namespace
}  // namespace lrts::testing
