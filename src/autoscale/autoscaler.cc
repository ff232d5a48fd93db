#include "autoscale/autoscaler.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/log.hpp"
#include "common/process.hpp"
#include "common/signals.hpp"
#include "lrts/admin.hpp"

namespace lrts::autoscale {

namespace {

using SystemClock = std::chrono::system_clock;

std::string clock_text(SystemClock::time_point t) {
  const std::time_t s = SystemClock::to_time_t(t);
  std::tm local{};
  localtime_r(&s, &local);
  char text[16];
  std::strftime(text, sizeof text, "%H:%M:%S", &local);
  return text;
}

std::string seconds_text(double s) {
  if (s < 120) return std::to_string(static_cast<int64_t>(std::lround(s))) + " s";
  if (s < 7200) return std::to_string(static_cast<int64_t>(std::lround(s / 60))) + " min";
  return std::to_string(static_cast<int64_t>(std::lround(s / 3600))) + " h";
}

// "1h30m", "90s", "2h", "45m": the sum of its parts; false when it is not such a text.
bool parse_relative(const std::string& text, double* seconds_out) {
  double total = 0;
  size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && (std::isdigit(static_cast<unsigned char>(text[j])) || text[j] == '.'))
      ++j;
    if (j == i || j == text.size()) return false;
    const double n = std::stod(text.substr(i, j - i));
    const char unit = text[j];
    if (unit == 's') {
      total += n;
    } else if (unit == 'm') {
      total += n * 60;
    } else if (unit == 'h') {
      total += n * 3600;
    } else if (unit == 'd') {
      total += n * 86400;
    } else {
      return false;
    }
    any = true;
    i = j + 1;
    if (i < text.size() && unit == 'm' && text.compare(i, 2, "in") == 0) i += 2;  // "min"
  }
  *seconds_out = total;
  return any;
}

}  // namespace

Result<SystemClock::time_point> parse_deadline(const std::string& text,
                                               SystemClock::time_point now) {
  const std::string bad = "--deadline '" + text +
                          "': give a duration from now (90s, 30m, 2h, 1h30m), a time of day "
                          "(HH:MM or HH:MM:SS), a local date and time (YYYY-MM-DDTHH:MM[:SS]) or "
                          "@UNIX_SECONDS";
  if (text.empty()) return make_error(bad);
  double rel = 0;
  if (parse_relative(text, &rel)) {
    if (rel <= 0) return make_error("--deadline '" + text + "' is not in the future");
    return now +
           std::chrono::duration_cast<SystemClock::duration>(std::chrono::duration<double>(rel));
  }
  if (text[0] == '@') {
    char* end = nullptr;
    const double s = std::strtod(text.c_str() + 1, &end);
    if (end == text.c_str() + 1 || *end != '\0') return make_error(bad);
    const auto t = SystemClock::time_point(
        std::chrono::duration_cast<SystemClock::duration>(std::chrono::duration<double>(s)));
    if (t <= now) return make_error("--deadline '" + text + "' has passed");
    return t;
  }
  std::tm tm{};
  const std::time_t now_t = SystemClock::to_time_t(now);
  localtime_r(&now_t, &tm);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  char tail = 0;
  if (std::sscanf(text.c_str(), "%d-%d-%dT%d:%d:%d%c", &y, &mo, &d, &h, &mi, &s, &tail) >= 5 &&
      tail == 0) {
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
  } else if (s = 0, tail = 0; std::sscanf(text.c_str(), "%d:%d:%d%c", &h, &mi, &s, &tail) >= 2 &&
                              tail == 0 && text.find('-') == std::string::npos) {
  } else {
    return make_error(bad);
  }
  if (h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60) return make_error(bad);
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  tm.tm_isdst = -1;
  const std::time_t at = std::mktime(&tm);
  if (at == -1) return make_error(bad);
  auto t = SystemClock::from_time_t(at);
  if (y == 0 && t <= now) t += std::chrono::hours(24);  // a time of day already passed: tomorrow
  if (t <= now) return make_error("--deadline '" + text + "' has passed");
  return t;
}

std::vector<std::string> worker_job_args(const AutoscaleOptions& o) {
  std::vector<std::string> args = {"--job-name=" + o.job_name};
  if (!o.partition.empty()) args.push_back("--partition=" + o.partition);
  if (!o.job_output.empty()) args.push_back("--output=" + o.job_output);
  const bool limited = !o.time_limit.empty();
  if (limited) {
    args.push_back("--time=" + o.time_limit);
    // The batch shell execs the worker, so B: signals the worker itself: it drains.
    args.push_back("--signal=B:TERM@" + std::to_string(static_cast<int64_t>(o.stop_before_s)));
  }
  args.insert(args.end(), o.sbatch_args.begin(), o.sbatch_args.end());

  const std::string lrts = o.lrts_binary.empty() ? self_executable() : o.lrts_binary;
  std::string cmd = "exec " + shell_quote(lrts) + " worker --name " + shell_quote(o.job_name) +
                    "-\"$SLURM_JOB_ID\" --scheduler-address " + shell_quote(o.scheduler_address) +
                    " --scheduler-port " + std::to_string(o.scheduler_port) + " --max-jobs " +
                    std::to_string(std::max<uint32_t>(1, o.policy.slots_per_worker)) +
                    " --idle-timeout " + std::to_string(static_cast<int64_t>(o.idle_timeout_s)) +
                    " --on-stop finish";
  if (limited) {
    // What runs past this is handed back before Slurm's SIGKILL at the limit.
    const double drain = std::max(5.0, o.stop_before_s - 15);
    cmd += " --drain-timeout " + std::to_string(static_cast<int64_t>(drain));
  }
  if (!o.auth_dir.empty()) cmd += " --auth " + shell_quote(o.auth_dir);
  for (const std::string& a : o.worker_args) cmd += " " + shell_quote(a);
  args.push_back("--wrap=" + cmd);
  return args;
}

int run_autoscale(const AutoscaleOptions& o) {
  SignalPipe signals({SIGINT, SIGTERM});
  AdminOptions ao;
  ao.scheduler_address = o.scheduler_address;
  ao.scheduler_port = o.scheduler_port;
  ao.auth_dir = o.auth_dir;
  ao.timeout = milliseconds(5000);
  std::optional<Admin> admin;
  try {
    admin.emplace(ao);
  } catch (const AdminError& e) {
    LRTS_ERROR("{}", e.what());
    return 1;
  }
  Slurm slurm(o.slurm);
  PolicyOptions po = o.policy;
  if (o.deadline) {
    po.deadline =
        Clock::now() + std::chrono::duration_cast<Duration>(*o.deadline - SystemClock::now());
  }
  Policy policy(po);
  const std::vector<std::string> job_args = worker_job_args(o);
  const std::string prefix = o.job_name + "-";
  LRTS_INFO("autoscaling {} through Slurm: up to {} worker job(s) of {} slot(s), {}{}",
            o.scheduler_address + ":" + std::to_string(o.scheduler_port), po.max_workers,
            std::max<uint32_t>(1, po.slots_per_worker),
            o.deadline ? "to finish by " + clock_text(*o.deadline) : "by queue length",
            o.time_limit.empty() ? ""
                                 : ", jobs of " + o.time_limit + " draining " +
                                       seconds_text(o.stop_before_s) + " before it");

  std::map<std::string, TimePoint> submitted;  // ours, this run
  std::set<std::string> measured;
  Duration backoff{0};
  TimePoint submit_after{};
  std::string last_problem, last_plan;
  auto problem = [&](const std::string& text) {
    if (text != last_problem) LRTS_WARN("{}", text);
    last_problem = text;
  };

  for (bool first = true;; first = false) {
    if (!first) {
      pollfd p{signals.fd(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(to_ms(o.interval)));
      if (!signals.drain().empty()) break;
    }
    const TimePoint now = Clock::now();
    ClusterStatus st;
    std::vector<WorkerInfo> workers;
    try {
      st = admin->status();
      workers = admin->workers(0, 1000);
    } catch (const AdminError& e) {
      problem(std::string("scheduler: ") + e.what() + " (nothing changes until it answers)");
      continue;
    }
    auto listed = slurm.jobs(o.job_name);
    if (!listed) {
      problem(listed.error() + " (nothing changes until squeue answers)");
      continue;
    }
    std::map<std::string, const WorkerInfo*> by_name;
    for (const WorkerInfo& w : workers) {
      if (w.name.rfind(prefix, 0) == 0) by_name[w.name.substr(prefix.size())] = &w;
    }
    std::vector<Job> jobs;
    std::set<std::string> alive;
    for (const SlurmJob& sj : *listed) {
      const bool pending = sj.state == "PENDING" || sj.state == "CONFIGURING" ||
                           sj.state == "REQUEUED" || sj.state == "RESIZING";
      if (!pending && sj.state != "RUNNING") continue;  // completing, suspended, ending
      Job j;
      j.id = sj.id;
      j.running = sj.state == "RUNNING";
      alive.insert(sj.id);
      if (const auto it = submitted.find(sj.id); it != submitted.end()) j.submitted = it->second;
      if (const auto w = by_name.find(sj.id); w != by_name.end()) {
        j.connected = true;
        j.draining = w->second->state == "draining";
        j.held = w->second->held;
        if (j.submitted != TimePoint{} && measured.insert(sj.id).second) {
          policy.note_startup(now - j.submitted);
        }
      }
      jobs.push_back(std::move(j));
    }
    for (auto it = submitted.begin(); it != submitted.end();) {
      it = alive.count(it->first) ? std::next(it) : submitted.erase(it);
    }
    ClusterView view;
    view.queued = st.queued + st.waiting;
    view.running = st.running;
    view.slots = st.slots;
    view.work_s = st.work_remaining_s;
    view.unknown_tasks = st.unknown_tasks;
    const nlohmann::json whole = nlohmann::json::parse(st.json, nullptr, false);
    if (whole.is_object() && whole.contains("estimate") && whole["estimate"].is_object()) {
      view.longest_s = whole["estimate"].value("longest_s", 0.0);
    }
    const Decision d = policy.decide(view, jobs, now);
    last_problem.clear();

    std::string plan = std::to_string(d.target) + " job(s) wanted (" + d.why + ")";
    if (d.finish_in_s) {
      plan += ", finish predicted " +
              clock_text(SystemClock::now() + std::chrono::duration_cast<SystemClock::duration>(
                                                  std::chrono::duration<double>(*d.finish_in_s)));
    }
    if (o.deadline) {
      plan += " for a deadline of " + clock_text(*o.deadline);
      if (!d.deadline_reachable) plan += " (out of reach even with --max-workers)";
    }
    if (plan != last_plan) {
      LRTS_INFO("{}; {} job(s) now, {} connected, {} task(s) unfinished", plan, jobs.size(),
                by_name.size(), view.unfinished());
      last_plan = plan;
    }

    for (const std::string& id : d.cancel) {
      if (auto r = slurm.cancel(id); !r) {
        LRTS_WARN("{}", r.error());
      } else {
        LRTS_INFO("cancelled pending job {} (no longer needed)", id);
        submitted.erase(id);
      }
    }
    for (const std::string& id : d.drain) {
      try {
        admin->drain(prefix + id);
        LRTS_INFO("draining job {}'s worker: more slots run than the deadline needs", id);
      } catch (const AdminError& e) {
        LRTS_WARN("cannot drain {}{}: {}", prefix, id, e.what());
      }
    }
    if (d.submit > 0 && now >= submit_after) {
      const uint32_t n = std::min<uint32_t>(d.submit, 16);  // the rest next round
      for (uint32_t i = 0; i < n; ++i) {
        auto id = slurm.submit(job_args);
        if (!id) {
          backoff = backoff.count() == 0 ? Duration(seconds(2))
                                         : std::min<Duration>(backoff * 2, seconds(300));
          submit_after = Clock::now() + backoff;
          LRTS_WARN("{}; retrying in {}", id.error(), seconds_text(to_seconds(backoff)));
          break;
        }
        backoff = Duration{0};
        submitted[*id] = Clock::now();
        LRTS_INFO("submitted worker job {}", *id);
      }
    }
  }

  // Pending jobs would start workers nobody scales any more: they go. Running ones stay, serve
  // the queue and end when idle.
  auto listed = slurm.jobs(o.job_name);
  if (listed) {
    for (const SlurmJob& sj : *listed) {
      if (sj.state != "PENDING" || !submitted.count(sj.id)) continue;
      if (auto r = slurm.cancel(sj.id); !r) LRTS_WARN("{}", r.error());
    }
  }
  LRTS_INFO("autoscaler stopped; running worker jobs end when idle");
  return 0;
}

}  // namespace lrts::autoscale
