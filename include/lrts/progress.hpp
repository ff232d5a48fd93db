// Progress bars inside a task, and what an application sees of them.
//
// Inside `run`, a task creates bars through its TaskContext and advances them:
//
//   lrts::ProgressBar bar = ctx.create_progress("Doing Work", 42, "iterations");
//   for (...) { work(); bar.advance(); }      // ~1 ns: a plain add in shared memory
//   bar.close();
//
// Advancing never makes a syscall, takes a lock, allocates or sends a message, and a task never
// waits for progress: the worker samples the bars from shared memory and ships changes on its
// own clock. A bar handle is valid during `run`; bars still open when `run` returns are closed.
// advance() is meant for one thread at a time (the usual case: the thread running the task);
// when several threads advance the same bar, use advance_shared().
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace lrts {

namespace detail {

// One bar in the shared memory of a slot (docs/protocol.md, "progress region"). 128 bytes.
struct alignas(64) BarCell {
  std::atomic<uint64_t> count;
  std::atomic<uint64_t> total;       // 0: unknown
  std::atomic<uint32_t> state;       // kFree, kOpen, kClosed
  std::atomic<uint32_t> generation;  // odd while the slot rewrites the fields below
  std::atomic<uint32_t> seen;        // written by the worker: generation it saw closed
  uint32_t bar_no;                   // per task: 0, 1, 2 ...
  uint64_t task_session;
  uint64_t task_seq;
  uint32_t attempt;
  uint32_t reserved;
  int64_t created_ns;    // CLOCK_MONOTONIC
  char description[48];  // NUL-terminated, truncated
  char unit[16];

  static constexpr uint32_t kFree = 0;
  static constexpr uint32_t kOpen = 1;
  static constexpr uint32_t kClosed = 2;
};
static_assert(sizeof(BarCell) == 128, "BarCell is part of the slot protocol");

// Where bars that could not get a cell count (no shared memory, or all cells taken).
BarCell* detached_cell();

}  // namespace detail

class ProgressBar {
 public:
  // A detached bar: counts nowhere, shows nothing.
  ProgressBar() : cell_(detail::detached_cell()) {}
  explicit ProgressBar(detail::BarCell* cell) : cell_(cell) {}

  // Adds n. Single writer: a relaxed load and store, no atomic read-modify-write.
  void advance(uint64_t n = 1) {
    auto& c = cell_->count;
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  // Adds n, safe from any number of threads at once (an atomic add; slower).
  void advance_shared(uint64_t n = 1) { cell_->count.fetch_add(n, std::memory_order_relaxed); }
  void increment_progress(uint64_t n = 1) { advance(n); }  // the original lrts's name
  void set_count(uint64_t count) { cell_->count.store(count, std::memory_order_relaxed); }
  // 0 means unknown.
  void set_total(uint64_t total) { cell_->total.store(total, std::memory_order_relaxed); }
  uint64_t count() const { return cell_->count.load(std::memory_order_relaxed); }
  uint64_t total() const { return cell_->total.load(std::memory_order_relaxed); }
  void close() { cell_->state.store(detail::BarCell::kClosed, std::memory_order_release); }
  void close_progress() { close(); }  // the original lrts's name
  bool detached() const { return cell_ == detail::detached_cell(); }

 private:
  detail::BarCell* cell_;
};

// Where a bar stands. Anything but `running` is frozen: its count, rate and ETA no longer move.
enum class BarStatus : uint8_t {
  running,
  done,       // closed by the task, or the task finished
  failed,     // the task failed
  lost,       // the attempt died with its slot or worker (the task may be retried)
  cancelled,  // the task was cancelled
  timed_out,  // the task ran past its time limit
};

inline const char* to_string(BarStatus s) {
  switch (s) {
    case BarStatus::running:
      return "running";
    case BarStatus::done:
      return "done";
    case BarStatus::failed:
      return "failed";
    case BarStatus::lost:
      return "lost";
    case BarStatus::cancelled:
      return "cancelled";
    case BarStatus::timed_out:
      return "timed out";
  }
  return "?";
}

// One bar as the application sees it. Description and unit hold printable text only (control
// characters are dropped on the way, so a bar cannot drive the terminal that shows it).
struct ProgressSnapshot {
  std::string service_id;
  uint32_t attempt = 0;
  uint32_t bar = 0;  // index of the bar within the task
  std::string description;
  std::string unit;
  uint64_t count = 0;
  uint64_t total = 0;   // 0: unknown
  bool closed = false;  // status != running
  BarStatus status = BarStatus::running;
  double rate = 0;          // units per second, smoothed
  double eta_seconds = -1;  // -1: unknown
  double elapsed_seconds = 0;
};

}  // namespace lrts
