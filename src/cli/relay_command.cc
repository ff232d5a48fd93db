#include <cstdio>

#include "cli/commands.hpp"
#include "common/log.hpp"
#include "flags/flags.hpp"
#include "relay/relay.hpp"

namespace lrts::cli {

namespace {

class RelayCommand final : public Command {
 public:
  explicit RelayCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "relay",
            "Run a relay: workers connect to it as to the scheduler, and it carries them on one "
            "connection to the scheduler (or to another relay), summing up their heartbeats. "
            "Holds no task: killing it costs its workers a reconnect")) {
    CLI::App& a = *app_;
    a.add_option("--address", o_.address,
                 "Address workers connect to (IP, host name, or * for every interface)")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--port", o_.port, "TCP port workers connect to")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    a.add_option("--scheduler-address", upstream_,
                 "The scheduler, or another relay (relays chain): a comma-separated list "
                 "HOST[:PORT],... tried in order, the next one when the current one does not "
                 "answer")
        ->capture_default_str()
        ->check(flags::non_empty());
    a.add_option("--scheduler-port", o_.upstream_port,
                 "TCP port of the scheduler, for addresses in the list without one")
        ->capture_default_str()
        ->check(CLI::Range(1, 65535));
    add_auth_flag(a, o_.auth_dir,
                  "the relay serves workers with scheduler.key, accepts the worker and relay keys "
                  "listed in `members`, and connects upstream with relay.key (lrts keygen DIR "
                  "--add NAME --role relay)");
    add_insecure_flag(a, o_.insecure);
    a.add_option("--max-message-mb", max_mb_,
                 "Largest message accepted from a worker, in MiB (as the scheduler's)")
        ->capture_default_str()
        ->check(flags::number(1, 4095));
    flags::add_log_level(a, log_level_);
    flags::add_log_format(a, log_format_);
  }

  CLI::App* app() const override { return app_; }

  int run() override {
    if (auto s = log::init("relay", log_level_, log_format_); !s) {
      std::fprintf(stderr, "lrts relay: %s\n", s.error().c_str());
      return 2;
    }
    o_.upstream = {upstream_};
    o_.max_message_bytes = static_cast<size_t>(max_mb_ * 1024 * 1024);
    return relay::run_relay(o_);
  }

 private:
  CLI::App* app_;
  relay::RelayOptions o_;
  std::string upstream_ = "127.0.0.1";
  std::string log_level_ = "info";
  std::string log_format_ = "text";
  double max_mb_ = 64;
};

}  // namespace

std::unique_ptr<Command> relay_command(CLI::App& lrts) {
  return std::make_unique<RelayCommand>(lrts);
}

}  // namespace lrts::cli
