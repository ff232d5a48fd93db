// `lrts keygen DIR`: the cluster's keys, and members added, listed and revoked.
#include <cstdio>

#include "cli/commands.hpp"
#include "net/auth.hpp"

namespace lrts::cli {

namespace {

class KeygenCommand final : public Command {
 public:
  explicit KeygenCommand(CLI::App& lrts)
      : app_(lrts.add_subcommand(
            "keygen",
            "Create the cluster's keys in DIR for --auth (ZeroMQ CURVE), or add, revoke and list "
            "member keys. DIR gets scheduler.key (the scheduler's and the progress server's "
            "secret), scheduler.pub (every member needs it), worker.key, application.key, "
            "viewer.key, admin.key (operators: lrts cancel, drain), and `members` (the accepted "
            "keys, re-read by the daemons within a "
            "second of a change). Every file is 0600. Give the scheduler and the progress "
            "server DIR; give each other machine a directory with scheduler.pub and its role's "
            "key, as --add makes")) {
    CLI::App& a = *app_;
    a.add_option("dir", dir_, "The cluster's key directory (created if missing)")->required();
    a.add_option("--add", add_,
                 "Add a member key NAME of --role: writes DIR/NAME/ (scheduler.pub and "
                 "ROLE.key) and accepts it at once; to rotate a key, add the new one, move the "
                 "members over, then --revoke the old one");
    a.add_option("--role", role_,
                 "Role of the member that --add makes: worker, application, viewer, admin, relay")
        ->check(CLI::IsMember({"worker", "application", "viewer", "admin"}));
    a.add_option("--revoke", revoke_,
                 "Stop accepting member NAME's key: new connections are refused and the "
                 "daemons drop its messages within a second (its workers' tasks go to others)");
    a.add_flag("--list", list_, "List the accepted members (role and name)");
  }
  CLI::App* app() const override { return app_; }

  int run() override {
    const int actions = !add_.empty() + !revoke_.empty() + (list_ ? 1 : 0);
    if (actions > 1) return fail("--add, --revoke and --list go one at a time");
    if (!role_.empty() && add_.empty()) return fail("--role goes with --add");
    if (!add_.empty()) {
      if (role_.empty()) return fail("--add needs --role worker|application|viewer|admin|relay");
      auto out = net::add_member(dir_, add_, *net::parse_role(role_));
      if (!out) return fail(out.error());
      std::printf("added %s '%s': give that machine %s (use --auth %s there)\n", role_.c_str(),
                  add_.c_str(), out->c_str(), out->c_str());
      return 0;
    }
    if (!revoke_.empty()) {
      if (auto s = net::revoke_member(dir_, revoke_); !s) return fail(s.error());
      std::printf("revoked '%s': the scheduler and the progress server refuse it from now on\n",
                  revoke_.c_str());
      return 0;
    }
    if (list_) {
      auto members = net::list_members(dir_);
      if (!members) return fail(members.error());
      for (const auto& m : *members) std::printf("%s\n", m.c_str());
      return 0;
    }
    if (auto s = net::create_cluster_keys(dir_); !s) return fail(s.error());
    std::printf(
        "cluster keys in %s: run the scheduler and the progress server with --auth %s; give "
        "workers, applications and viewers a copy of scheduler.pub with their key (or make one "
        "each with: lrts keygen %s --add NAME --role worker|application|viewer|admin|relay)\n",
        dir_.c_str(), dir_.c_str(), dir_.c_str());
    return 0;
  }

 private:
  static int fail(const std::string& why) {
    std::fprintf(stderr, "lrts keygen: %s\n", why.c_str());
    return 2;
  }

  CLI::App* app_;
  std::string dir_, add_, role_, revoke_;
  bool list_ = false;
};

}  // namespace

std::unique_ptr<Command> keygen_command(CLI::App& lrts) {
  return std::make_unique<KeygenCommand>(lrts);
}

}  // namespace lrts::cli
