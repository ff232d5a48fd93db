#include "common/process.hpp"

#include <dirent.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <fstream>

extern char** environ;

namespace lrts {

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* name = ::strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "unknown") + ")";
  }
  return "ended with wait status " + std::to_string(status);
}

Result<ChildProcess> ChildProcess::spawn(const SpawnOptions& options) {
  if (options.argv.empty()) return make_error("spawn: empty argv");
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  for (auto [from, to] : options.fds) {
    if (from == to) {
      // dup2 onto itself would not clear O_CLOEXEC; go through a temporary number.
      posix_spawn_file_actions_adddup2(&actions, from, 1000 + to);
      posix_spawn_file_actions_adddup2(&actions, 1000 + to, to);
      posix_spawn_file_actions_addclose(&actions, 1000 + to);
    } else {
      posix_spawn_file_actions_adddup2(&actions, from, to);
    }
  }
  if (options.close_other_fds) {
    int highest = 2;
    for (const auto& fd : options.fds) highest = std::max(highest, fd.second);
    posix_spawn_file_actions_addclosefrom_np(&actions, highest + 1);
  }
  if (!options.cwd.empty()) posix_spawn_file_actions_addchdir_np(&actions, options.cwd.c_str());
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  sigset_t empty, all;
  sigemptyset(&empty);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setsigdefault(&attr, &all);
  if (options.new_process_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);

  std::vector<char*> argv;
  argv.reserve(options.argv.size() + 1);
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);

  std::vector<char*> env;
  if (!options.env.empty()) {
    env.reserve(options.env.size() + 1);
    for (const auto& e : options.env) env.push_back(const_cast<char*>(e.c_str()));
    env.push_back(nullptr);
  }

  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(),
                               env.empty() ? environ : env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    std::string where;
    if (!options.cwd.empty()) where = " in " + options.cwd;
    return make_error("cannot start " + options.argv[0] + where + ": " + ::strerror(rc));
  }
  return ChildProcess(pid);
}

ChildProcess& ChildProcess::operator=(ChildProcess&& o) noexcept {
  if (this != &o) {
    reset();
    pid_ = std::exchange(o.pid_, -1);
  }
  return *this;
}

void ChildProcess::reset() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    wait();
  }
}

void ChildProcess::signal(int sig) const {
  if (pid_ > 0) ::kill(pid_, sig);
}

void ChildProcess::signal_group(int sig) const {
  if (pid_ > 0) {
    ::kill(-pid_, sig);
    ::kill(pid_, sig);  // in case it is not a group leader
  }
}

bool ChildProcess::try_wait(int* status) {
  if (pid_ <= 0) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    pid_ = -1;
    if (status) *status = st;
    return true;
  }
  return false;
}

int ChildProcess::wait() {
  int st = 0;
  while (pid_ > 0) {
    pid_t r = ::waitpid(pid_, &st, 0);
    if (r == pid_ || (r < 0 && errno != EINTR)) pid_ = -1;
  }
  return st;
}

std::string self_executable() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return {};
  return std::string(buf, static_cast<size_t>(n));
}

std::vector<pid_t> child_pids() {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::ifstream in(std::string("/proc/self/task/") + e->d_name + "/children");
    pid_t p;
    while (in >> p) out.push_back(p);
  }
  ::closedir(d);
  return out;
}

void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

void kill_descendants(const std::vector<pid_t>& keep) {
  for (int round = 0; round < 16; ++round) {
    bool any = false;
    for (pid_t p : child_pids()) {
      if (std::find(keep.begin(), keep.end(), p) != keep.end()) continue;
      any = true;
      ::kill(-p, SIGKILL);  // its group, if it leads one
      ::kill(p, SIGKILL);
      int st;
      ::waitpid(p, &st, 0);  // its children are reparented here and found next round
    }
    if (!any) return;
  }
}

}  // namespace lrts
