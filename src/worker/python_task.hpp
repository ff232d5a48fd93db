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
// the signal. One task at a time goes to it: tasks waiting in this slot stay here, where the
// worker can recall them.
//
// The worker says which interpreter to use in LRTS_PYTHON (--python) after checking, at its
// start, that it can import lrts; LRTS_PYTHON_ERROR says why it could not.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/process.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::worker {

inline constexpr char kPythonServiceName[] = "lrts.python";

// The environment of a Python slot process: PYTHONPATH gains `dir` (the package next to the
// worker's executable, if any) in front.
std::string python_path_with(const std::string& dir);

// Asks `python` whether it can run Python slots (`-m lrts._slot --check`): its one-line
// description ("lrts 0.1.0, Python 3.11.2 at /usr/bin/python3"), or why not.
Result<std::string> check_python(const std::string& python);

class PythonRunner {
 public:
  struct Result {
    protocol::TaskStatus status = protocol::TaskStatus::kFinished;
    std::string payload;
    uint64_t run_ns = 0;
    std::vector<protocol::BarState> bars;
  };

  // `python`: the interpreter; `region_fd`: the slot's progress region (shared with it).
  PythonRunner(std::string python, int region_fd, uint64_t max_result_bytes);
  ~PythonRunner();
  PythonRunner(const PythonRunner&) = delete;
  PythonRunner& operator=(const PythonRunner&) = delete;

  // Runs one task there. A Python process that cannot start fails the task, saying why; one
  // that dies during the task takes this process with it (see DESIGN), so this never returns
  // then.
  Result run(std::string_view fields, std::string_view service_id, uint32_t attempt);
  // The Python slot process, while one runs (spared by the slot's clean-up after each task).
  pid_t pid() const { return child_.pid(); }

 private:
  std::string start();  // "" or why not
  // The Python process closed its socket: reaps it and ends this process the same way.
  [[noreturn]] void follow_its_death();

  std::string python_;
  int region_fd_;
  uint64_t max_result_bytes_;
  ChildProcess child_;
  UniqueFd fd_;
  protocol::FrameBuffer in_;
  protocol::FrameWriter out_;
};

}  // namespace lrts::worker
