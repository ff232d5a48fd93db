// lrts autoscale against a real Slurm: slurmctld, slurmd and munged on loopback, one node with
// 16 CPUs, started once for the suite by scripts/slurm-local.sh in a temp dir. The worker jobs
// are real sbatch jobs running the real `lrts worker`. Skipped (with the reason) where Slurm is
// not installed; CI installs it (scripts/packages-slurm.txt).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <lrts/admin.hpp>
#include <map>
#include <sstream>
#include <thread>

#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

const std::vector<std::string> kFastScheduler = {
    "--heartbeat-interval", "0.2", "--worker-timeout", "2", "--app-timeout", "2"};

// ---- without Slurm: the worker's --idle-timeout ------------------------------------------------

class IdleTimeoutTest : public ClusterFixture {};

TEST_F(IdleTimeoutTest, AnIdleWorkerLeavesCleanlyAndABusyOneStays) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& a = cluster_.start_worker(1, {"--idle-timeout", "2"});
  Daemon& b = cluster_.start_worker(1, {"--idle-timeout", "2"});
  ASSERT_TRUE(cluster_.wait_for_connected(2));
  // One of them takes a task of 6 s, three times the idle time: that one stays.
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 6000;
  s.value = 5;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started));
  ASSERT_TRUE(wait_until([&] { return !a.running() || !b.running(); }, 10s));
  Daemon& idle = a.running() ? b : a;
  Daemon& busy = a.running() ? a : b;
  const int status = idle.wait_exit(10s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(idle.log_contains("--idle-timeout"));
  EXPECT_TRUE(busy.running());
  const auto r = app.wait_for(id, 20s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r.service_result<int64_t>(), 5);
  // Then it is idle too, and leaves.
  EXPECT_EQ(busy.wait_exit(10s), 0);
  EXPECT_TRUE(wait_until([&] { return Admin(cluster_.admin_options()).status().workers == 0; }));
}

// ---- with Slurm ---------------------------------------------------------------------------------

// A shell command line (Slurm's commands are found on PATH).
CommandResult sh(const std::string& line) { return run_command({"/bin/sh", "-c", line}, 60s); }

std::string slurm_dir;   // the local cluster's state, empty if it did not start
std::string slurm_skip;  // why the Slurm tests are skipped

class AutoscaleTest : public ClusterFixture {
 public:
  static void SetUpTestSuite() {
    if (sh("command -v sbatch && PATH=$PATH:/usr/sbin command -v slurmctld").exit_code != 0) {
      slurm_skip = "Slurm is not installed (apt-get install $(cat scripts/packages-slurm.txt))";
      return;
    }
    char tmpl[] = "/tmp/lrts-slurm-XXXXXX";
    slurm_dir = ::mkdtemp(tmpl);
    const auto r =
        run_command({source_dir() + "/scripts/slurm-local.sh", "start", slurm_dir}, 120s);
    if (r.exit_code != 0) {
      slurm_skip.clear();
      ADD_FAILURE() << "the local Slurm did not start: " << r.out << r.err;
      slurm_dir.clear();
      return;
    }
    // Its lines are `export NAME=VALUE`: this process and what it starts use that cluster.
    std::istringstream lines(r.out);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind("export ", 0) != 0) continue;
      const auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string value = line.substr(eq + 1);
      if (value.size() >= 2 && (value.front() == '\'' || value.front() == '"')) {
        value = value.substr(1, value.size() - 2);
      }
      ::setenv(line.substr(7, eq - 7).c_str(), value.c_str(), 1);
    }
  }
  static void TearDownTestSuite() {
    if (!slurm_dir.empty()) {
      (void)run_command({source_dir() + "/scripts/slurm-local.sh", "stop", slurm_dir}, 120s);
    }
  }

 protected:
  void SetUp() override {
    if (!slurm_skip.empty()) GTEST_SKIP() << slurm_skip;
    if (slurm_dir.empty()) GTEST_FAIL() << "no local Slurm";
    job_name_ = "lrts-test-" + std::to_string(::getpid()) + "-" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name();
    job_name_.resize(std::min<size_t>(job_name_.size(), 60));
  }
  void TearDown() override {
    if (!slurm_dir.empty()) (void)sh("scancel --name=" + job_name_);
    ClusterFixture::TearDown();
    if (HasFailure() && autoscaler_) std::fprintf(stderr, "%s\n", autoscaler_->log().c_str());
  }

  Daemon& start_autoscaler(std::vector<std::string> flags) {
    std::vector<std::string> argv = {
        lrts_bin(),   "autoscale", "--scheduler-port", std::to_string(cluster_.port()),
        "--job-name", job_name_,   "--job-output",     dir_.file("job-%j.out"),
        "--interval", "0.5"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    for (const char* f : {"--", "--service-lib"}) argv.emplace_back(f);
    argv.push_back(test_services_lib());
    autoscaler_ = std::make_unique<Daemon>(argv, dir_.file("autoscale.log"));
    return *autoscaler_;
  }
  // Our jobs Slurm has not ended: id -> state.
  std::map<std::string, std::string> jobs() const {
    std::map<std::string, std::string> out;
    const auto r = sh("squeue --noheader --name=" + job_name_ + " --format='%i %T'");
    std::istringstream lines(r.out);
    std::string id, state;
    while (lines >> id >> state) out[id] = state;
    return out;
  }
  std::vector<std::string> submit(ClientApplication& app, int n, int ms) {
    test_services::SleepService s;
    s.ms = ms;
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      s.value = i;
      ids.push_back(app.schedule_service(s));
    }
    return ids;
  }
  // Every result arrives once, with its value.
  void expect_all_once(ClientApplication& app, const std::vector<std::string>& ids,
                       std::chrono::milliseconds timeout) {
    std::map<std::string, int> seen;
    for (const auto& r : app.as_completed(ids, timeout)) {
      ASSERT_TRUE(r.ok()) << r.error();
      ++seen[r.service_id()];
    }
    ASSERT_EQ(seen.size(), ids.size());
    for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << id;
  }

  std::string job_name_;
  std::unique_ptr<Daemon> autoscaler_;
};

// Samples the connected workers while a run goes on.
class WorkerCounter {
 public:
  explicit WorkerCounter(AdminOptions o)
      : thread_([this, o] {
          Admin admin(o);
          while (!stop_) {
            try {
              const auto s = admin.status();
              peak_ = std::max<uint64_t>(peak_, s.workers);
              if (s.workers > 0 && first_.load() == 0) first_ = ms_now();
              if (s.busy_slots > 0 && first_busy_.load() == 0) first_busy_ = ms_now();
            } catch (const AdminError&) {
            }
            std::this_thread::sleep_for(100ms);  // a sampling period, not a synchronisation
          }
        }) {}
  ~WorkerCounter() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t peak() const { return peak_; }
  int64_t first_busy_ms() const { return first_busy_; }
  static int64_t ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> peak_{0};
  std::atomic<int64_t> first_{0};
  std::atomic<int64_t> first_busy_{0};
  std::thread thread_;
};

TEST_F(AutoscaleTest, FromNoWorkerFortyTasksBringWorkerJobsThatFinishThemAndEndWhenIdle) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& scaler = start_autoscaler({"--max-workers", "8", "--idle-timeout", "3"});
  ASSERT_TRUE(wait_until([&] { return scaler.log_contains("autoscaling"); }));
  EXPECT_TRUE(jobs().empty());  // nothing queued: no job
  WorkerCounter counter(cluster_.admin_options());
  ClientApplication app(info());
  app.start_application();
  const auto ids = submit(app, 40, 2000);
  expect_all_once(app, ids, 120s);
  counter.stop();
  EXPECT_GE(counter.peak(), 2u);
  EXPECT_LE(counter.peak(), 8u);
  EXPECT_TRUE(scaler.log_contains("submitted worker job"));
  // Idle, the workers end, and their jobs with them.
  EXPECT_TRUE(wait_until([&] { return jobs().empty(); }, 60s)) << jobs().size() << " job(s) left";
  EXPECT_EQ(Admin(cluster_.admin_options()).status().workers, 0u);
  EXPECT_TRUE(scaler.running());
}

TEST_F(AutoscaleTest, AWorkerJobCancelledWithScancelLosesNoTask) {
  cluster_.start_scheduler(kFastScheduler);
  start_autoscaler({"--max-workers", "3", "--idle-timeout", "3"});
  ClientApplication app(info());
  app.start_application();
  const auto ids = submit(app, 18, 1500);
  // A job whose worker holds a task: cancelled mid-run.
  std::string victim;
  ASSERT_TRUE(wait_until(
      [&] {
        for (const WorkerInfo& w : Admin(cluster_.admin_options()).workers()) {
          if (w.held > 0 && w.name.rfind(job_name_ + "-", 0) == 0) {
            victim = w.name.substr(job_name_.size() + 1);
            return true;
          }
        }
        return false;
      },
      60s));
  ASSERT_EQ(sh("scancel " + victim).exit_code, 0);
  ASSERT_TRUE(wait_until([&] { return !jobs().count(victim); }, 30s));
  expect_all_once(app, ids, 120s);
}

TEST_F(AutoscaleTest, ADeadlineRunEndsNearItsDeadlineWithFewerWorkersThanTheMaximum) {
  cluster_.start_scheduler(kFastScheduler);
  // 36 tasks of 2 s: 72 s of work. Sixteen workers would end it in under 10 s; by a deadline
  // of 40 s a few are enough.
  const auto start = std::chrono::steady_clock::now();
  Daemon& scaler =
      start_autoscaler({"--max-workers", "16", "--idle-timeout", "3", "--deadline", "40s"});
  WorkerCounter counter(cluster_.admin_options());
  ClientApplication app(info());
  app.start_application();
  const auto ids = submit(app, 36, 2000);
  expect_all_once(app, ids, 120s);
  const double took =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  counter.stop();
  std::fprintf(stderr, "deadline run: ended after %.1f s (deadline 40 s), peak %llu worker(s)\n",
               took, static_cast<unsigned long long>(counter.peak()));
  EXPECT_LT(counter.peak(), 16u);
  EXPECT_LE(took, 40 + 8) << "late";
  EXPECT_GE(took, 40 * 0.5) << "early: more workers than the deadline needs";
  EXPECT_TRUE(scaler.log_contains("finish predicted"));
  const ClusterStatus st = Admin(cluster_.admin_options()).status();
  EXPECT_EQ(st.queued + st.running, 0u);
}

TEST_F(AutoscaleTest, AWorkerJobNearItsTimeLimitDrainsAndHandsBackWhatItCannotFinish) {
  cluster_.start_scheduler(kFastScheduler);
  // Jobs of one minute, warned 30 s before (Slurm sends it 30 to 60 s before the limit): the
  // worker drains 15 s, then hands back the task it runs, well before Slurm would kill it.
  start_autoscaler(
      {"--max-workers", "1", "--time-limit", "1", "--stop-before", "30", "--idle-timeout", "60"});
  ClientApplication app(info());
  app.start_application();
  test_services::SleepService s;
  s.ms = 100'000;  // longer than a job lives
  s.value = 1;
  s.started = dir_.file("started");
  const std::string id = app.schedule_service(s);
  ASSERT_TRUE(wait_for_file(s.started, 60s));
  const auto first = jobs();
  ASSERT_EQ(first.size(), 1u);
  const std::string job = first.begin()->first;
  ::unlink(s.started.c_str());
  ASSERT_TRUE(wait_until([&] { return !jobs().count(job); }, 120s));
  const std::string out = read_file(dir_.file("job-" + job + ".out"));
  EXPECT_NE(out.find("draining"), std::string::npos) << out;
  EXPECT_NE(out.find("drain timeout passed"), std::string::npos) << out;
  EXPECT_EQ(out.find("TIME LIMIT"), std::string::npos) << "killed by Slurm: " << out;
  // Handed back, the task runs again in the next job, on the same attempt.
  ASSERT_TRUE(wait_for_file(s.started, 60s));
  const auto tasks = Admin(cluster_.admin_options()).tasks();
  ASSERT_EQ(tasks.size(), 1u);
  EXPECT_EQ(tasks[0].state, "running");
  EXPECT_EQ(tasks[0].attempt, 1u) << "a hand-back uses no attempt";
  EXPECT_TRUE(tasks[0].error.empty());
}

TEST_F(AutoscaleTest, AFailingSbatchIsRetriedWithABackOffAndReportedNeverInALoop) {
  cluster_.start_scheduler(kFastScheduler);
  Daemon& scaler = start_autoscaler({"--max-workers", "4", "--partition", "nosuch"});
  ClientApplication app(info());
  app.start_application();
  const auto ids = submit(app, 4, 100);
  ASSERT_TRUE(wait_until([&] { return scaler.log_contains("submitting again in 4 s"); }, 30s))
      << scaler.log();
  // Slurm's reason is in the log; the tries spread out (2 s, then 4 s, then 8 s...).
  EXPECT_TRUE(scaler.log_contains("sbatch failed"));
  EXPECT_TRUE(scaler.log_contains("nosuch") || scaler.log_contains("partition"));
  const size_t tries = occurrences(scaler.log(), "sbatch failed");
  EXPECT_LE(tries, 3u);
  EXPECT_TRUE(jobs().empty());
  EXPECT_TRUE(scaler.running());
}

TEST_F(AutoscaleTest, JobsThatEndBeforeTheirWorkerConnectsAreNotSubmittedAgainAndAgain) {
  cluster_.start_scheduler(kFastScheduler);
  // A flag the worker refuses: every job ends at once.
  Daemon& scaler = start_autoscaler({"--max-workers", "2", "--", "--no-such-flag"});
  ClientApplication app(info());
  app.start_application();
  const auto ids = submit(app, 4, 100);
  ASSERT_TRUE(wait_until([&] { return scaler.log_contains("submitting again in 4 s"); }, 60s))
      << scaler.log();
  EXPECT_TRUE(scaler.log_contains("ended before its worker connected"));
  EXPECT_LE(occurrences(scaler.log(), "submitted worker job"), 6u);
  EXPECT_TRUE(scaler.running());
  // Stopped, it cancels what is pending and ends at once.
  scaler.signal(SIGTERM);
  EXPECT_EQ(scaler.wait_exit(20s), 0);
}

}  // namespace
}  // namespace lrts::testing
