#include "cli/commands.hpp"
#include "worker/worker_flags.hpp"

namespace lrts::cli {

namespace {

class WorkerCommand final : public Command {
 public:
  explicit WorkerCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("worker",
                                 "Run a worker: runs tasks in -max-jobs slot "
                                 "processes")) {
    worker::add_worker_flags(*app_, flags_);
  }
  CLI::App* app() const override { return app_; }
  int run() override { return worker::run_worker_command(flags_, "worker"); }

 private:
  CLI::App* app_;
  worker::WorkerFlags flags_;
};

}  // namespace

std::unique_ptr<Command> worker_command(CLI::App& lrts) {
  return std::make_unique<WorkerCommand>(lrts);
}

}  // namespace lrts::cli
