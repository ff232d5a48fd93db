// The subcommands of `lrts`. Each one adds its flags to the `lrts` app and runs when it was the
// one parsed; cli.cc only wires them together.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

namespace lrts::cli {

class Command {
 public:
  virtual ~Command() = default;
  // The subcommand, to know whether it was parsed.
  virtual CLI::App* app() const = 0;
  // Runs it after parsing; returns the process exit code.
  virtual int run() = 0;
  // Whether everything after a `--` is a program to run, not flags (`lrts submit -- PROGRAM`).
  virtual bool takes_program() const { return false; }
  virtual void set_program(std::vector<std::string> argv) {}
};

// --scheduler-address and --scheduler-port, for the commands that talk to the scheduler.
void add_scheduler_flags(CLI::App& command, std::string& address, int& port);
// --auth DIR: the directory of keys from `lrts keygen` this command uses (`what` says which).
void add_auth_flag(CLI::App& command, std::string& dir, const std::string& what);
// --insecure, for the daemons that listen.
void add_insecure_flag(CLI::App& command, bool& insecure);
// Checks an --application-id: not empty, at most protocol::kMaxAppIdBytes.
CLI::Validator application_id_check();

std::unique_ptr<Command> scheduler_command(CLI::App& lrts);
std::unique_ptr<Command> worker_command(CLI::App& lrts);
std::unique_ptr<Command> relay_command(CLI::App& lrts);
std::unique_ptr<Command> autoscale_command(CLI::App& lrts);
std::unique_ptr<Command> progress_server_command(CLI::App& lrts);
std::unique_ptr<Command> progress_command(CLI::App& lrts);
std::unique_ptr<Command> submit_command(CLI::App& lrts);
std::unique_ptr<Command> results_command(CLI::App& lrts);
std::unique_ptr<Command> keygen_command(CLI::App& lrts);
std::unique_ptr<Command> status_command(CLI::App& lrts);
std::unique_ptr<Command> workers_command(CLI::App& lrts);
std::unique_ptr<Command> tasks_command(CLI::App& lrts);
std::unique_ptr<Command> cancel_command(CLI::App& lrts);
std::unique_ptr<Command> drain_command(CLI::App& lrts);
std::unique_ptr<Command> dashboard_command(CLI::App& lrts);

}  // namespace lrts::cli
