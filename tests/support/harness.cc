#include "support/harness.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/unique_fd.hpp"

namespace lrts::testing {

int free_port() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return 0;
  socklen_t len = sizeof addr;
  ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto pause = 1ms;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(pause);  // polling interval of the condition, not a sync point
    pause = std::min<std::chrono::milliseconds>(pause * 2, 50ms);
  }
}

size_t occurrences(std::string_view haystack, std::string_view needle) {
  size_t n = 0;
  for (size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

bool wait_for_file(const std::string& path, std::chrono::milliseconds timeout) {
  return wait_until([&] { return !read_file(path).empty(); }, timeout);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lrts-test-XXXXXX";
  if (!::mkdtemp(tmpl.data())) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // A test that threw has not been marked failed yet while its locals unwind.
  if ((info && info->result()->Failed()) || std::uncaught_exceptions() > 0) {
    std::fprintf(stderr, "test failed: logs kept in %s\n", path_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

Daemon::Daemon(std::vector<std::string> argv, std::string log_path)
    : log_path_(std::move(log_path)) {
  UniqueFd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions so;
  // Dies with the test process, so an interrupted test run leaves nothing behind.
  if (::access("/usr/bin/setpriv", X_OK) == 0) {
    argv.insert(argv.begin(), {"/usr/bin/setpriv", "--pdeathsig", "KILL", "--"});
  }
  so.argv = std::move(argv);
  so.fds = {{null.get(), 0}, {log.get(), 1}, {log.get(), 2}};
  auto child = ChildProcess::spawn(so);
  if (!child) {
    ADD_FAILURE() << child.error();
    return;
  }
  proc_ = std::move(*child);
}

bool Daemon::running() const { return proc_.unreaped() && process_alive(proc_.pid()); }

int Daemon::wait_exit(std::chrono::milliseconds timeout) {
  int status = -1;
  if (!wait_until([&] { return proc_.try_wait(&status); }, timeout)) return -1;
  return status;
}

bool Daemon::log_contains(const std::string& text) const {
  return log().find(text) != std::string::npos;
}

CommandResult run_command(const std::vector<std::string>& argv, std::chrono::milliseconds timeout) {
  CommandResult result;
  int out_pipe[2], err_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) return result;
  UniqueFd out_r(out_pipe[0]), out_w(out_pipe[1]), err_r(err_pipe[0]), err_w(err_pipe[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions so;
  so.argv = argv;
  so.fds = {{null.get(), 0}, {out_w.get(), 1}, {err_w.get(), 2}};
  auto child = ChildProcess::spawn(so);
  if (!child) {
    result.err = child.error();
    return result;
  }
  out_w.reset();
  err_w.reset();
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true;
  char buf[65536];
  while (out_open || err_open) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      child->signal(SIGKILL);
      break;
    }
    pollfd fds[2] = {{out_open ? out_r.get() : -1, POLLIN, 0},
                     {err_open ? err_r.get() : -1, POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(left.count())) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (!fds[i].revents) continue;
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        (i == 0 ? out_open : err_open) = false;
      } else {
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  const int status = child->wait();
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::vector<pid_t> children_of(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    const pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == parent && state != 'Z') out.push_back(pid);
  }
  ::closedir(d);
  return out;
}

bool process_alive(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return false;
  return stat[close + 2] != 'Z';
}

long cpu_ticks(pid_t pid) {
  std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

double memory_mib(pid_t pid, const char* field) {
  std::istringstream status(read_file("/proc/" + std::to_string(pid) + "/status"));
  const std::string key = std::string(field) + ":";
  for (std::string line; std::getline(status, line);) {
    if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size())) / 1024.0;
  }
  return -1;
}

std::string lrts_bin() { return LRTS_BIN; }
std::string examples_dir() { return LRTS_EXAMPLES_DIR; }
std::string example_services_lib() { return LRTS_EXAMPLE_SERVICES; }
std::string test_services_lib() { return LRTS_TEST_SERVICES; }
std::string test_app() { return LRTS_TEST_APP; }
std::string source_dir() { return LRTS_SOURCE_DIR; }

std::string Cluster::scheduler_logs() const {
  std::string out;
  for (int i = 0; i < scheduler_starts_; ++i) {
    out += read_file(dir_.file("scheduler." + std::to_string(i) + ".log"));
  }
  return out;
}

Cluster::Cluster(TempDir& dir) : dir_(dir), port_(free_port()), progress_port_(free_port()) {
  if (const char* a = std::getenv("LRTS_TEST_AUTH"); a && std::string(a) == "1") enable_auth();
}

Cluster::~Cluster() {
  if (!auth_dir_.empty()) ::unsetenv("LRTS_AUTH_DIR");
}

const std::string& Cluster::enable_auth() {
  if (!auth_dir_.empty()) return auth_dir_;
  const std::string keys = dir_.file("keys");
  const CommandResult r = run_command({lrts_bin(), "keygen", keys}, 30s);
  if (r.exit_code != 0) {
    ADD_FAILURE() << "lrts keygen failed: " << r.err;
    return auth_dir_;
  }
  auth_dir_ = keys;
  ::setenv("LRTS_AUTH_DIR", keys.c_str(), 1);
  return auth_dir_;
}

Daemon& Cluster::start_scheduler(std::vector<std::string> extra) {
  std::vector<std::string> argv = {lrts_bin(), "scheduler",           "-address",    "127.0.0.1",
                                   "-port",    std::to_string(port_), "--log-level", "debug"};
  // The journal lives in the test's directory (not the user's default state directory), unless
  // the test chose its own or none.
  const bool chose = std::find_if(extra.begin(), extra.end(), [](const std::string& a) {
                       return a == "--state-dir" || a == "--no-journal";
                     }) != extra.end();
  if (!chose) {
    argv.push_back("--state-dir");
    argv.push_back(dir_.file("state"));
  }
  argv.insert(argv.end(), extra.begin(), extra.end());
  scheduler_ = Daemon(argv, dir_.file("scheduler." + std::to_string(scheduler_starts_++) + ".log"));
  return scheduler_;
}

Daemon& Cluster::start_progress_server(std::vector<std::string> extra) {
  std::vector<std::string> argv = {lrts_bin(),    "progress-server",
                                   "-address",    "127.0.0.1",
                                   "-port",       std::to_string(progress_port_),
                                   "--log-level", "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  progress_server_ =
      Daemon(argv, dir_.file("progress." + std::to_string(progress_starts_++) + ".log"));
  return progress_server_;
}

Daemon& Cluster::start_worker(int slots, std::vector<std::string> extra) {
  return start_worker_via("127.0.0.1:" + std::to_string(port_), slots, std::move(extra));
}

Daemon& Cluster::start_relay(int* port, std::vector<std::string> extra) {
  *port = free_port();
  std::vector<std::string> argv = {lrts_bin(),         "relay",
                                   "--port",           std::to_string(*port),
                                   "--scheduler-port", std::to_string(port_),
                                   "--log-level",      "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const std::string name = "relay" + std::to_string(relays_.size());
  relays_.emplace_back(argv, dir_.file(name + ".log"));
  return relays_.back();
}

Daemon& Cluster::start_worker_via(const std::string& addresses, int slots,
                                  std::vector<std::string> extra) {
  std::vector<std::string> argv = {lrts_bin(),           "worker",
                                   "-scheduler-address", addresses,
                                   "-scheduler-port",    std::to_string(port_),
                                   "-progress-port",     std::to_string(progress_port_),
                                   "-max-jobs",          std::to_string(slots),
                                   "--service-lib",      example_services_lib(),
                                   "--service-lib",      test_services_lib(),
                                   "--log-level",        "debug"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  const std::string name = "worker" + std::to_string(workers_.size());
  argv.push_back("--name");
  argv.push_back(name);
  workers_.emplace_back(argv, dir_.file(name + ".log"));
  return workers_.back();
}

AdminOptions Cluster::admin_options() const {
  AdminOptions o;
  o.scheduler_port = port_;
  o.auth_dir = auth_dir_;
  o.timeout = 2s;
  return o;
}

bool Cluster::wait_for_connected(size_t n, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        try {
          return Admin(admin_options()).status().workers == n;
        } catch (const AdminError&) {
          return false;  // not up yet
        }
      },
      timeout);
}

bool Cluster::wait_for_workers(size_t n, std::chrono::milliseconds timeout) {
  return wait_until([&] { return occurrences(scheduler_logs(), "' registered") >= n; }, timeout);
}

std::string Cluster::logs() const {
  std::string out;
  for (int i = 0; i < scheduler_starts_; ++i) {
    out += "--- scheduler." + std::to_string(i) + ".log\n" +
           read_file(dir_.file("scheduler." + std::to_string(i) + ".log"));
  }
  for (int i = 0; i < progress_starts_; ++i) {
    out += "--- progress." + std::to_string(i) + ".log\n" +
           read_file(dir_.file("progress." + std::to_string(i) + ".log"));
  }
  for (const auto& w : workers_) out += "--- " + w.log_path() + "\n" + w.log();
  for (const auto& r : relays_) out += "--- " + r.log_path() + "\n" + r.log();
  return out;
}

}  // namespace lrts::testing
