// `lrts dashboard`: the web page of a running cluster (src/dashboard/dashboard.hpp).
#include <cstdio>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "dashboard/dashboard.hpp"
#include "flags/flags.hpp"

namespace lrts::cli {

namespace {

class DashboardCommand final : public Command {
 public:
  explicit DashboardCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "dashboard",
            "Serve a live web page of the cluster (workers, queue and throughput over time, "
            "applications, tasks with their bars, failures), built into this binary: no "
            "internet needed")) {
    CLI::App& a = *app_;
    a.add_option("--port", o_.port, "HTTP port of the page (0: any free port, printed)")
        ->capture_default_str()
        ->check(CLI::Range(0, 65535));
    a.add_option("--address", o_.address,
                 "Address to serve on; the page has no login, so anything but loopback needs "
                 "--insecure")
        ->capture_default_str()
        ->check(flags::non_empty());
    add_scheduler_flags(a, o_.scheduler_address, o_.scheduler_port);
    a.add_option("--progress-address", o_.progress_address, "Address of the progress server")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--progress-port", o_.progress_port, "TCP port of the progress server")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    add_auth_flag(a, o_.auth_dir,
                  "connects with admin.key, else viewer.key (every application), else "
                  "application.key (its own)");
    a.add_flag("--insecure", o_.insecure,
               "Serve on a non-loopback address although the page has no login");
    flags::add_log_level(a, log_level_);
    flags::add_log_format(a, log_format_);
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    if (auto s = log::init("dashboard", log_level_, log_format_); !s) {
      std::fprintf(stderr, "lrts dashboard: %s\n", s.error().c_str());
      return 2;
    }
    return dashboard::run_dashboard(o_);
  }

 private:
  CLI::App* app_;
  dashboard::DashboardOptions o_;
  std::string log_level_ = "warn";
  std::string log_format_ = "text";
};

}  // namespace

std::unique_ptr<Command> dashboard_command(CLI::App& lrts) {
  return std::make_unique<DashboardCommand>(lrts);
}

}  // namespace lrts::cli
