// `lrts status`, `lrts workers`, `lrts tasks`, `lrts cancel`, `lrts drain`: queries and
// operator commands to a running scheduler (lrts::Admin), printed as tables or, with --json,
// as the scheduler's JSON.
#include <cstdio>
#include <ctime>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "client/progress_watch.hpp"
#include "flags/flags.hpp"
#include "lrts/admin.hpp"
#include "protocol/messages.hpp"
#include "tui/format.hpp"

namespace lrts::cli {

namespace {

using nlohmann::json;

// Exit codes: 0 done, 1 the scheduler could not be reached or refused, 2 usage.
constexpr int kFailed = 1;

struct Target {
  std::string address = "127.0.0.1";
  int port = 5555;
  std::string auth_dir;
  double timeout_s = 5;
  AdminOptions admin() const {
    AdminOptions o;
    o.scheduler_address = address;
    o.scheduler_port = port;
    o.auth_dir = auth_dir;
    o.timeout = std::chrono::milliseconds(static_cast<int64_t>(timeout_s * 1000));
    return o;
  }
};

void add_target_flags(CLI::App& a, Target& t) {
  add_scheduler_flags(a, t.address, t.port);
  add_auth_flag(a, t.auth_dir,
                "uses admin.key, else viewer.key (queries only), else application.key (its own "
                "applications only)");
  a.add_option("--timeout", t.timeout_s, "Seconds to wait for the scheduler's answer")
      ->capture_default_str()
      ->check(flags::number(0.1, 3600));
}

std::string human_bytes(uint64_t b) {
  char buf[32];
  if (b >= (uint64_t{1} << 30)) {
    std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(b) / (1 << 30));
  } else if (b >= (uint64_t{1} << 20)) {
    std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  } else if (b > 0) {
    std::snprintf(buf, sizeof buf, "%.0f KiB", static_cast<double>(b) / 1024);
  } else {
    return "-";
  }
  return buf;
}

std::string human_seconds(double s) {
  char buf[32];
  if (s < 0) return "-";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%d min %02d s", static_cast<int>(s) / 60,
                  static_cast<int>(s) % 60);
  } else if (s < 86400) {
    std::snprintf(buf, sizeof buf, "%d h %02d min", static_cast<int>(s) / 3600,
                  static_cast<int>(s) / 60 % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%d d %02d h", static_cast<int>(s) / 86400,
                  static_cast<int>(s) / 3600 % 24);
  }
  return buf;
}

// Runs `body`, turning AdminError into a one-line message and exit status 1.
template <class F>
int guarded(const char* command, F body) {
  try {
    return body();
  } catch (const AdminError& e) {
    std::fprintf(stderr, "lrts %s: %s\n", command, e.what());
    return kFailed;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrts %s: %s\n", command, e.what());
    return kFailed;
  }
}

// Pads `cells` into columns; a column's width is its widest cell (cut at `max`).
void print_table(const std::vector<std::vector<std::string>>& rows, size_t max = 60) {
  std::vector<size_t> width;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::min(max, std::max(width[i], tui::printable(r[i]).size()));
    }
  }
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      // Names, errors and bar units come from peers: no terminal control reaches the screen.
      const std::string text = tui::printable(r[i]);
      std::string cell = text.size() > max ? text.substr(0, max - 1) + "~" : text;
      if (i + 1 < r.size()) cell.resize(width[i], ' ');
      line += cell;
      if (i + 1 < r.size()) line += "  ";
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

// ---- lrts status --------------------------------------------------------------------------------

class StatusCommand final : public Command {
 public:
  explicit StatusCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("status",
                                 "Show the cluster at a glance: workers and slots, tasks by "
                                 "state, throughput over the last minute, journal, uptime")) {
    add_target_flags(*app_, t_);
    app_->add_flag("--json", json_,
                   "Print the scheduler's answer as one JSON object (keys in docs/protocol.md: "
                   "workers, slots, busy_slots, queued, running, finished, failed, cancelled, "
                   "applications, throughput_per_s, journal, uptime_s, ...)");
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    return guarded("status", [&] {
      Admin admin(t_.admin());
      const ClusterStatus s = admin.status();
      if (json_) {
        std::printf("%s\n", s.json.c_str());
        return 0;
      }
      const json j = json::parse(s.json);
      std::printf("scheduler  %s, up %s (lrts %s)\n",
                  j.value("scheduler", std::string("?")).c_str(), human_seconds(s.uptime_s).c_str(),
                  j.value("version", std::string("?")).c_str());
      std::printf("workers    %llu with %llu slot(s): %llu busy, %llu idle\n",
                  static_cast<unsigned long long>(s.workers),
                  static_cast<unsigned long long>(s.slots),
                  static_cast<unsigned long long>(s.busy_slots),
                  static_cast<unsigned long long>(s.idle_slots));
      if (s.relays) {
        std::printf("relays     %llu, carrying %llu of the workers; heartbeats every %.1f s\n",
                    static_cast<unsigned long long>(s.relays),
                    static_cast<unsigned long long>(s.relayed_workers),
                    static_cast<double>(s.heartbeat_ms) / 1000.0);
      }
      std::printf(
          "tasks      %llu queued, %llu running%s\n", static_cast<unsigned long long>(s.queued),
          static_cast<unsigned long long>(s.running),
          s.waiting
              ? (", " + std::to_string(s.waiting) + " waiting for their workers after a restart")
                    .c_str()
              : "");
      std::printf(
          "ended      %llu finished, %llu failed, %llu cancelled, %llu timed out; %llu "
          "result(s) awaiting collection\n",
          static_cast<unsigned long long>(s.finished), static_cast<unsigned long long>(s.failed),
          static_cast<unsigned long long>(s.cancelled),
          static_cast<unsigned long long>(s.timed_out),
          static_cast<unsigned long long>(s.awaiting_collection));
      std::printf("throughput %.2f task(s)/s over the last minute (%llu ended, %llu failed)\n",
                  s.throughput_per_s, static_cast<unsigned long long>(s.completed_last_minute),
                  static_cast<unsigned long long>(s.failed_last_minute));
      if (s.queued + s.running + s.waiting > 0) {
        std::string when = "unknown until a task of each service has finished";
        if (s.finish_in_s) {
          const std::time_t at = std::time(nullptr) + static_cast<std::time_t>(*s.finish_in_s);
          std::tm local{};
          localtime_r(&at, &local);
          char clock[16];
          std::strftime(clock, sizeof clock, "%H:%M:%S", &local);
          when = "in about " + human_seconds(*s.finish_in_s) + " (" + clock + ") at " +
                 std::to_string(s.slots) + " slot(s)";
        } else if (s.slots == 0) {
          when = "not while no worker is connected";
        }
        std::printf("finish     %s; %s of known work left%s\n", when.c_str(),
                    human_seconds(s.work_remaining_s).c_str(),
                    s.unknown_tasks ? (", " + std::to_string(s.unknown_tasks) +
                                       " task(s) of services with no run yet")
                                          .c_str()
                                    : "");
      }
      std::printf("apps       %llu (%llu connected)\n",
                  static_cast<unsigned long long>(s.applications),
                  static_cast<unsigned long long>(s.applications_connected));
      if (s.journal_enabled) {
        std::printf("journal    %s, %llu record(s) not yet durable\n", s.journal_path.c_str(),
                    static_cast<unsigned long long>(s.journal_backlog));
      } else {
        std::printf("journal    off (--no-journal: state in memory only)\n");
      }
      return 0;
    });
  }

 private:
  CLI::App* app_;
  Target t_;
  bool json_ = false;
};

// ---- lrts workers -------------------------------------------------------------------------------

class WorkersCommand final : public Command {
 public:
  explicit WorkersCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("workers",
                                 "List the connected workers: host, slots, running tasks, "
                                 "services, last heartbeat, memory")) {
    add_target_flags(*app_, t_);
    app_->add_flag("--json", json_, "Print the scheduler's answer as JSON");
    app_->add_option("--limit", limit_, "Most workers to list")
        ->capture_default_str()
        ->check(CLI::Range(1u, protocol::kMaxQueryRows));
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    return guarded("workers", [&] {
      Admin admin(t_.admin());
      TaskQuery q;
      q.limit = limit_;
      if (json_) {
        std::printf("%s\n", admin.query_json("workers", q).c_str());
        return 0;
      }
      const auto ws = admin.workers(0, limit_);
      std::vector<std::vector<std::string>> rows = {
          {"NAME", "HOST", "SLOTS", "RUNNING", "HELD", "MEMORY", "HEARTBEAT", "STATE", "SERVICES"}};
      for (const auto& w : ws) {
        std::string services;
        for (const auto& s : w.services) services += (services.empty() ? "" : ",") + s;
        rows.push_back({w.name, w.host, std::to_string(w.slots), std::to_string(w.running),
                        std::to_string(w.held), human_bytes(w.memory_bytes),
                        human_seconds(w.last_heartbeat_s) + " ago", w.state, services});
      }
      print_table(rows);
      if (ws.empty()) std::printf("(no worker is connected)\n");
      return 0;
    });
  }

 private:
  CLI::App* app_;
  Target t_;
  bool json_ = false;
  uint32_t limit_ = 1000;
};

// ---- lrts tasks ---------------------------------------------------------------------------------

class TasksCommand final : public Command {
 public:
  explicit TasksCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("tasks",
                                 "List tasks the scheduler holds (queued, running, and ended "
                                 "ones not collected yet) with service, attempt, worker, run "
                                 "time, progress and error")) {
    add_target_flags(*app_, t_);
    app_->add_option("--application-id", q_.application_id, "Only this application's tasks")
        ->check(application_id_check());
    app_->add_option("--state", q_.state, "Only tasks in this state")
        ->check(CLI::IsMember({"queued", "waiting", "running", "done", "finished", "failed",
                               "cancelled", "timed_out"}));
    app_->add_option("--worker", q_.worker, "Only tasks on this worker (name or uid)");
    app_->add_option("--limit", q_.limit, "Most tasks to list")
        ->capture_default_str()
        ->check(CLI::Range(1u, protocol::kMaxQueryRows));
    app_->add_option("--offset", q_.offset, "Skip this many matching tasks (paging)")
        ->capture_default_str();
    app_->add_flag("--json", json_, "Print one JSON object: {tasks: [...], total, ...}");
    app_->add_option("--progress-address", progress_address_,
                     "Progress server to read the tasks' bars from")
        ->capture_default_str();
    app_->add_option("--progress-port", progress_port_, "Its TCP port")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    app_->add_flag("--no-progress", no_progress_, "Do not ask the progress server for bars");
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    return guarded("tasks", [&] {
      Admin admin(t_.admin());
      json j = json::parse(admin.query_json("tasks", q_));
      if (!no_progress_) add_bars(j);
      if (json_) {
        std::printf("%s\n", j.dump(-1, ' ', false, json::error_handler_t::replace).c_str());
        return 0;
      }
      std::vector<std::vector<std::string>> rows = {
          {"SERVICE_ID", "STATE", "ATTEMPT", "SERVICE", "WORKER", "RUN_TIME", "PROGRESS", "ERROR"}};
      for (const json& t : j["tasks"]) {
        std::string progress;
        for (const json& b : t.value("bars", json::array())) {
          if (!progress.empty()) progress += " ";
          progress += std::to_string(b.value("count", uint64_t{0}));
          if (b.value("total", uint64_t{0})) {
            progress += "/" + std::to_string(b.value("total", uint64_t{0}));
          }
          progress += " " + b.value("unit", std::string());
        }
        std::string err = t.value("error", std::string());
        for (char& c : err) {
          if (c == '\n' || c == '\r' || c == '\t') c = ' ';
        }
        rows.push_back(
            {t.value("service_id", std::string()), t.value("state", std::string()),
             std::to_string(t.value("attempt", 0u)) + "/" +
                 std::to_string(t.value("max_retries", 0u) + 1),
             t.value("service", std::string()), t.value("worker", std::string()),
             t["run_time_s"].is_number() ? human_seconds(t["run_time_s"].get<double>()) : "-",
             progress.empty() ? "-" : progress, err.empty() ? "-" : err});
      }
      print_table(rows);
      const uint64_t total = j.value("total", uint64_t{0});
      std::printf("(%zu of %llu%s matching task(s))\n", j["tasks"].size(),
                  static_cast<unsigned long long>(total),
                  j.value("total_capped", false) ? "+" : "");
      return 0;
    });
  }

 private:
  // Bars from the progress server, if one answers within a second (tasks never wait for it).
  void add_bars(json& j) const {
    if (j["tasks"].empty()) return;
    auto watch = client::ProgressWatch::open(progress_address_, progress_port_, t_.auth_dir,
                                             q_.application_id);
    if (!watch) return;
    const TimePoint until = Clock::now() + seconds(1);
    while (!(*watch)->answered() && Clock::now() < until) {
      zmq_pollitem_t items[2] = {{(*watch)->socket(), 0, ZMQ_POLLIN, 0},
                                 {(*watch)->monitor_socket(), 0, ZMQ_POLLIN, 0}};
      zmq_poll(items, 2, 50);
      (*watch)->pump(Clock::now());
    }
    for (json& t : j["tasks"]) {
      protocol::TaskKey key;
      if (!protocol::parse_service_id(t.value("service_id", std::string()), &key)) continue;
      json bars = json::array();
      if (const auto* v = (*watch)->bars_of(key)) {
        for (const auto& b : *v) bars.push_back(json::parse(client::bar_json(b)));
      }
      t["bars"] = std::move(bars);
    }
  }

  CLI::App* app_;
  Target t_;
  TaskQuery q_;
  bool json_ = false;
  bool no_progress_ = false;
  std::string progress_address_ = "127.0.0.1";
  int progress_port_ = 5454;
};

// ---- lrts cancel, lrts drain --------------------------------------------------------------------

class CancelCommand final : public Command {
 public:
  explicit CancelCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("cancel",
                                 "Cancel tasks by service id, or every unfinished task of an "
                                 "application: they end as cancelled and running attempts stop")) {
    add_target_flags(*app_, t_);
    app_->add_option("service_ids", ids_, "Service ids (as lrts submit printed them)");
    app_->add_option("--application-id", application_id_, "Cancel all of this application's tasks")
        ->check(application_id_check());
    app_->add_flag("--json", json_, "Print the outcome as JSON");
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    if (ids_.empty() == application_id_.empty()) {
      std::fprintf(stderr,
                   "lrts cancel: give service ids or --application-id ID (one of the two)\n");
      return 2;
    }
    for (const auto& id : ids_) {
      protocol::TaskKey key;
      if (!protocol::parse_service_id(id, &key)) {
        std::fprintf(stderr,
                     "lrts cancel: '%s' is not a service id (they look like "
                     "0123456789abcdef-42)\n",
                     id.c_str());
        return 2;
      }
    }
    return guarded("cancel", [&] {
      Admin admin(t_.admin());
      const CancelOutcome o =
          application_id_.empty() ? admin.cancel(ids_) : admin.cancel_application(application_id_);
      if (json_) {
        std::printf("%s\n", json{{"cancelled", o.cancelled},
                                 {"already_done", o.already_done},
                                 {"unknown", o.unknown}}
                                .dump()
                                .c_str());
      } else {
        std::printf("%llu task(s) cancelled", static_cast<unsigned long long>(o.cancelled));
        if (o.already_done) {
          std::printf(", %llu had ended already", static_cast<unsigned long long>(o.already_done));
        }
        if (!o.unknown.empty()) std::printf(", %zu unknown", o.unknown.size());
        std::printf("\n");
        for (const auto& id : o.unknown) {
          std::fprintf(stderr,
                       "lrts cancel: the scheduler holds no task %s (or it is another key's)\n",
                       tui::printable(id).c_str());
        }
      }
      // Partly done is not done: a task named that could not be cancelled is an error.
      return o.unknown.empty() ? 0 : kFailed;
    });
  }

 private:
  CLI::App* app_;
  Target t_;
  std::vector<std::string> ids_;
  std::string application_id_;
  bool json_ = false;
};

class DrainCommand final : public Command {
 public:
  explicit DrainCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "drain",
            "Drain a worker as SIGTERM does: it takes no new tasks, finishes (or, with "
            "--on-stop handback, hands back) what it runs, and exits")) {
    add_target_flags(*app_, t_);
    app_->add_option("worker", worker_, "The worker's name or uid (see lrts workers)")
        ->required()
        ->check(flags::non_empty());
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    return guarded("drain", [&] {
      Admin admin(t_.admin());
      for (const auto& name : admin.drain(worker_)) {
        std::printf("worker %s is draining\n", tui::printable(name).c_str());
      }
      return 0;
    });
  }

 private:
  CLI::App* app_;
  Target t_;
  std::string worker_;
};

}  // namespace

std::unique_ptr<Command> status_command(CLI::App& lrts) {
  return std::make_unique<StatusCommand>(lrts);
}
std::unique_ptr<Command> workers_command(CLI::App& lrts) {
  return std::make_unique<WorkersCommand>(lrts);
}
std::unique_ptr<Command> tasks_command(CLI::App& lrts) {
  return std::make_unique<TasksCommand>(lrts);
}
std::unique_ptr<Command> cancel_command(CLI::App& lrts) {
  return std::make_unique<CancelCommand>(lrts);
}
std::unique_ptr<Command> drain_command(CLI::App& lrts) {
  return std::make_unique<DrainCommand>(lrts);
}

}  // namespace lrts::cli
