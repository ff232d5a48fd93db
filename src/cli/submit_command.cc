// `lrts submit`: schedule N instances of a service from the command line.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "flags/flags.hpp"
#include "lrts/client.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "protocol/messages.hpp"

namespace lrts::cli {

namespace {

struct SubmitOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string service_name;
  std::string fields_json = "{}";
  int count = 1;
  bool wait = false;
  unsigned max_retries = 3;
  double task_timeout_s = 0;
  double wait_timeout_s = 0;
  std::string application_id;
  std::string auth_dir;
  std::vector<std::string> program;  // after `--`: run this program (service lrts.command)
  std::string cwd;
};

constexpr const char* kCommandService = "lrts.command";

// The fields of task `index` of a program submission: {index} in an argument is the index.
std::string program_fields(const SubmitOptions& o, uint64_t index) {
  nlohmann::json argv = nlohmann::json::array();
  const std::string token = "{index}";
  for (std::string a : o.program) {
    for (size_t at = a.find(token); at != std::string::npos; at = a.find(token, at)) {
      const std::string n = std::to_string(index);
      a.replace(at, token.size(), n);
      at += n.size();
    }
    argv.push_back(std::move(a));
  }
  const std::vector<uint8_t> packed =
      nlohmann::json::to_msgpack(nlohmann::json{{"argv", argv}, {"index", index}, {"cwd", o.cwd}});
  return std::string(packed.begin(), packed.end());
}

// The command that collects what this submission leaves running.
std::string collect_command(const SubmitOptions& o, const ClientApplication& app) {
  const std::string where = o.scheduler_port == 5555 && o.scheduler_address == "127.0.0.1"
                                ? ""
                                : " --scheduler-address " + o.scheduler_address +
                                      " --scheduler-port " + std::to_string(o.scheduler_port);
  const std::string auth = o.auth_dir.empty() ? "" : " --auth " + o.auth_dir;
  return "lrts results --application-id " + app.application_id() + where + auth + " --wait";
}

int submit(const SubmitOptions& o) {
  if (o.program.empty() == o.service_name.empty()) {
    std::fprintf(stderr,
                 o.program.empty()
                     ? "lrts submit: name a service, or give a program after -- (lrts submit "
                       "--count 10 -- ./train --seed {index})\n"
                     : "lrts submit: give a service name or a program after --, not both\n");
    return 2;
  }
  nlohmann::json fields;
  try {
    fields = nlohmann::json::parse(o.fields_json);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "lrts submit: --fields is not valid JSON: %s\n", e.what());
    return 2;
  }
  if (!fields.is_object()) {
    std::fprintf(stderr, "lrts submit: --fields must be a JSON object of field name to value\n");
    return 2;
  }
  if (auto ep = net::connect_endpoint(o.scheduler_address, o.scheduler_port); !ep) {
    std::fprintf(stderr, "lrts submit: --scheduler-address: %s\n", ep.error().c_str());
    return 2;
  }
  const std::vector<uint8_t> packed = nlohmann::json::to_msgpack(fields);
  const std::string payload(packed.begin(), packed.end());

  if (!o.auth_dir.empty()) {
    if (auto a = net::load_client_auth(o.auth_dir, net::Role::kApplication); !a) {
      std::fprintf(stderr, "lrts submit: %s\n", a.error().c_str());
      return 2;
    }
  }
  ApplicationInformation info;
  info.scheduler_address = o.scheduler_address;
  info.scheduler_port = o.scheduler_port;
  info.application_id = o.application_id;
  info.auth_dir = o.auth_dir;
  ClientApplication app(info);
  app.start_application();

  TaskOptions task;
  task.max_retries = o.max_retries;
  task.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.task_timeout_s * 1000));
  std::vector<std::string> ids;
  ids.reserve(static_cast<size_t>(o.count));
  for (int i = 0; i < o.count; ++i) {
    ids.push_back(o.program.empty()
                      ? app.schedule_service(o.service_name, payload, task)
                      : app.schedule_service(kCommandService,
                                             program_fields(o, static_cast<uint64_t>(i)), task));
  }
  for (const auto& id : ids) std::printf("%s\n", id.c_str());
  std::fflush(stdout);

  if (!o.wait) {
    // Leave the tasks running: make sure they reached the scheduler, then go without cancelling.
    if (!app.flush(std::chrono::seconds(30))) {
      if (const std::string why = app.failure(); !why.empty()) {
        std::fprintf(stderr, "lrts submit: %s\n", why.c_str());
        return 1;
      }
      std::fprintf(stderr,
                   "lrts submit: the scheduler at %s:%d did not acknowledge the tasks within "
                   "30 s\n",
                   o.scheduler_address.c_str(), o.scheduler_port);
      return 1;
    }
    std::fprintf(stderr,
                 "lrts submit: %zu task(s) queued under application id %s; they run to the end "
                 "whether or not anyone waits. Collect the results with:\n  %s\n",
                 ids.size(), app.application_id().c_str(), collect_command(o, app).c_str());
    app.detach_application();
    return 0;
  }

  int failed = 0;
  auto range =
      o.wait_timeout_s > 0
          ? app.as_completed(
                ids, std::chrono::milliseconds(static_cast<int64_t>(o.wait_timeout_s * 1000)))
          : app.as_completed(ids);
  try {
    for (const ServiceResult& r : range) {
      if (!r.ok()) ++failed;
      std::printf("%s\n", r.to_json().c_str());
      std::fflush(stdout);
    }
  } catch (const TimeoutError&) {
    // Nothing is cancelled: the rest runs on and waits to be collected.
    std::fprintf(stderr,
                 "lrts submit: gave up waiting after %g s; the unfinished tasks run on. Collect "
                 "their results with:\n  %s\n",
                 o.wait_timeout_s, collect_command(o, app).c_str());
    app.detach_application();
    return 3;
  }
  app.stop_application();
  if (failed) {
    std::fprintf(stderr, "lrts submit: %d of %zu task(s) did not finish\n", failed, ids.size());
  }
  return failed ? 1 : 0;
}

class SubmitCommand final : public Command {
 public:
  explicit SubmitCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "submit",
            "Submit tasks of a registered service, or of any program: lrts submit [flags] -- "
            "PROGRAM ARGS... ({index} in an argument becomes the task's index; workers need "
            "--allow-commands). Prints the service ids (and results with --wait)")) {
    CLI::App& a = *app_;
    a.add_option("service", o_.service_name,
                 "Registered name of the service (or give a program after --)")
        ->check(flags::non_empty());
    a.add_option("--cwd", o_.cwd,
                 "With a program: the directory it runs in on the worker (default: the "
                 "worker's own)");
    a.add_option("--fields", o_.fields_json,
                 "The service's fields as a JSON object, e.g. '{\"a\":6,\"b\":9}'")
        ->capture_default_str();
    a.add_option("--count", o_.count, "How many instances to submit")
        ->capture_default_str()
        ->check(CLI::Range(1, 100'000'000));
    a.add_flag("--wait", o_.wait,
               "Wait and print one JSON line per result as each completes; exit status 1 if any "
               "task did not finish");
    add_scheduler_flags(a, o_.scheduler_address, o_.scheduler_port);
    add_auth_flag(a, o_.auth_dir, "submits with application.key");
    a.add_option("--max-retries", o_.max_retries,
                 "Further attempts when an attempt is lost (worker or slot died)")
        ->capture_default_str()
        ->check(CLI::Range(0u, protocol::kMaxRetries));
    a.add_option("--task-timeout", o_.task_timeout_s,
                 "Seconds a task may run before it ends as timed_out (0: no limit)")
        ->capture_default_str()
        ->check(flags::number(0, 49.0 * 86400));
    a.add_option("--wait-timeout", o_.wait_timeout_s,
                 "With --wait: give up after this many seconds (0: wait forever)")
        ->capture_default_str()
        ->check(flags::number(0, 365.0 * 86400));
    a.add_option("--application-id", o_.application_id,
                 "Application id to submit under (default: a fresh one); at most 256 bytes")
        ->check(application_id_check());
  }
  CLI::App* app() const override { return app_; }
  bool takes_program() const override { return true; }
  void set_program(std::vector<std::string> argv) override {
    o_.program = std::move(argv);
    program_given_ = true;
  }
  int run() override {
    if (program_given_ && o_.program.empty()) {
      std::fprintf(stderr, "lrts submit: nothing after --: give the program to run\n");
      return 2;
    }
    if (!o_.program.empty() && o_.fields_json != "{}") {
      std::fprintf(stderr,
                   "lrts submit: --fields is for services; a program takes its "
                   "arguments after --\n");
      return 2;
    }
    try {
      return submit(o_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lrts submit: %s\n", e.what());
      return 1;
    }
  }

 private:
  CLI::App* app_;
  SubmitOptions o_;
  bool program_given_ = false;
};

}  // namespace

std::unique_ptr<Command> submit_command(CLI::App& lrts) {
  return std::make_unique<SubmitCommand>(lrts);
}

}  // namespace lrts::cli
