// `lrts progress-server` and `lrts progress` (the viewer).
#include <cstdio>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "flags/flags.hpp"
#include "progress_server/server.hpp"
#include "tui/viewer.hpp"

namespace lrts::cli {

namespace {

class ProgressServerCommand final : public Command {
 public:
  explicit ProgressServerCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("progress-server",
                                 "Run the progress server: collects task progress from workers "
                                 "and shows it to applications (optional)")) {
    CLI::App& a = *app_;
    a.add_option("--address", pso_.address, "Address to listen on (IP, host name, or *)")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--port", pso_.port, "TCP port to listen on")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    a.add_option("--timeout", timeout_s_, flags::kTimeoutHelp)
        ->capture_default_str()
        ->check(flags::number(0, 86400));
    a.add_option("--keep-closed", keep_closed_s_,
                 "Seconds a finished bar is kept for late viewers before it is forgotten")
        ->capture_default_str()
        ->check(flags::number(0, 7.0 * 86400));
    a.add_option("--worker-silence", worker_silence_s_,
                 "Seconds without word from a worker after which its open bars are shown as "
                 "lost (workers with open bars report at least every 2 s)")
        ->capture_default_str()
        ->check(flags::number(3, 86400));
    a.add_option("--max-bars", pso_.store.max_bars,
                 "Bars held at most (oldest finished ones are forgotten first)")
        ->capture_default_str()
        ->check(CLI::Range(1, 100'000'000));
    add_auth_flag(a, pso_.auth_dir,
                  "the progress server uses scheduler.key and accepts the keys in `members`: "
                  "workers send bars, a viewer key sees all, an application key its own");
    add_insecure_flag(a, pso_.insecure);
    flags::add_log_level(a, log_level_);
    flags::add_log_format(a, log_format_);
    flags::add_metrics_port(a, pso_.metrics_port, pso_.metrics_address);
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    if (auto s = log::init("progress-server", log_level_, log_format_); !s) {
      std::fprintf(stderr, "lrts progress-server: %s\n", s.error().c_str());
      return 2;
    }
    pso_.store.keep_closed = flags::seconds(keep_closed_s_);
    pso_.worker_silence = flags::seconds(worker_silence_s_);
    auto server = progress_server::ProgressServer::create(pso_);
    if (!server) {
      std::fprintf(stderr, "lrts progress-server: %s\n", server.error().c_str());
      return 2;
    }
    return (*server)->run();
  }

 private:
  CLI::App* app_;
  progress_server::ProgressServerOptions pso_;
  std::string log_level_ = "info";
  std::string log_format_ = "text";
  double timeout_s_ = 1, keep_closed_s_ = 300, worker_silence_s_ = 10;
};

class ProgressCommand final : public Command {
 public:
  explicit ProgressCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand("progress",
                                 "Show the live progress of every application's "
                                 "tasks, or of one application's")) {
    CLI::App& a = *app_;
    a.add_option("--address", vo_.address, "Address of the progress server")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--port", vo_.port, "TCP port of the progress server")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    a.add_option("--application-id", vo_.application_id,
                 "Show only this application's tasks (default: every application)");
    a.add_option("--seconds", seconds_, "Stop after this many seconds (0: until Ctrl-C)")
        ->capture_default_str()
        ->check(flags::number(0, 365.0 * 86400));
    add_auth_flag(a, vo_.auth_dir,
                  "the viewer uses viewer.key (every bar), or application.key when there is none "
                  "(that application's bars only)");
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    vo_.run_for = flags::seconds(seconds_);
    return tui::run_viewer(vo_);
  }

 private:
  CLI::App* app_;
  tui::ViewerOptions vo_;
  double seconds_ = 0;
};

}  // namespace

std::unique_ptr<Command> progress_server_command(CLI::App& lrts) {
  return std::make_unique<ProgressServerCommand>(lrts);
}
std::unique_ptr<Command> progress_command(CLI::App& lrts) {
  return std::make_unique<ProgressCommand>(lrts);
}

}  // namespace lrts::cli
