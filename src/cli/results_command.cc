// `lrts results`: collects the results of an application's tasks — say, of a detached
// `lrts submit` — printing one JSON line per result, without cancelling what still runs.
#include <cstdio>
#include <set>

#include "cli/commands.hpp"
#include "flags/flags.hpp"
#include "lrts/client.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "protocol/messages.hpp"

namespace lrts::cli {

namespace {

// Exit status when tasks are left unfinished (no --wait, or --timeout passed).
constexpr int kUnfinished = 3;

struct ResultsOptions {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string application_id;
  std::string auth_dir;
  bool wait = false;
  double timeout_s = 0;
};

int collect(const ResultsOptions& o) {
  if (auto ep = net::connect_endpoint(o.scheduler_address, o.scheduler_port); !ep) {
    std::fprintf(stderr, "lrts results: --scheduler-address: %s\n", ep.error().c_str());
    return 2;
  }
  if (!o.auth_dir.empty()) {
    if (auto a = net::load_client_auth(o.auth_dir, net::Role::kApplication); !a) {
      std::fprintf(stderr, "lrts results: %s\n", a.error().c_str());
      return 2;
    }
  }
  ApplicationInformation info;
  info.scheduler_address = o.scheduler_address;
  info.scheduler_port = o.scheduler_port;
  info.application_id = o.application_id;
  info.auth_dir = o.auth_dir;
  info.track_progress = false;
  info.collect_only = true;  // interrupted, it leaves the application detached as it was
  ClientApplication app(info);
  app.start_application();
  const auto connect_within =
      std::chrono::seconds(o.timeout_s > 0 ? static_cast<int64_t>(o.timeout_s) + 1 : 30);
  if (!app.wait_connected(connect_within)) {
    if (const std::string why = app.failure(); !why.empty()) {
      std::fprintf(stderr, "lrts results: %s\n", why.c_str());
      app.detach_application();
      return 2;
    }
    std::fprintf(stderr, "lrts results: the scheduler at %s:%d did not answer within %lld s\n",
                 o.scheduler_address.c_str(), o.scheduler_port,
                 static_cast<long long>(connect_within.count()));
    app.detach_application();
    return 1;
  }
  const std::vector<std::string> ids = app.pending_service_ids();
  int failed = 0;
  size_t printed = 0;
  auto print = [&](const ServiceResult& r) {
    if (!r.ok()) ++failed;
    ++printed;
    std::printf("%s\n", r.to_json().c_str());
    std::fflush(stdout);
  };
  int code = 0;
  if (!o.wait) {
    for (const ServiceResult& r : app.collect_ready()) print(r);
  } else {
    auto range = o.timeout_s > 0
                     ? app.as_completed(
                           ids, std::chrono::milliseconds(static_cast<int64_t>(o.timeout_s * 1000)))
                     : app.as_completed(ids);
    try {
      for (const ServiceResult& r : range) print(r);
    } catch (const TimeoutError&) {
      std::fprintf(stderr, "lrts results: gave up waiting after %g s\n", o.timeout_s);
    }
  }
  const size_t left = ids.size() > printed ? ids.size() - printed : 0;
  if (ids.empty()) {
    std::fprintf(stderr, "lrts results: nothing waits for application id %s\n",
                 o.application_id.c_str());
  } else if (left) {
    std::fprintf(stderr,
                 "lrts results: %zu result(s) collected; %zu task(s) of application id %s are "
                 "not finished yet%s\n",
                 printed, left, o.application_id.c_str(), o.wait ? "" : " (--wait waits for them)");
    code = kUnfinished;
  }
  if (failed) {
    std::fprintf(stderr, "lrts results: %d of %zu task(s) did not finish\n", failed, printed);
    if (!code) code = 1;
  }
  app.detach_application();  // what still runs goes on; its results wait here
  return code;
}

class ResultsCommand final : public Command {
 public:
  explicit ResultsCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "results",
            "Collect the results of an application's tasks (for instance of an lrts submit "
            "without --wait): one JSON line per result. Exit status 0 when every task of the "
            "application is collected and finished, 1 if one did not finish, 3 if some are "
            "still running (without --wait, or past --timeout). What still runs goes on")) {
    CLI::App& a = *app_;
    a.add_option("--application-id", o_.application_id, "The application id the tasks run under")
        ->required()
        ->check(application_id_check());
    a.add_flag("--wait", o_.wait, "Wait until every task has a result, printing each as it comes");
    a.add_option("--timeout", o_.timeout_s,
                 "With --wait: give up after this many seconds (0: wait as long as it takes)")
        ->capture_default_str()
        ->check(flags::number(0, 365.0 * 86400));
    add_scheduler_flags(a, o_.scheduler_address, o_.scheduler_port);
    add_auth_flag(a, o_.auth_dir,
                  "collects with application.key (only the key that created the application may)");
  }
  CLI::App* app() const override { return app_; }
  int run() override {
    try {
      return collect(o_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "lrts results: %s\n", e.what());
      return 1;
    }
  }

 private:
  CLI::App* app_;
  ResultsOptions o_;
};

}  // namespace

std::unique_ptr<Command> results_command(CLI::App& lrts) {
  return std::make_unique<ResultsCommand>(lrts);
}

}  // namespace lrts::cli
