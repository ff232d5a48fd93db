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
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  void signal(int sig) const;
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

}  // namespace lrts
