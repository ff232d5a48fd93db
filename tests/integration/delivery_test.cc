// Delivery outside the happy path, on real processes: results kept until collected, detached
// work, restarts, payloads larger than a message, size limits, a task's child processes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout", "1", "--app-timeout", "1"};

class DeliveryTest : public ClusterFixture {
 protected:
  std::vector<std::string> json_lines(const std::string& out) {
    std::vector<std::string> lines;
    std::istringstream in(out);
    for (std::string l; std::getline(in, l);) {
      if (!l.empty() && l[0] == '{') lines.push_back(l);
    }
    return lines;
  }
  std::vector<std::string> lrts(std::vector<std::string> args) {
    args.insert(args.begin(), lrts_bin());
    args.push_back("--scheduler-port");
    args.push_back(std::to_string(cluster_.port()));
    return args;
  }
};

TEST_F(DeliveryTest, AnApplicationKilledBeforeCollectingGetsEveryResultWhenItComesBack) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(2);
  // It schedules 50 tasks, waits until all 50 results have arrived, and is killed before a
  // wait hands any of them out.
  Daemon app({test_app(), std::to_string(cluster_.port()), "collector", "50", "1", "60000", "hold"},
             dir_.file("app.log"));
  ASSERT_TRUE(wait_until([&] { return app.log_contains("RECEIVED"); }, 60s)) << app.log();
  app.signal(SIGKILL);
  ASSERT_NE(app.wait_exit(), -1);
  std::vector<std::string> scheduled;
  std::istringstream lines(app.log());
  for (std::string line; std::getline(lines, line) && line != "READY";) scheduled.push_back(line);
  ASSERT_EQ(scheduled.size(), 50u);

  ClientApplication again(info("collector"));
  again.start_application();
  ASSERT_TRUE(again.wait_connected(20s));
  EXPECT_EQ(again.results_waiting(), 50u);  // every result, waiting at once
  const auto results = again.wait_for_multi(scheduled, 30s);
  for (size_t k = 0; k < results.size(); ++k) {
    ASSERT_TRUE(results[k].ok()) << results[k].error();
    EXPECT_EQ(results[k].service_result<int64_t>(), static_cast<int64_t>(k));
  }
  again.stop_application();
  // Collected: a third run gets nothing.
  ClientApplication third(info("collector"));
  third.start_application();
  ASSERT_TRUE(third.wait_connected(20s));
  EXPECT_TRUE(third.pending_service_ids().empty());
}

TEST_F(DeliveryTest, ASubmitWithoutWaitRunsToTheEndPastTheGraceAndLrtsResultsCollectsIt) {
  // A grace of 1 s: an application that merely vanished loses its work after it. A detached
  // submission does not.
  std::vector<std::string> flags = kFastScheduler;
  flags.insert(flags.end(), {"--app-grace", "1"});
  cluster_.start_scheduler(flags);
  cluster_.start_worker(2);
  auto sub = run_command(lrts({"submit", "test.sleep", "--fields", R"({"ms":1500,"value":7})",
                               "--count", "3", "--application-id", "fire-and-forget"}));
  ASSERT_EQ(sub.exit_code, 0) << sub.err;
  EXPECT_NE(sub.err.find("lrts results --application-id fire-and-forget"), std::string::npos)
      << sub.err;
  // Right away: nothing finished yet, three still running.
  auto early = run_command(lrts({"results", "--application-id", "fire-and-forget"}));
  EXPECT_EQ(early.exit_code, 3) << early.err;
  EXPECT_TRUE(json_lines(early.out).empty());
  // Long past the grace (the tasks take 1.5 s): all three, exit 0.
  auto later = run_command(
      lrts({"results", "--application-id", "fire-and-forget", "--wait", "--timeout", "30"}));
  EXPECT_EQ(later.exit_code, 0) << later.err;
  const auto lines = json_lines(later.out);
  ASSERT_EQ(lines.size(), 3u) << later.out;
  for (const auto& l : lines) {
    EXPECT_NE(l.find("\"status\":\"finished\""), std::string::npos) << l;
    EXPECT_NE(l.find("\"service_result\":7"), std::string::npos) << l;
  }
  // Collected: nothing is left.
  auto after = run_command(lrts({"results", "--application-id", "fire-and-forget"}));
  EXPECT_EQ(after.exit_code, 0) << after.err;
  EXPECT_TRUE(json_lines(after.out).empty());
  EXPECT_NE(after.err.find("nothing waits"), std::string::npos) << after.err;
}

TEST_F(DeliveryTest, ACollectorKilledWhileItWaitsLeavesTheApplicationDetached) {
  // A grace of 1 s: had the collector attached the application, its death would cost the task
  // that still runs.
  std::vector<std::string> flags = kFastScheduler;
  flags.insert(flags.end(), {"--app-grace", "1"});
  Daemon& scheduler = cluster_.start_scheduler(flags);
  cluster_.start_worker(2);
  for (const char* fields : {R"({"ms":100,"value":1})", R"({"ms":5000,"value":2})"}) {
    auto sub = run_command(
        lrts({"submit", "test.sleep", "--fields", fields, "--application-id", "collected"}));
    ASSERT_EQ(sub.exit_code, 0) << sub.err;
  }
  Daemon collector(lrts({"results", "--application-id", "collected", "--wait"}),
                   dir_.file("collector.log"));
  ASSERT_TRUE(wait_until([&] { return collector.log_contains("\"service_result\":1"); }))
      << collector.log();
  collector.signal(SIGKILL);
  ASSERT_NE(collector.wait_exit(), -1);
  ASSERT_TRUE(wait_until([&] { return scheduler.log_contains("went silent; its tasks run on"); }))
      << scheduler.log();
  auto rest =
      run_command(lrts({"results", "--application-id", "collected", "--wait", "--timeout", "30"}));
  EXPECT_EQ(rest.exit_code, 0) << rest.err;
  const auto lines = json_lines(rest.out);
  ASSERT_EQ(lines.size(), 1u) << rest.out;
  EXPECT_NE(lines[0].find("\"status\":\"finished\""), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"service_result\":2"), std::string::npos) << lines[0];
}

TEST_F(DeliveryTest, SubmitThatGivesUpWaitingLeavesItsTasksRunningToBeCollected) {
  std::vector<std::string> flags = kFastScheduler;
  flags.insert(flags.end(), {"--app-grace", "1"});
  cluster_.start_scheduler(flags);
  cluster_.start_worker(2);
  auto sub =
      run_command(lrts({"submit", "test.sleep", "--fields", R"({"ms":2500,"value":5})", "--count",
                        "2", "--wait", "--wait-timeout", "0.5", "--application-id", "impatient"}));
  EXPECT_EQ(sub.exit_code, 3) << sub.err;
  EXPECT_NE(sub.err.find("lrts results --application-id impatient"), std::string::npos) << sub.err;
  auto rest =
      run_command(lrts({"results", "--application-id", "impatient", "--wait", "--timeout", "30"}));
  EXPECT_EQ(rest.exit_code, 0) << rest.err;
  const auto lines = json_lines(rest.out);
  ASSERT_EQ(lines.size(), 2u) << rest.out;
  for (const auto& l : lines) {
    EXPECT_NE(l.find("\"status\":\"finished\""), std::string::npos) << l;
  }
}

TEST_F(DeliveryTest, AResultHeldByAWorkerThroughASchedulerRestartKeepsItsAttempt) {
  const std::vector<std::string> durable = {"--reclaim-grace",  "5", "--heartbeat-interval", "0.2",
                                            "--worker-timeout", "2"};
  Daemon& first = cluster_.start_scheduler(durable);
  cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService started;  // marks the task running, then it sleeps
  started.ms = 1000;
  started.started = dir_.file("started");
  started.finished = dir_.file("finished");
  const std::string id = app.schedule_service(started);
  ASSERT_TRUE(wait_for_file(started.started));
  first.signal(SIGKILL);
  ASSERT_NE(first.wait_exit(), -1);
  // The task ends while the scheduler is down: its worker holds the result.
  ASSERT_TRUE(wait_for_file(started.finished));
  cluster_.start_scheduler(durable);
  const auto r = app.wait_for(id, 30s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.attempt(), 1u);  // the attempt that produced it (it came back as 0)
}

TEST_F(DeliveryTest, ARestartedSchedulerServesTasksThatWereNeverAssignedAtOnce) {
  // A reclaim grace of 60 s only holds back what was running: queued tasks go at once.
  const std::vector<std::string> durable = {"--reclaim-grace", "60"};
  Daemon& first = cluster_.start_scheduler(durable);
  ClientApplication app(info());
  app.start_application();
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) ids.push_back(app.schedule_service(test_services::NoopService()));
  ASSERT_TRUE(app.flush(30s));
  first.signal(SIGKILL);
  ASSERT_NE(first.wait_exit(), -1);
  cluster_.start_scheduler(durable);
  cluster_.start_worker(2);
  const auto start = std::chrono::steady_clock::now();
  for (const auto& r : app.wait_for_multi(ids, 50s)) ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  EXPECT_TRUE(cluster_.scheduler_logs().find("500 task(s) queued") != std::string::npos)
      << cluster_.scheduler_logs();
}

TEST_F(DeliveryTest, FieldsAndResultsLargerThanAnyMessageTravelInChunks) {
  // Messages of at most 1 MiB anywhere, payloads of 64 MiB each way.
  cluster_.start_scheduler({"--max-message-mb", "1"});
  cluster_.start_worker(1, {"--max-message-mb", "1"});
  ClientApplication app(info());
  app.start_application();
  test_services::BlobService b;
  b.data = test_services::pattern(64u << 20, 3);
  b.result_bytes = 64u << 20;
  b.seed = 4;
  const auto r = app.wait_for(app.schedule_service(b), 120s);
  ASSERT_TRUE(r.ok()) << r.error();
  const auto got = r.service_result<test_services::BlobResult>();
  EXPECT_EQ(got.fields_size, b.data.size());
  EXPECT_EQ(got.fields_hash, test_services::fnv1a(b.data));
  EXPECT_EQ(got.data.size(), b.result_bytes);
  EXPECT_EQ(test_services::fnv1a(got.data),
            test_services::fnv1a(test_services::pattern(64u << 20, 4)));
}

TEST_F(DeliveryTest, AGibibyteOfFieldsAndAGibibyteOfResultArriveIntactAndTheSchedulerHoldsNeither) {
  if (kUnderAddressSanitizer)
    GTEST_SKIP() << "gigabyte payloads take minutes under AddressSanitizer";
  Daemon& scheduler = cluster_.start_scheduler();  // with its journal: payloads are spooled
  Daemon& worker = cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  constexpr uint64_t kGiB = 1ull << 30;
  test_services::BlobService b;
  b.data = test_services::pattern(kGiB, 5);
  b.result_bytes = kGiB;
  b.seed = 6;
  const uint64_t fields_hash = test_services::fnv1a(b.data);
  const std::string id = app.schedule_service(b);
  b.data = {};
  const auto r = app.wait_for(id, 240s);
  ASSERT_TRUE(r.ok()) << r.error();
  {
    const auto got = r.service_result<test_services::BlobResult>();
    EXPECT_EQ(got.fields_size, kGiB);
    EXPECT_EQ(got.fields_hash, fields_hash);
    ASSERT_EQ(got.data.size(), kGiB);
    EXPECT_EQ(test_services::fnv1a(got.data),
              test_services::fnv1a(test_services::pattern(kGiB, 6)));
  }
  // A few chunks at a time, never the payload: the scheduler streams both through its state
  // directory. The worker holds each payload once (the fields until the task ends, the result
  // until the scheduler has it), never a second copy.
  EXPECT_LT(memory_mib(scheduler.pid(), "VmHWM"), 256) << "scheduler peak";
  EXPECT_LT(memory_mib(worker.pid(), "VmHWM"), 2048 + 256) << "worker peak";
}

TEST_F(DeliveryTest, FourHundredTasksWithOneMegabyteFieldsAllRun) {
  // 400 MB of fields: once one ASSIGN of 176 MB that the worker refused, forever.
  cluster_.start_scheduler();
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::BlobService b;
  b.data = std::string(1u << 20, 'f');
  std::vector<std::string> ids;
  for (int i = 0; i < 400; ++i) {
    b.seed = i;
    ids.push_back(app.schedule_service(b));
  }
  const uint64_t hash = test_services::fnv1a(b.data);
  for (const auto& r : app.wait_for_multi(ids, 180s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r.service_result<test_services::BlobResult>().fields_hash, hash);
  }
}

TEST_F(DeliveryTest, AThousandLargeResultsReachAnApplicationThatComesBackAfterItsTimeout) {
  cluster_.start_scheduler(kFastScheduler);
  cluster_.start_worker(2);
  std::vector<std::string> ids;
  {
    ClientApplication app(info("returns-late"));
    app.start_application();
    test_services::BlobService b;
    b.result_bytes = 100'000;
    for (int i = 0; i < 1000; ++i) {
      b.seed = i;
      ids.push_back(app.schedule_service(b));
    }
    ASSERT_TRUE(app.flush(60s));
    app.detach_application();
  }
  // Away longer than --app-timeout while the results pile up.
  ASSERT_TRUE(
      wait_until([&] { return cluster_.scheduler_logs().find("detached") != std::string::npos; }));
  ClientApplication back(info("returns-late"));
  back.start_application();
  ASSERT_TRUE(back.wait_connected(20s));
  std::set<std::string> seen;
  for (const auto& r : back.as_completed(ids, 120s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    EXPECT_EQ(r.service_result<test_services::BlobResult>().data.size(), 100'000u);
    EXPECT_TRUE(seen.insert(r.service_id()).second);
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST_F(DeliveryTest, AResultOverTheWorkersLimitFailsOnceNamingItsSizeAndTheLimit) {
  cluster_.start_scheduler();
  cluster_.start_worker(1, {"--max-result-mb", "1"});
  ClientApplication app(info());
  app.start_application();
  test_services::BlobService b;
  b.result_bytes = 2u << 20;
  TaskOptions o;
  o.max_retries = 3;
  const auto r = app.wait_for(app.schedule_service(b, o), 60s);
  EXPECT_EQ(r.status(), ServiceStatus::failed);
  EXPECT_EQ(r.attempt(), 1u);  // not retried: it would only fail again
  EXPECT_NE(r.error().find("2.0 MB"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("--max-result-mb"), std::string::npos) << r.error();
  EXPECT_NE(r.error().find("1.0 MB"), std::string::npos) << r.error();
}

TEST_F(DeliveryTest, AResultOfExactlyTheLimitPassesAndOneKibibyteBeyondItsAllowanceFails) {
  // The limit counts what run returns; the encoding around it (here a BlobResult's other
  // fields) has a 64 KiB allowance.
  cluster_.start_scheduler();
  cluster_.start_worker(1, {"--max-result-mb", "1"});
  ClientApplication app(info());
  app.start_application();
  test_services::BlobService at;
  at.result_bytes = 1u << 20;
  const auto ok = app.wait_for(app.schedule_service(at), 60s);
  ASSERT_TRUE(ok.ok()) << ok.error();
  EXPECT_EQ(ok.service_result<test_services::BlobResult>().data.size(), 1u << 20);
  test_services::BlobService past;
  past.result_bytes = (1u << 20) + (65u << 10);
  const auto r = app.wait_for(app.schedule_service(past), 60s);
  EXPECT_EQ(r.status(), ServiceStatus::failed);
  EXPECT_NE(r.error().find("--max-result-mb"), std::string::npos) << r.error();
}

TEST_F(DeliveryTest, ResultsAWorkerHeldThroughASchedulerOutageAllArrive) {
  const std::vector<std::string> durable = {"--heartbeat-interval", "0.2", "--worker-timeout", "5"};
  Daemon& first = cluster_.start_scheduler(durable);
  cluster_.start_worker(2);
  ClientApplication app(info());
  app.start_application();
  test_services::BlobService b;
  b.result_bytes = 500'000;  // 200 of them: up to 100 MB held by the worker during the outage
  std::vector<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    b.seed = i;
    ids.push_back(app.schedule_service(b));
  }
  ASSERT_TRUE(app.flush(30s));
  ASSERT_TRUE(wait_until([&] { return app.results_waiting() > 0; }));
  first.signal(SIGKILL);  // with results flowing: the worker finishes what it holds meanwhile
  ASSERT_NE(first.wait_exit(), -1);
  cluster_.start_scheduler(durable);
  size_t n = 0;
  for (const auto& r : app.as_completed(ids, 120s)) {
    ASSERT_TRUE(r.ok()) << r.error();
    ++n;
  }
  EXPECT_EQ(n, ids.size());
}

// ---- a task's processes ---------------------------------------------------------------------

pid_t read_pid(const std::string& path) {
  pid_t p = 0;
  std::ifstream(path) >> p;
  return p;
}

class TaskProcessesTest : public DeliveryTest {
 protected:
  // Runs a test.fork task and returns the pid of the child it started (0 if none).
  pid_t fork_task(ClientApplication& app, const std::string& mode, int ms, bool escape,
                  TaskOptions options, ServiceStatus expected) {
    test_services::ForkService f;
    f.pid_file = dir_.file("child-" + mode + std::to_string(escape));
    f.mode = mode;
    f.ms = ms;
    f.escape = escape;
    const std::string id = app.schedule_service(f, options);
    EXPECT_TRUE(wait_for_file(f.pid_file));
    const pid_t child = read_pid(f.pid_file);
    if (expected != ServiceStatus::cancelled) {
      EXPECT_EQ(app.wait_for(id, 60s).status(), expected);
    } else {
      EXPECT_TRUE(app.cancel(id));
      EXPECT_EQ(app.wait_for(id, 60s).status(), ServiceStatus::cancelled);
    }
    return child;
  }
};

TEST_F(TaskProcessesTest, WhatATaskStartedDiesWhenItEndsIsStoppedOrItsSlotDies) {
  cluster_.start_scheduler();
  cluster_.start_worker(1);
  ClientApplication app(info());
  app.start_application();
  TaskOptions once;
  once.max_retries = 0;
  // It returns, leaving a child behind (in its group, and one that left it with setsid).
  pid_t child = fork_task(app, "return", 0, false, once, ServiceStatus::finished);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); })) << "after a normal end";
  child = fork_task(app, "return", 0, true, once, ServiceStatus::finished);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); })) << "escaped with setsid";
  // It runs past its time limit.
  TaskOptions limited = once;
  limited.timeout = std::chrono::milliseconds(300);
  child = fork_task(app, "sleep", 60'000, false, limited, ServiceStatus::timed_out);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); })) << "after a timeout";
  // It is cancelled.
  child = fork_task(app, "sleep", 60'000, false, once, ServiceStatus::cancelled);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); })) << "after a cancel";
  // Its slot crashes.
  child = fork_task(app, "segv", 0, true, once, ServiceStatus::failed);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); })) << "after a slot crash";
}

TEST_F(TaskProcessesTest, WhatATaskStartedDiesWithAStoppedWorker) {
  cluster_.start_scheduler();
  Daemon& w = cluster_.start_worker(1, {"--on-stop", "handback"});
  ClientApplication app(info());
  app.start_application();
  test_services::ForkService f;
  f.pid_file = dir_.file("child");
  f.mode = "sleep";
  f.ms = 60'000;
  app.schedule_service(f);
  ASSERT_TRUE(wait_for_file(f.pid_file));
  const pid_t child = read_pid(f.pid_file);
  ASSERT_TRUE(process_alive(child));
  w.signal(SIGTERM);
  ASSERT_NE(w.wait_exit(), -1);
  EXPECT_TRUE(wait_until([&] { return !process_alive(child); }));
}

}  // namespace
}  // namespace lrts::testing
