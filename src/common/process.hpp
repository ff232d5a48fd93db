// ChildProcess: a child started with posix_spawn (never a plain fork(): the parent may run
// libzmq threads). Owns the child: the destructor kills it with SIGKILL and reaps it unless it
// has already been reaped. Move-only, not thread-safe.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"

namespace lrts {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is the path to execute
  // Descriptors to hand over: {parent_fd, child_fd}. Every other descriptor the parent opened
  // with O_CLOEXEC stays closed in the child.
  std::vector<std::pair<int, int>> fds;
  bool new_process_group = false;  // keeps terminal Ctrl-C away from the child
  // Also closes, in the child, every descriptor numbered above the highest child_fd of `fds`
  // (or above 2), O_CLOEXEC or not: descriptors this process inherited without O_CLOEXEC stay
  // out of a child that must not see them.
  bool close_other_fds = false;
  // The child's whole environment, "NAME=value" entries; empty: this process's own (environ).
  std::vector<std::string> env;
  // The child's working directory; empty: this process's own. A relative argv[0] is found
  // from there.
  std::string cwd;
};

// How a child ended, as a user should read it: "exited with status 3",
// "killed by signal 11 (Segmentation fault)".
std::string describe_wait_status(int status);

class ChildProcess {
 public:
  ChildProcess() = default;
  static Result<ChildProcess> spawn(const SpawnOptions& options);

  ChildProcess(ChildProcess&& o) noexcept : pid_(std::exchange(o.pid_, -1)) {}
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ~ChildProcess() { reset(); }

  pid_t pid() const { return pid_; }
  // True while the child has not been reaped: it runs, or has ended and waits to be reaped.
  bool unreaped() const { return pid_ > 0; }
  void signal(int sig) const;
  // Signals the child's whole process group (a child started with new_process_group leads one):
  // whatever it started dies with it.
  void signal_group(int sig) const;
  // Kills (SIGKILL) and reaps the child, if it has not been reaped.
  void reset();
  // Non-blocking reap. Returns true and the wait status once the child has ended.
  bool try_wait(int* status);
  // Blocking reap.
  int wait();
  // Forget the child without killing it (the caller reaped it through waitpid(-1)).
  void mark_reaped() { pid_ = -1; }

 private:
  explicit ChildProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_ = -1;
};

// Path of the running executable (/proc/self/exe resolved), used to re-exec in slot mode.
std::string self_executable();

// This process's children, from /proc.
std::vector<pid_t> child_pids();
// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so that
// processes a task started cannot escape by outliving their parent.
void become_subreaper();
// Kills (SIGKILL) every descendant of this process and reaps them, except `keep`. Orphans are
// reparented here (subreaper) and killed in turn; gives up after a few rounds.
void kill_descendants(const std::vector<pid_t>& keep = {});

}  // namespace lrts
