#include "cli/cli.hpp"

#include <cstdio>
#include <vector>

#include "cli/commands.hpp"
#include "flags/flags.hpp"
#include "protocol/messages.hpp"
#include "worker/slot_runtime.hpp"

namespace lrts::cli {

void add_scheduler_flags(CLI::App& command, std::string& address, int& port) {
  command.add_option("--scheduler-address", address, "Address of the scheduler")
      ->capture_default_str()
      ->check(flags::non_empty());
  command.add_option("--scheduler-port", port, "TCP port of the scheduler")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
}

void add_auth_flag(CLI::App& command, std::string& dir, const std::string& what) {
  command
      .add_option("--auth", dir,
                  "Directory of cluster keys made by `lrts keygen DIR` (or a member's, from "
                  "--add): every connection is encrypted and authenticated with ZeroMQ CURVE "
                  "(default: $LRTS_AUTH_DIR); " +
                      what)
      ->envname("LRTS_AUTH_DIR")
      ->check(CLI::ExistingDirectory);
}

void add_insecure_flag(CLI::App& command, bool& insecure) {
  command.add_flag("--insecure", insecure,
                   "Listen on a non-loopback address without --auth (anyone who can reach the "
                   "port may then register workers, submit tasks and read results): warns loudly");
}

CLI::Validator application_id_check() {
  return CLI::Validator(
      [](std::string& v) -> std::string {
        if (v.empty()) return "must not be empty";
        if (v.size() > protocol::kMaxAppIdBytes) return "an application id has at most 256 bytes";
        return "";
      },
      "TEXT");
}

namespace {
constexpr const char* kVersion = "0.1.0";
}  // namespace

int main(int argc, char** argv) {
  if (worker::is_slot_invocation(argc, argv)) return worker::slot_main(argc, argv);

  CLI::App app{"lrts — Long Running Task Service: run long tasks on a cluster and watch them.",
               "lrts"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  // A flag given twice takes the last value (scripts often append overrides).
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);

  std::vector<std::unique_ptr<Command>> commands;
  commands.push_back(scheduler_command(app));
  commands.push_back(worker_command(app));
  commands.push_back(relay_command(app));
  commands.push_back(autoscale_command(app));
  commands.push_back(progress_server_command(app));
  commands.push_back(progress_command(app));
  commands.push_back(submit_command(app));
  commands.push_back(results_command(app));
  commands.push_back(keygen_command(app));
  commands.push_back(status_command(app));
  commands.push_back(workers_command(app));
  commands.push_back(tasks_command(app));
  commands.push_back(cancel_command(app));
  commands.push_back(drain_command(app));
  commands.push_back(dashboard_command(app));

  if (argc > 1 && argv[1][0] != '-') {
    bool known = false;
    std::string names;
    for (const auto& c : commands) {
      known |= c->app()->get_name() == argv[1];
      names += (names.empty() ? "" : ", ") + c->app()->get_name();
    }
    if (!known) {
      std::fprintf(stderr, "lrts: unknown command '%s' (commands: %s; see --help)\n", argv[1],
                   names.c_str());
      return 2;
    }
  }
  // `lrts submit ... -- PROGRAM ARGS`: the program's words are its own, never flags of ours.
  Command* with_program = nullptr;
  if (argc > 1) {
    for (const auto& c : commands) {
      if (c->app()->get_name() == argv[1] && c->takes_program()) with_program = c.get();
    }
  }
  if (with_program) {
    for (int i = 2; i < argc; ++i) {
      if (std::string_view(argv[i]) != "--") continue;
      with_program->set_program(std::vector<std::string>(argv + i + 1, argv + argc));
      argc = i;
      break;
    }
  }
  int code = 0;
  if (!flags::parse(app, flags::normalize(argc, argv), "lrts", &code)) return code;
  for (const auto& c : commands) {
    if (c->app()->parsed()) return c->run();
  }
  return 2;
}

}  // namespace lrts::cli
