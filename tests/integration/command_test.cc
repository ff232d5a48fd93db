// Any program as a task, on real processes: lrts submit -- PROGRAM ARGS, {index}, the task's
// environment, progress lines on LRTS_PROGRESS_FD from a shell and from a Python script with no
// lrts installed, exit codes and output tails, timeouts, cancel and process-group cleanup, and
// workers that run programs only with --allow-commands.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "lrts/admin.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

using nlohmann::json;

const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout",       "2",
    "--app-timeout",        "2",   "--unknown-service-wait", "0.5"};

class CommandTest : public ClusterFixture {
 protected:
  std::vector<std::string> submit(std::vector<std::string> flags,
                                  const std::vector<std::string>& program) const {
    std::vector<std::string> argv = {lrts_bin(), "submit", "--scheduler-port",
                                     std::to_string(cluster_.port())};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back("--");
    argv.insert(argv.end(), program.begin(), program.end());
    return argv;
  }
  static std::vector<json> lines(const std::string& out) {
    std::vector<json> v;
    std::istringstream in(out);
    for (std::string line; std::getline(in, line);) {
      if (!line.empty() && line[0] == '{') v.push_back(json::parse(line));
    }
    return v;
  }
  std::vector<lrts::TaskInfo> tasks(const std::string& state) const {
    TaskQuery q;
    q.state = state;
    return Admin(cluster_.admin_options()).tasks(q);
  }
  json tasks_json(const std::string& state) const {
    std::vector<std::string> argv = {lrts_bin(),
                                     "tasks",
                                     "--scheduler-port",
                                     std::to_string(cluster_.port()),
                                     "--progress-port",
                                     std::to_string(cluster_.progress_port()),
                                     "--json"};
    if (!state.empty()) argv.insert(argv.end(), {"--state", state});
    const CommandResult r = run_command(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return json::parse(r.out);
  }
  static pid_t read_pid(const std::string& path) {
    std::ifstream in(path);
    pid_t pid = 0;
    in >> pid;
    return pid;
  }
};

TEST_F(CommandTest, ProgramsGetTheirIndexEnvironmentAndExitCodes) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(2, {"--allow-commands"});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  const CommandResult r =
      run_command(submit({"--count", "5", "--wait"},
                         {"/bin/sh", "-c",
                          "echo \"$LRTS_TASK_INDEX $LRTS_ATTEMPT $LRTS_SERVICE_ID seed={index}\"; "
                          "[ {index} -ne 3 ] || { echo \"no luck with {index}\" >&2; exit 7; }"}));
  EXPECT_EQ(r.exit_code, 1) << r.err;  // one of five did not finish
  const auto results = lines(r.out);
  ASSERT_EQ(results.size(), 5u) << r.out;
  std::set<std::string> seen;
  for (const json& res : results) {
    const std::string id = res["service_id"];
    if (res["status"] == "failed") {
      const std::string err = res["error"];
      EXPECT_NE(err.find("exited with status 7"), std::string::npos) << err;
      EXPECT_NE(err.find("no luck with 3"), std::string::npos) << err;
      seen.insert("3");
      continue;
    }
    ASSERT_EQ(res["status"], "finished") << res.dump();
    const json& v = res["service_result"];
    EXPECT_EQ(v["exit_code"], 0);
    std::istringstream words(v["stdout_tail"].get<std::string>());
    std::string index, attempt, sid, seed;
    words >> index >> attempt >> sid >> seed;
    EXPECT_EQ(attempt, "1");
    EXPECT_EQ(sid, id);
    EXPECT_EQ(seed, "seed=" + index);
    seen.insert(index);
    // The full output is kept on the worker where the result says.
    EXPECT_NE(read_file(v["output"].get<std::string>() + ".out").find(sid), std::string::npos);
  }
  EXPECT_EQ(seen, (std::set<std::string>{"0", "1", "2", "3", "4"}));
}

TEST_F(CommandTest, ShellAndPythonReportProgressThroughTheirDescriptor) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_progress_server();
  cluster_.start_worker(2, {"--allow-commands"});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  // A shell loop that advances a named bar until a file appears, then closes it.
  const std::string go = dir_.file("go");
  CommandResult r = run_command(
      submit({}, {"/bin/sh", "-c",
                  "echo 'bar files 50 file Copying files' >&$LRTS_PROGRESS_FD; i=0; "
                  "while [ ! -e " +
                      go +
                      " ] && [ $i -lt 600 ]; do echo 'add files 1' >&$LRTS_PROGRESS_FD; "
                      "i=$((i+1)); sleep 0.1; done; echo 'set files 50' >&$LRTS_PROGRESS_FD; "
                      "echo 'done files' >&$LRTS_PROGRESS_FD"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // A Python script with no lrts at all: bare numbers advance the task's default bar.
  r = run_command(submit({}, {"/usr/bin/python3", "-c",
                              "import os\n"
                              "f = os.fdopen(int(os.environ['LRTS_PROGRESS_FD']), 'w', 1)\n"
                              "for _ in range(7): f.write('1\\n')\n"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // The shell's bar moves while it runs: seen by `lrts tasks` through the progress server.
  uint64_t first = 0;
  ASSERT_TRUE(wait_until([&] {
    const json listing = tasks_json("running");
    for (const json& t : listing["tasks"]) {
      for (const json& b : t["bars"]) {
        if (b["description"] == "Copying files" && b["count"].get<uint64_t>() > 0) {
          first = b["count"];
          EXPECT_EQ(b["total"], 50);
          EXPECT_EQ(b["unit"], "file");
          return true;
        }
      }
    }
    return false;
  })) << tasks_json("").dump();
  ASSERT_TRUE(wait_until([&] {
    const json listing = tasks_json("running");
    for (const json& t : listing["tasks"]) {
      for (const json& b : t["bars"]) {
        if (b["description"] == "Copying files" && b["count"].get<uint64_t>() > first) return true;
      }
    }
    return false;
  }));
  std::ofstream(go).put('x');
  // Both end finished, their bars closed where the programs left them.
  ASSERT_TRUE(wait_until([&] { return tasks("finished").size() == 2; }));
  ASSERT_TRUE(wait_until([&] {
    int closed = 0;
    const json listing = tasks_json("finished");
    for (const json& t : listing["tasks"]) {
      for (const json& b : t["bars"]) {
        if (b["phase"] != "done") continue;
        if (b["description"] == "Copying files" && b["count"] == 50) ++closed;
        if (b["description"] == "lrts.command" && b["count"] == 7) ++closed;
      }
    }
    return closed == 2;
  })) << tasks_json("finished").dump();
}

TEST_F(CommandTest, TimeoutAndCancelKillTheProgramAndWhatItStarted) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(2, {"--allow-commands"});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  const std::string timed = dir_.file("timed.pid"), cancelled = dir_.file("cancelled.pid");
  // Each starts a background sleep (a grandchild) and waits for it.
  CommandResult r =
      run_command(submit({"--task-timeout", "1", "--wait"},
                         {"/bin/sh", "-c", "sleep 300 & echo $! > " + timed + "; wait"}));
  EXPECT_EQ(r.exit_code, 1);
  const auto results = lines(r.out);
  ASSERT_EQ(results.size(), 1u) << r.out;
  EXPECT_EQ(results[0]["status"], "timed_out");
  const pid_t timed_pid = read_pid(timed);
  ASSERT_GT(timed_pid, 0);
  EXPECT_TRUE(wait_until([&] { return !process_alive(timed_pid); }));

  r = run_command(submit({}, {"/bin/sh", "-c", "sleep 300 & echo $! > " + cancelled + "; wait"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = r.out.substr(0, r.out.find('\n'));
  ASSERT_TRUE(wait_for_file(cancelled));
  ASSERT_TRUE(wait_until([&] { return read_pid(cancelled) > 0; }));
  const pid_t cancelled_pid = read_pid(cancelled);
  EXPECT_TRUE(process_alive(cancelled_pid));
  r = run_command({lrts_bin(), "cancel", "--scheduler-port", std::to_string(cluster_.port()), id});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(wait_until([&] { return !process_alive(cancelled_pid); }));
  ASSERT_TRUE(wait_until([&] { return tasks("cancelled").size() == 1; }));
}

TEST_F(CommandTest, WhatAProgramLeavesBehindNeitherHoldsItsTaskNorEscapesTheMemoryLimit) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(1, {"--allow-commands", "--max-job-memory-mb", "150"});
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  // A daemon in a session of its own that keeps the program's stdout: the task ends with the
  // program, not with the daemon.
  CommandResult r = run_command(
      submit({"--wait"}, {"/bin/sh", "-c", "setsid sh -c 'sleep 120' & echo started"}), 60s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto res = lines(r.out);
  ASSERT_EQ(res.size(), 1u) << r.out;
  EXPECT_EQ(res[0]["status"], "finished");
  EXPECT_LT(res[0]["run_time_ms"].get<double>(), 10'000) << res[0].dump();
  // Memory held by a process that left the slot's session still counts against the limit
  // (resident figures mean nothing under AddressSanitizer).
  if (kUnderAddressSanitizer) return;
  r = run_command(submit({"--wait", "--max-retries", "0"},
                         {"/bin/sh", "-c",
                          "setsid /usr/bin/python3 -c 'import time; x = b\"a\" * (400 << 20); "
                          "time.sleep(120)' & wait"}),
                  60s);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  res = lines(r.out);
  ASSERT_EQ(res.size(), 1u) << r.out;
  EXPECT_EQ(res[0]["status"], "failed");
  EXPECT_NE(res[0]["error"].get<std::string>().find("memory limit"), std::string::npos)
      << res[0].dump();
}

TEST_F(CommandTest, ProgramsRunOnlyWhereAllowed) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(1);  // no --allow-commands
  ASSERT_TRUE(cluster_.wait_for_connected(1));
  CommandResult r = run_command(submit({"--wait", "--max-retries", "0"}, {"/bin/true"}));
  EXPECT_EQ(r.exit_code, 1);
  auto res = lines(r.out);
  ASSERT_EQ(res.size(), 1u) << r.out << r.err;
  EXPECT_EQ(res[0]["status"], "failed");
  EXPECT_NE(res[0]["error"].get<std::string>().find("does not run programs"), std::string::npos)
      << res[0].dump();

  // A list of programs: those run, others are refused.
  cluster_.worker(0).signal(SIGKILL);
  cluster_.worker(0).wait_exit();
  cluster_.start_worker(1, {"--allow-commands", "/bin/echo"});
  ASSERT_TRUE(wait_until([&] {
    const auto ws = Admin(cluster_.admin_options()).workers();
    return ws.size() == 1 && ws[0].name == "worker1";
  }));
  r = run_command(submit({"--wait"}, {"/bin/echo", "hello"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  res = lines(r.out);
  ASSERT_EQ(res.size(), 1u);
  EXPECT_EQ(res[0]["service_result"]["stdout_tail"], "hello\n");
  r = run_command(submit({"--wait"}, {"/bin/sh", "-c", "echo sneaky"}));
  EXPECT_EQ(r.exit_code, 1);
  res = lines(r.out);
  ASSERT_EQ(res.size(), 1u);
  EXPECT_NE(res[0]["error"].get<std::string>().find("--allow-commands"), std::string::npos)
      << res[0].dump();

  // Usage errors.
  r = run_command(
      {lrts_bin(), "submit", "--scheduler-port", std::to_string(cluster_.port()), "--"});
  EXPECT_EQ(r.exit_code, 2);
  r = run_command({lrts_bin(), "submit", "--scheduler-port", std::to_string(cluster_.port())});
  EXPECT_EQ(r.exit_code, 2);
  r = run_command({lrts_bin(), "worker", "--allow-commands", "relative/path"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("absolute"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lrts::testing
