#include "autoscale/autoscaler.hpp"

#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
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
  while (i < text.size()) {
    size_t j = i;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    if (j < text.size() && text[j] == '.') {
      ++j;
      while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    }
    // Digits (with at most one point, and a digit before it), then a unit.
    if (j == i || text[i] == '.' || j == text.size() || j - i > 12) return false;
    const double n = std::strtod(text.substr(i, j - i).c_str(), nullptr);
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
    i = j + 1;
    if (unit == 'm' && text.compare(i, 2, "in") == 0) i += 2;  // "min"
  }
  if (text.empty()) return false;
  *seconds_out = total;
  return true;
}

// Digits only, as an int within [lo, hi].
bool field(const std::string& text, int lo, int hi, int* out) {
  if (text.empty() || text.size() > 4 ||
      text.find_first_not_of("0123456789") != std::string::npos) {
    return false;
  }
  *out = std::stoi(text);
  return *out >= lo && *out <= hi;
}

// "H:MM" or "HH:MM[:SS]" into h, m, s.
bool parse_clock(const std::string& text, int* h, int* m, int* s) {
  const size_t c1 = text.find(':');
  if (c1 == std::string::npos) return false;
  const size_t c2 = text.find(':', c1 + 1);
  *s = 0;
  return field(text.substr(0, c1), 0, 23, h) &&
         field(text.substr(c1 + 1, c2 == std::string::npos ? std::string::npos : c2 - c1 - 1), 0,
               59, m) &&
         (c2 == std::string::npos || field(text.substr(c2 + 1), 0, 59, s));
}

constexpr double kMaxDeadlineS = 3650.0 * 86400;  // ten years

}  // namespace

Result<SystemClock::time_point> parse_deadline(const std::string& text,
                                               SystemClock::time_point now) {
  const std::string bad = "--deadline '" + text +
                          "': give a duration from now (90s, 30m, 2h, 1h30m), a time of day "
                          "(HH:MM or HH:MM:SS), a local date and time (YYYY-MM-DDTHH:MM[:SS]) or "
                          "@UNIX_SECONDS";
  if (text.empty() || text.size() > 64) return make_error(bad);
  auto after = [&](double s) {
    return now +
           std::chrono::duration_cast<SystemClock::duration>(std::chrono::duration<double>(s));
  };
  double rel = 0;
  if (parse_relative(text, &rel)) {
    if (!(rel > 0)) return make_error("--deadline '" + text + "' is not in the future");
    if (rel > kMaxDeadlineS)
      return make_error("--deadline '" + text + "' is more than ten years away");
    return after(rel);
  }
  if (text[0] == '@') {
    const std::string digits = text.substr(1);
    if (digits.empty() || digits.size() > 12 ||
        digits.find_first_not_of("0123456789") != std::string::npos) {
      return make_error(bad);
    }
    const auto t = SystemClock::from_time_t(static_cast<std::time_t>(std::stoll(digits)));
    if (t <= now) return make_error("--deadline '" + text + "' has passed");
    if (t > after(kMaxDeadlineS))
      return make_error("--deadline '" + text + "' is more than ten years away");
    return t;
  }
  std::tm tm{};
  const std::time_t now_t = SystemClock::to_time_t(now);
  localtime_r(&now_t, &tm);
  int y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
  const size_t t_at = text.find('T');
  const bool dated = t_at != std::string::npos;
  if (dated) {
    const std::string date = text.substr(0, t_at);
    const size_t d1 = date.find('-'), d2 = date.find('-', d1 == std::string::npos ? 0 : d1 + 1);
    if (d1 == std::string::npos || d2 == std::string::npos ||
        !field(date.substr(0, d1), 1970, 9999, &y) ||
        !field(date.substr(d1 + 1, d2 - d1 - 1), 1, 12, &mo) ||
        !field(date.substr(d2 + 1), 1, 31, &d) ||
        !parse_clock(text.substr(t_at + 1), &h, &mi, &s)) {
      return make_error(bad);
    }
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
  } else if (!parse_clock(text, &h, &mi, &s)) {
    return make_error(bad);
  }
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = s;
  tm.tm_isdst = -1;
  std::tm asked = tm;
  const std::time_t at = std::mktime(&tm);
  if (at == -1 || (dated && (tm.tm_mday != asked.tm_mday || tm.tm_mon != asked.tm_mon))) {
    return make_error(bad);  // 31 April and the like: mktime would move it
  }
  auto t = SystemClock::from_time_t(at);
  if (!dated && t <= now) t += std::chrono::hours(24);  // a time of day already passed: tomorrow
  if (t <= now) return make_error("--deadline '" + text + "' has passed");
  if (t > after(kMaxDeadlineS))
    return make_error("--deadline '" + text + "' is more than ten years away");
  return t;
}

Result<double> parse_time_limit(const std::string& text) {
  // Slurm's --time: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S.
  const std::string bad = "--time-limit '" + text +
                          "': give minutes (60), MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS as "
                          "sbatch --time takes it";
  if (text.empty() || text.size() > 32) return make_error(bad);
  int days = 0;
  std::string rest = text;
  const size_t dash = text.find('-');
  if (dash != std::string::npos) {
    if (!field(text.substr(0, dash), 0, 9999, &days)) return make_error(bad);
    rest = text.substr(dash + 1);
  }
  std::vector<int> parts;
  size_t from = 0;
  while (true) {
    const size_t colon = rest.find(':', from);
    int v = 0;
    if (!field(rest.substr(from, colon == std::string::npos ? std::string::npos : colon - from), 0,
               9999, &v)) {
      return make_error(bad);
    }
    parts.push_back(v);
    if (colon == std::string::npos) break;
    from = colon + 1;
  }
  if (parts.size() > 3) return make_error(bad);
  double seconds = 0;
  if (dash != std::string::npos) {  // D-H[:M[:S]]
    seconds = days * 86400.0 + parts[0] * 3600.0 + (parts.size() > 1 ? parts[1] * 60.0 : 0) +
              (parts.size() > 2 ? parts[2] : 0);
  } else if (parts.size() == 1) {  // M
    seconds = parts[0] * 60.0;
  } else if (parts.size() == 2) {  // M:S
    seconds = parts[0] * 60.0 + parts[1];
  } else {  // H:M:S
    seconds = parts[0] * 3600.0 + parts[1] * 60.0 + parts[2];
  }
  if (seconds <= 0) return make_error(bad);
  return seconds;
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

Result<void> check_options(const AutoscaleOptions& o) {
  if (o.job_name.empty() || o.job_name.size() > 200) {
    return make_error(
        "--job-name must have 1 to 200 bytes (workers are named NAME-JOBID, at "
        "most 256)");
  }
  if (o.job_name.find_first_of(",\n\r") != std::string::npos) {
    return make_error("--job-name '" + o.job_name +
                      "' has a comma or a line break: squeue could not list its jobs by it");
  }
  if (!o.time_limit.empty()) {
    auto limit = parse_time_limit(o.time_limit);
    if (!limit) return make_error(limit.error());
    if (o.stop_before_s + 30 > *limit) {
      return make_error("--stop-before " + std::to_string(static_cast<int64_t>(o.stop_before_s)) +
                        " s must end at least 30 s before --time-limit " + o.time_limit + " (" +
                        std::to_string(static_cast<int64_t>(*limit)) +
                        " s): the job would be told to stop as it starts");
    }
  }
  return {};
}

int run_autoscale(const AutoscaleOptions& o) {
  if (auto ok = check_options(o); !ok) {
    LRTS_ERROR("{}", ok.error());
    return 2;
  }
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
  SlurmOptions so = o.slurm;
  so.interrupt_fd = signals.fd();  // a stop signal ends a hanging sbatch or squeue at once
  Slurm slurm(so);
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

  std::map<std::string, TimePoint> submitted;     // ours, this run, not ended yet
  std::map<std::string, TimePoint> connected_at;  // when each job's worker was first seen
  std::set<std::string> listed_before;            // the jobs alive at the last listing
  bool first_listing = true, warned_foreign = false;
  Duration backoff{0};
  TimePoint submit_after{};
  auto back_off = [&](const std::string& why) {
    backoff =
        backoff.count() == 0 ? Duration(seconds(2)) : std::min<Duration>(backoff * 2, seconds(300));
    submit_after = Clock::now() + backoff;
    LRTS_WARN("{}; submitting again in {}", why, seconds_text(to_seconds(backoff)));
  };
  std::string last_problem, last_plan_key;
  TimePoint last_plan_at{};
  auto problem = [&](const std::string& text) {
    if (text != last_problem) LRTS_WARN("{}", text);
    last_problem = text;
  };
  auto job_output = [&](const std::string& id) {
    std::string path = o.job_output.empty() ? "slurm-%j.out" : o.job_output;
    for (size_t at; (at = path.find("%j")) != std::string::npos;) path.replace(at, 2, id);
    for (size_t at; (at = path.find("%x")) != std::string::npos;) path.replace(at, 2, o.job_name);
    return path;
  };

  for (bool first = true;; first = false) {
    if (!first) {
      pollfd p{signals.fd(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(to_ms(o.interval)));
    }
    if (!signals.drain().empty()) break;
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
      alive.insert(sj.id);
      if (!first_listing && !listed_before.count(sj.id) && !submitted.count(sj.id) &&
          !warned_foreign) {
        warned_foreign = true;
        LRTS_WARN(
            "job {} is named {} but was not submitted by this autoscaler: is another "
            "autoscaler using the same --job-name? (they would count each other's jobs)",
            sj.id, o.job_name);
      }
      Job j;
      j.id = sj.id;
      j.running = sj.state == "RUNNING";
      if (const auto it = submitted.find(sj.id); it != submitted.end()) j.submitted = it->second;
      if (const auto w = by_name.find(sj.id); w != by_name.end()) {
        j.connected = true;
        j.draining = w->second->state == "draining";
        j.held = w->second->held;
        const auto [at, fresh] = connected_at.emplace(sj.id, now);
        j.connected_at = at->second;
        if (fresh && j.submitted != TimePoint{}) {
          policy.note_startup(now - j.submitted);
          backoff = Duration{0};  // jobs do start: a failure before was not a lasting one
        }
      }
      jobs.push_back(std::move(j));
    }
    first_listing = false;
    listed_before = alive;
    // A job of ours that ended before its worker ever connected failed to start (a bad worker
    // flag, lrts missing on the node, ...): submitting again at once would loop.
    std::vector<std::string> failed_starts;
    for (auto it = submitted.begin(); it != submitted.end();) {
      if (alive.count(it->first)) {
        ++it;
        continue;
      }
      if (!connected_at.count(it->first)) failed_starts.push_back(it->first);
      connected_at.erase(it->first);
      it = submitted.erase(it);
    }
    if (!failed_starts.empty()) {
      back_off("job " + failed_starts.front() + " ended before its worker connected (see " +
               job_output(failed_starts.front()) + ")");
    }
    for (auto it = connected_at.begin(); it != connected_at.end();) {
      it = alive.count(it->first) ? std::next(it) : connected_at.erase(it);
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

    // The plan is logged when it changes (not its figures, which move every round), and once a
    // minute while work is left.
    std::string key = std::to_string(d.target) + "/" + std::to_string(jobs.size()) + "/" +
                      std::to_string(by_name.size()) + "/" + (d.deadline_reachable ? "y" : "n");
    const bool busy = view.unfinished() > 0;
    if (key != last_plan_key || (busy && now - last_plan_at >= seconds(60))) {
      std::string plan = std::to_string(d.target) + " job(s) wanted (" + d.why + ")";
      if (d.finish_in_s && busy) {
        plan += ", finish predicted " +
                clock_text(SystemClock::now() + std::chrono::duration_cast<SystemClock::duration>(
                                                    std::chrono::duration<double>(*d.finish_in_s)));
      }
      if (o.deadline) {
        plan += " for a deadline of " + clock_text(*o.deadline);
        if (!d.deadline_reachable) plan += " (out of reach even with --max-workers)";
      }
      LRTS_INFO("{}; {} job(s) now, {} connected, {} task(s) unfinished", plan, jobs.size(),
                by_name.size(), view.unfinished());
      last_plan_key = key;
      last_plan_at = now;
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
    if (d.submit > 0 && Clock::now() >= submit_after) {
      const uint32_t n = std::min<uint32_t>(d.submit, 16);  // the rest next round
      for (uint32_t i = 0; i < n; ++i) {
        auto id = slurm.submit(job_args);
        if (!id) {
          back_off(id.error());
          break;
        }
        submitted[*id] = Clock::now();
        LRTS_INFO("submitted worker job {}", *id);
      }
    }
  }

  // Pending jobs of this name would start workers nobody scales any more (ours, or left by an
  // autoscaler before us): they go. Running ones stay, serve the queue and end when idle.
  SlurmOptions quick = o.slurm;
  quick.timeout = milliseconds(5000);
  Slurm last(quick);  // not interrupted by the signal that stopped us
  if (auto listed = last.jobs(o.job_name); listed) {
    for (const SlurmJob& sj : *listed) {
      if (sj.state != "PENDING") continue;
      if (auto r = last.cancel(sj.id); !r) LRTS_WARN("{}", r.error());
    }
  } else {
    LRTS_WARN("{}: pending jobs named {} may be left", listed.error(), o.job_name);
  }
  LRTS_INFO("autoscaler stopped; running worker jobs end when idle");
  return 0;
}

}  // namespace lrts::autoscale
