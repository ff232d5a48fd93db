// The lrts command line as users meet it: flags, help, errors, submit.
#include <gtest/gtest.h>

#include <sstream>

#include "support/harness.hpp"

namespace lrts::testing {
namespace {

size_t count_lines(const std::string& s) {
  return static_cast<size_t>(std::count(s.begin(), s.end(), '\n'));
}

TEST(CliIntegrationTest, InvalidValuesExitNonZeroWithAOneLineReason) {
  struct Case {
    std::vector<std::string> args;
    std::string reason;
  };
  const std::vector<Case> cases = {
      {{"scheduler", "-port", "70000"}, "70000"},
      {{"scheduler", "--bogus", "1"}, "--bogus"},
      {{"worker", "-scheduler-port", "0"}, "scheduler-port"},
      {{"worker", "-max-jobs", "-7"}, "max-jobs"},
      {{"worker", "-scheduler-address", "no-such-host.invalid"}, "cannot resolve"},
      {{"scheduler", "-address", "no-such-host.invalid", "-port", "1"}, "cannot resolve"},
      {{"worker", "--service-lib", "/nonexistent/lib.so"}, "/nonexistent/lib.so"},
      {{"submit"}, "service"},
      {{"submit", "svc", "--fields", "{not json"}, "not valid JSON"},
      {{"submit", "svc", "--fields", "[1,2]"}, "JSON object"},
      {{"nonsense"}, "nonsense"},
      // Numbers that are not numbers, or out of any sane range, for every kind of flag.
      {{"scheduler", "--worker-timeout", "nan"}, "finite"},
      {{"scheduler", "--app-timeout", "inf"}, "finite"},
      {{"scheduler", "--heartbeat-interval", "1e300"}, "range"},
      {{"scheduler", "--worker-timeout", "-1"}, "range"},
      {{"scheduler", "--app-grace", "-5"}, "range"},
      {{"scheduler", "--reclaim-grace", "nan"}, "finite"},
      {{"scheduler", "--keep-results", "nan"}, "length of time"},
      {{"scheduler", "--keep-results", "-3d"}, "length of time"},
      {{"scheduler", "--max-message-mb", "inf"}, "finite"},
      {{"worker", "--timeout", "nan"}, "finite"},
      {{"worker", "--max-result-mb", "nan"}, "finite"},
      {{"worker", "--max-result-mb", "-5"}, "range"},
      {{"results", "--application-id", "x", "--timeout", "nan"}, "finite"},
      // Sets that contradict each other, and more than the machine holds.
      {{"scheduler", "--heartbeat-interval", "5", "--worker-timeout", "1"}, "twice"},
      {{"worker", "-max-jobs", "100000"}, "more slots than this machine"},
      {{"scheduler", "--state-dir", ""}, "empty"},
      // Addresses that do not resolve, without --wait too.
      {{"submit", "test.noop", "--scheduler-address", "nosuchhost.invalid"}, "cannot resolve"},
      {{"submit", "test.noop", "--scheduler-address", ""}, "empty"},
      {{"submit", "test.noop", "--application-id", std::string(300, 'a')}, "application id"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {lrts_bin()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run_command(argv, 20s);
    std::string cmd;
    for (const auto& a : c.args) cmd += a + " ";
    EXPECT_NE(r.exit_code, 0) << cmd;
    EXPECT_NE(r.err.find(c.reason), std::string::npos) << cmd << " said: " << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << cmd << " said: " << r.err;
  }
}

TEST(CliIntegrationTest, HelpExplainsEveryFlag) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected = {
      {"scheduler", {"--address", "--port", "--timeout", "--worker-timeout", "--app-grace"}},
      {"worker",
       {"--scheduler-address", "--scheduler-port", "--progress-address", "--progress-port",
        "--max-jobs", "--timeout", "--service-lib", "physical cores"}},
      {"submit", {"--fields", "--count", "--wait", "--scheduler-address", "--scheduler-port"}},
  };
  for (const auto& [sub, flags] : expected) {
    auto r = run_command({lrts_bin(), sub, "--help"}, 20s);
    EXPECT_EQ(r.exit_code, 0) << sub;
    for (const auto& f : flags) EXPECT_NE(r.out.find(f), std::string::npos) << sub << " " << f;
  }
  auto top = run_command({lrts_bin(), "--help"}, 20s);
  EXPECT_EQ(top.exit_code, 0);
  for (const char* sub : {"scheduler", "worker", "submit"}) {
    EXPECT_NE(top.out.find(sub), std::string::npos);
  }
}

TEST(CliIntegrationTest, SubmitWaitPrintsOneJsonLinePerResult) {
  TempDir dir;
  Cluster cluster(dir);
  cluster.start_scheduler();
  cluster.start_worker(2);
  const std::string port = std::to_string(cluster.port());

  auto ok = run_command({lrts_bin(), "submit", "Multiplication Service Example", "--fields",
                         R"({"a":6,"b":9})", "--count", "3", "--wait", "-scheduler-port", port},
                        60s);
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  std::istringstream lines(ok.out);
  std::string line;
  size_t ids = 0, results = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("{", 0) == 0) {
      ++results;
      EXPECT_NE(line.find(R"("status":"finished","service_result":54)"), std::string::npos) << line;
      EXPECT_NE(line.find(R"("service_id":")"), std::string::npos) << line;
    } else {
      ++ids;
    }
  }
  EXPECT_EQ(ids, 3u);
  EXPECT_EQ(results, 3u);

  auto failing = run_command({lrts_bin(), "submit", "test.throw", "--fields",
                              R"({"message":"nope"})", "--wait", "-scheduler-port", port},
                             60s);
  EXPECT_EQ(failing.exit_code, 1);
  EXPECT_NE(failing.out.find(R"("status":"failed")"), std::string::npos) << failing.out;
  EXPECT_NE(failing.out.find(R"("error":"nope")"), std::string::npos) << failing.out;
}

TEST(CliIntegrationTest, SubmitWithoutWaitLeavesTasksRunning) {
  TempDir dir;
  Cluster cluster(dir);
  cluster.start_scheduler();
  const std::string marker = dir.file("ran");
  // The worker starts only after the submitting command has exited.
  auto r = run_command({lrts_bin(), "submit", "test.touch", "--fields",
                        R"({"path":")" + marker + R"(","delay_ms":200})", "-scheduler-port",
                        std::to_string(cluster.port())},
                       60s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("queued under application id"), std::string::npos) << r.err;
  cluster.start_worker(1);
  EXPECT_TRUE(wait_for_file(marker));
}

}  // namespace
}  // namespace lrts::testing
