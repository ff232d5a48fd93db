#include <gtest/gtest.h>

#include <ctime>

#include "autoscale/autoscaler.hpp"
#include "autoscale/policy.hpp"
#include "autoscale/slurm.hpp"

namespace lrts::autoscale {
namespace {

using namespace std::chrono_literals;

PolicyOptions options(uint32_t max, uint32_t min = 0, uint32_t slots = 1) {
  PolicyOptions o;
  o.max_workers = max;
  o.min_workers = min;
  o.slots_per_worker = slots;
  return o;
}
PolicyOptions to_deadline(uint32_t max, TimePoint deadline) {
  PolicyOptions o = options(max);
  o.deadline = deadline;
  return o;
}

Job pending(std::string id, TimePoint at = {}) {
  Job j;
  j.id = std::move(id);
  j.submitted = at;
  return j;
}
Job serving(std::string id, uint32_t held = 1, TimePoint at = {}) {
  Job j;
  j.id = std::move(id);
  j.running = j.connected = true;
  j.held = held;
  j.submitted = at;
  return j;
}

TEST(AutoscalePolicyTest, ByQueueASlotForEveryUnfinishedTaskUpToTheMaximum) {
  Policy p(options(8, 0, 2));
  const TimePoint now = TimePoint{} + 100s;
  ClusterView c;
  c.queued = 5;
  EXPECT_EQ(p.decide(c, {}, now).submit, 3u);  // 5 tasks, 2 slots a job
  c.queued = 40;
  EXPECT_EQ(p.decide(c, {}, now).target, 8u);
  // Jobs pending count: nothing more is submitted while they start.
  std::vector<Job> jobs;
  for (int i = 0; i < 8; ++i) jobs.push_back(pending(std::to_string(i)));
  EXPECT_EQ(p.decide(c, jobs, now).submit, 0u);
  // The queue drained: pending jobs are cancelled, the newest first; running ones stay (they
  // end when idle).
  c.queued = 0;
  c.running = 2;
  c.slots = 2;
  jobs = {serving("1"), pending("2", now - 5s), pending("3", now - 1s)};
  const Decision d = p.decide(c, jobs, now);
  EXPECT_EQ(d.target, 1u);
  EXPECT_EQ(d.submit, 0u);
  EXPECT_EQ(d.cancel, (std::vector<std::string>{"3", "2"}));
  EXPECT_TRUE(d.drain.empty());
}

TEST(AutoscalePolicyTest, WorkersThatAreNotOursServeTooAndTheMinimumStays) {
  Policy p(options(10, 2));
  ClusterView c;
  c.queued = 6;
  c.slots = 4;  // four slots of workers started by hand
  EXPECT_EQ(p.decide(c, {}, TimePoint{}).target, 2u);
  c.queued = 0;
  c.slots = 0;
  EXPECT_EQ(p.decide(c, {}, TimePoint{}).target, 2u);  // --min-workers
}

TEST(AutoscalePolicyTest, ToADeadlineTheFewestSlotsThatFinishTheKnownWorkInTime) {
  const TimePoint now = TimePoint{} + 1000s;
  Policy p(to_deadline(20, now + 60s));
  p.note_startup(10s);
  ClusterView c;
  c.queued = 40;
  c.unknown_tasks = 40;
  // Nothing measured: one worker probes.
  Decision d = p.decide(c, {}, now);
  EXPECT_EQ(d.target, 1u);
  EXPECT_FALSE(d.finish_in_s.has_value());
  // 40 tasks of 5 s = 200 s of work; 50 s left after the start-up, less half a task for the
  // last wave: 47.5 s -> 5 slots.
  c.unknown_tasks = 0;
  c.work_s = 200;
  c.longest_s = 5;
  d = p.decide(c, {}, now);
  EXPECT_EQ(d.target, 5u);
  EXPECT_TRUE(d.deadline_reachable);
  ASSERT_TRUE(d.finish_in_s.has_value());
  EXPECT_NEAR(*d.finish_in_s, 40, 1e-9);
  EXPECT_LT(d.target, 20u);  // fewer than the maximum
  // Later, with less time left for the same work, it needs more.
  d = p.decide(c, {}, now + 30s);
  EXPECT_EQ(d.target, 12u);  // 200 / (20 - 2.5)
  // Out of reach: the maximum, and it says so.
  d = p.decide(c, {}, now + 58s);
  EXPECT_EQ(d.target, 20u);
  EXPECT_FALSE(d.deadline_reachable);
}

TEST(AutoscalePolicyTest, ASurplusOverTheDeadlinesNeedDrainsTheIdlestWorkersAfterSomeRounds) {
  const TimePoint now = TimePoint{} + 1000s;
  Policy p(to_deadline(20, now + 1000s));  // drains after 3 rounds over
  p.note_startup(0s);
  ClusterView c;
  c.queued = 10;
  c.running = 4;
  c.slots = 4;
  c.work_s = 14 * 10;  // 140 s of work, 1000 s left: one slot is enough
  c.longest_s = 10;
  const std::vector<Job> jobs = {serving("1", 1, now - 30s), serving("2", 1, now - 20s),
                                 serving("3", 0, now - 10s), serving("4", 1, now - 5s)};
  EXPECT_TRUE(p.decide(c, jobs, now).drain.empty());
  EXPECT_TRUE(p.decide(c, jobs, now + 2s).drain.empty());
  const Decision d = p.decide(c, jobs, now + 4s);
  EXPECT_EQ(d.target, 1u);
  // The one holding nothing first, then the newest.
  EXPECT_EQ(d.drain, (std::vector<std::string>{"3", "4", "2"}));
  // Draining workers are on their way out: no second drain, no replacement.
  std::vector<Job> after = jobs;
  for (Job& j : after) j.draining = j.id != "1";
  for (int i = 0; i < 5; ++i) {
    const Decision again = p.decide(c, after, now + 6s + 2s * i);
    EXPECT_TRUE(again.drain.empty());
    EXPECT_EQ(again.submit, 0u);
  }
}

TEST(AutoscalePolicyTest, DrainingJobsCountAgainstTheMaximumAndYoungWorkersAreNotDrained) {
  const TimePoint now = TimePoint{} + 1000s;
  Policy p(to_deadline(4, now + 10s));
  p.note_startup(0s);
  ClusterView c;
  c.queued = 100;
  c.work_s = 1000;  // out of reach: the maximum
  c.longest_s = 10;
  std::vector<Job> jobs = {serving("1"), serving("2")};
  jobs[0].draining = jobs[1].draining = true;
  const Decision d = p.decide(c, jobs, now);
  EXPECT_EQ(d.target, 4u);
  EXPECT_EQ(d.submit, 2u);  // four jobs in all, two of them on their way out

  // Far more than needed, but the workers connected just now: none is drained.
  Policy q(to_deadline(10, now + 10000s));
  q.note_startup(0s);
  c.queued = 2;
  c.running = 4;
  c.slots = 4;
  c.work_s = 6;
  c.longest_s = 1;
  std::vector<Job> young;
  for (const char* id : {"1", "2", "3", "4"}) {
    young.push_back(serving(id));
    young.back().connected_at = now - 10s;
  }
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(q.decide(c, young, now + 1s * i).drain.empty());
  // A minute on, they are (after the rounds it takes).
  bool drained = false;
  for (int i = 0; i < 3; ++i) drained |= !q.decide(c, young, now + 60s + 1s * i).drain.empty();
  EXPECT_TRUE(drained);
}

TEST(AutoscalePolicyTest, StartUpTimeIsMeasured) {
  Policy p(options(1));
  p.note_startup(8s);
  EXPECT_EQ(p.startup(), Duration(8s));
  p.note_startup(16s);
  EXPECT_EQ(p.startup(), Duration(10s));
}

TEST(AutoscaleDeadlineTest, ParsesDurationsTimesOfDayDatesAndUnixSeconds) {
  using SC = std::chrono::system_clock;
  const SC::time_point now = SC::from_time_t(1'800'000'000);
  EXPECT_EQ(*parse_deadline("90s", now), now + 90s);
  EXPECT_EQ(*parse_deadline("30m", now), now + 30min);
  EXPECT_EQ(*parse_deadline("30min", now), now + 30min);
  EXPECT_EQ(*parse_deadline("1h30m", now), now + 90min);
  EXPECT_EQ(*parse_deadline("@1800000600", now), now + 10min);
  const auto at = parse_deadline("12:00", now);
  ASSERT_TRUE(at.ok());
  EXPECT_GT(*at, now);
  EXPECT_LE(*at, now + 24h);
  EXPECT_TRUE(parse_deadline("2030-01-01T00:00", now).ok());
  EXPECT_FALSE(parse_deadline("2099-01-01T00:00", now).ok());  // more than ten years away
  // A time of day already passed today is tomorrow's.
  {
    const std::time_t t = SC::to_time_t(now - 1h);
    std::tm local{};
    localtime_r(&t, &local);
    char text[8];
    std::strftime(text, sizeof text, "%H:%M", &local);
    const auto r = parse_deadline(text, now);
    ASSERT_TRUE(r.ok()) << text << ": " << r.error();
    EXPECT_GT(*r - now, 22h);
    EXPECT_LE(*r - now, 24h);
  }
  for (const char* bad : {"",
                          "soon",
                          "10x",
                          "25:00",
                          "@12",
                          "2000-01-01T00:00",
                          "-5m",
                          "0s",
                          ".s",
                          "1.2.3s",
                          "1..s",
                          "99999999999999999999s",
                          "3000000h",
                          "2030-13-45T10:00",
                          "2030-02-30T10:00",
                          "@nan",
                          "@1e30",
                          "12:60",
                          "1h-5m",
                          "5"}) {
    const auto r = parse_deadline(bad, now);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.error().find("--deadline"), std::string::npos) << bad;
    }
  }
}

TEST(AutoscaleOptionsTest, TimeLimitsAreSlurmsAndTheStopComesInsideThem) {
  EXPECT_EQ(*parse_time_limit("60"), 3600);
  EXPECT_EQ(*parse_time_limit("1:30"), 90);
  EXPECT_EQ(*parse_time_limit("4:00:00"), 4 * 3600);
  EXPECT_EQ(*parse_time_limit("1-12"), 36 * 3600);
  EXPECT_EQ(*parse_time_limit("2-00:30:00"), 2 * 86400 + 1800);
  for (const char* bad : {"", "abc", "1:2:3:4", "-5", "0", "1:x"}) {
    EXPECT_FALSE(parse_time_limit(bad).ok()) << bad;
  }
  AutoscaleOptions o;
  EXPECT_TRUE(check_options(o).ok());
  o.time_limit = "1";
  o.stop_before_s = 300;
  EXPECT_FALSE(check_options(o).ok());  // told to stop as it starts
  o.stop_before_s = 30;
  EXPECT_TRUE(check_options(o).ok());
  o.job_name = "a,b";  // squeue would read two names
  EXPECT_FALSE(check_options(o).ok());
  o.job_name = std::string(201, 'x');
  EXPECT_FALSE(check_options(o).ok());
}

TEST(AutoscaleJobTest, TheWorkerJobExecsTheWorkerWithTheClustersFlagsAndDrainsBeforeItsLimit) {
  AutoscaleOptions o;
  o.scheduler_address = "10.0.0.1";
  o.scheduler_port = 6000;
  o.auth_dir = "/etc/lrts keys";
  o.policy.slots_per_worker = 4;
  o.idle_timeout_s = 30;
  o.partition = "batch";
  o.time_limit = "60";
  o.stop_before_s = 120;
  o.lrts_binary = "/usr/bin/lrts";
  o.worker_args = {"--service-lib", "/opt/it's.so"};
  const auto args = worker_job_args(o);
  const std::vector<std::string> expect = {
      "--job-name=lrts-worker", "--partition=batch", "--time=60", "--signal=B:TERM@120",
      "--wrap=exec /usr/bin/lrts worker --name lrts-worker-\"$SLURM_JOB_ID\" "
      "--scheduler-address 10.0.0.1 --scheduler-port 6000 --max-jobs 4 --idle-timeout 30 "
      "--on-stop finish --drain-timeout 105 --auth '/etc/lrts keys' --service-lib "
      "'/opt/it'\\''s.so'"};
  EXPECT_EQ(args, expect);
}

TEST(AutoscaleCommandTest, RunsAProgramAndCollectsItsOutputAndExitCode) {
  auto r = run_command({"sh", "-c", "echo out; echo err >&2; exit 3"}, 5s);
  ASSERT_TRUE(r.ok()) << r.error();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_EQ(r->out, "out\n");
  EXPECT_EQ(r->error_line(), "err");
  r = run_command({"sleep", "30"}, 200ms);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->exit_code, -1);
  EXPECT_NE(r->error_line().find("timed out"), std::string::npos);
  SlurmOptions missing;
  missing.sbatch = "/nonexistent/sbatch";
  EXPECT_FALSE(Slurm(missing).submit({}).ok());
}

}  // namespace
}  // namespace lrts::autoscale
