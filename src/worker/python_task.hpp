// Python services inside a slot: the slot hands each task of the service `lrts.python` to a
// Python slot process of its own and waits for its result.
//
// DESIGN
// The Python slot process is `PYTHON -m lrts._slot --lrts-slot 3 --progress-fd 4 ...`: the
// Python package's extension runs this very slot runtime (slot_runtime.hpp) in it, with the
// service `lrts.python` unpickling and running the service there. It speaks the slot protocol
// (HELLO, RUN, RESULTS) over a socketpair and writes progress into the slot's own shared-memory
// region, which this slot leaves alone while a Python task runs. It is started on the first
// Python task and kept for the next ones (imports stay warm), as a child in the slot's process
// group: the worker's memory limit counts it, and killing the slot's group (cancel, timeout,
// memory limit, worker exit) kills it too. When it dies in the middle of a task, this slot dies
// the same way (the same signal, or the same exit status), so the worker sees exactly what it
// sees when a C++ service crashes its slot: the attempt is lost and retried, then failed with
// the signal. Python tasks that wait next to each other in this slot go to it together (up to
// kMaxHandedTasks, the most the worker queues in a slot), so short tasks cost one frame per
// batch; a RECALL from the worker is passed on for those it holds, and what it gives back is
// answered as this slot's own RECALLED.
//
// The worker says which interpreter to use in LRTS_PYTHON (--python) after checking, at its
// start, that it can import lrts; LRTS_PYTHON_ERROR says why it could not.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "common/mutex.hpp"
#include "common/process.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::worker {

inline constexpr char kPythonServiceName[] = "lrts.python";
inline constexpr size_t kMaxHandedTasks = 64;

// The environment of a Python slot process: PYTHONPATH gains `dir` (the package next to the
// worker's executable, if any) in front.
std::string python_path_with(const std::string& dir);

// Asks `python` whether it can run Python slots (`-m lrts._slot --check`): its one-line
// description ("lrts 0.1.0, Python 3.11.2 at /usr/bin/python3"), or why not.
Result<std::string> check_python(const std::string& python);

class PythonRunner {
 public:
  struct Task {
    uint32_t ref = 0;
    std::string_view fields;
    std::string_view service_id;
    uint32_t attempt = 0;
  };
  struct Item {
    uint32_t ref = 0;
    protocol::TaskStatus status = protocol::TaskStatus::kFinished;
    std::string payload;
    uint64_t run_ns = 0;
    std::vector<protocol::BarState> bars;
  };
  // What the Python slot process said: results (in the order it ran the tasks), or tasks it
  // handed back after a recall.
  struct Event {
    std::vector<Item> results;
    std::vector<uint32_t> recalled;
    bool died = false;  // it has exited and said all it will: end_like_it() next
  };

  // `python`: the interpreter; `region_fd`: the slot's progress region (shared with it);
  // `max_result_bytes`: the worker's --max-result-mb (frames from it are held to that).
  PythonRunner(std::string python, int region_fd, uint64_t max_result_bytes);
  ~PythonRunner();
  PythonRunner(const PythonRunner&) = delete;
  PythonRunner& operator=(const PythonRunner&) = delete;

  // Task thread. Starts the Python slot process if none runs: "" once it is ready, or why it
  // cannot start (the tasks then fail with that reason).
  std::string start_if_needed();
  // Task thread. Hands tasks to it (they run in this order).
  void run(const std::vector<Task>& tasks) LRTS_EXCLUDES(mu_);
  // Any thread (the slot's reader, for a RECALL from the worker). Asks it to give back those
  // of `refs` it holds and has not started; the answer comes as an Event.
  void recall(const std::vector<uint32_t>& refs) LRTS_EXCLUDES(mu_);
  // Task thread. Waits for what it says next. Once it has exited (its pid says so, whoever
  // else holds its socket) and what it sent is read, an Event with `died`.
  Event next() LRTS_EXCLUDES(mu_);
  // Task thread, after `died`: this process ends the way it did (see DESIGN).
  [[noreturn]] void end_like_it();
  // Task thread, after start_if_needed() failed: the signal that killed the process before it
  // was ready (0: it exited, or never started). Killed from outside, it is a crash of this
  // slot, not a reason to fail the tasks: the caller ends the slot with it.
  int start_signal() const { return start_signal_; }
  // Ends this process by `status` (a wait status), as end_like_it() does.
  [[noreturn]] static void end_with(int status);
  // Tasks handed to it without an answer yet.
  size_t outstanding() const LRTS_EXCLUDES(mu_);
  // The Python slot process, while one runs (spared by the slot's clean-up after each task).
  pid_t pid() const { return pid_.load(std::memory_order_relaxed); }

 private:
  std::string start();  // "" or why not

  std::string python_;
  int region_fd_;
  uint64_t max_result_bytes_;
  ChildProcess child_;  // task thread
  std::atomic<pid_t> pid_{0};
  UniqueFd fd_;               // written under mu_, read by the task thread
  UniqueFd exit_fd_;          // its pidfd: readable once it has exited
  bool exited_ = false;       // task thread
  int start_signal_ = 0;      // task thread
  protocol::FrameBuffer in_;  // task thread
  mutable Mutex mu_;
  protocol::FrameWriter out_ LRTS_GUARDED_BY(mu_);
  std::unordered_set<uint32_t> handed_ LRTS_GUARDED_BY(mu_);  // refs it holds
  bool up_ LRTS_GUARDED_BY(mu_) = false;
};

}  // namespace lrts::worker
