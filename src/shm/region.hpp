// The progress region: shared memory that a slot and its worker both map, holding the slot's
// progress bars (docs/protocol.md, "Progress region").
//
// DESIGN
// The slot writes, the worker reads; nothing in between. A bar is a 128-byte cell whose count a
// task advances with a plain relaxed store (one writer). The descriptive fields of a cell are
// written under a sequence counter (`generation`, odd while writing), so the worker's sampler
// reads them consistently without a lock and never blocks the slot. A cell is taken from the
// free ones when a task creates a bar and freed when the task ends; the final state of the
// task's bars travels with its result over the socketpair, so no final count is ever lost to
// sampling, however short the task.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "lrts/progress.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::shm {

struct RegionHeader {
  uint64_t magic;  // kMagic
  uint32_t version;
  uint32_t capacity;                // number of cells after the header
  std::atomic<uint32_t> open_bars;  // open cells (a hint for the sampler)
  // The task the slot runs now: its ref + 1, or 0 between tasks. Written by the slot before and
  // after each task; read by the worker when the slot dies, to know which task it died in
  // (results of the tasks before it may still have been in the slot's buffer).
  std::atomic<uint32_t> running;
  uint32_t reserved[10];
  static constexpr uint64_t kMagic = 0x3153524142535452ULL;  // "RTSBARS1" little-endian
};
static_assert(sizeof(RegionHeader) == 64);

// A mapping of the region; the worker creates it (memfd), the slot attaches by fd. Move-only.
class ProgressRegion {
 public:
  ProgressRegion() = default;
  static Result<ProgressRegion> create(uint32_t capacity);
  static Result<ProgressRegion> attach(int fd);
  ProgressRegion(ProgressRegion&& o) noexcept { *this = std::move(o); }
  ProgressRegion& operator=(ProgressRegion&& o) noexcept;
  ProgressRegion(const ProgressRegion&) = delete;
  ProgressRegion& operator=(const ProgressRegion&) = delete;
  ~ProgressRegion() { release(); }

  bool valid() const { return base_ != nullptr; }
  int fd() const { return fd_; }
  uint32_t capacity() const { return header().capacity; }
  RegionHeader& header() const { return *static_cast<RegionHeader*>(base_); }
  detail::BarCell* cells() const {
    return reinterpret_cast<detail::BarCell*>(static_cast<char*>(base_) + sizeof(RegionHeader));
  }
  // Marks every cell free (after the slot using it died).
  void reset();

 private:
  void release();
  void* base_ = nullptr;
  size_t size_ = 0;
  int fd_ = -1;
};

int64_t monotonic_ns();

// A plain copy of a cell's fields (read while no one rewrites them, or under the sequence
// counter), and the bar it describes: the one conversion from cells to bars.
struct CellCopy {
  uint64_t count = 0;
  uint64_t total = 0;
  uint32_t state = detail::BarCell::kFree;
  uint32_t bar_no = 0;
  uint32_t attempt = 0;
  uint64_t session = 0;
  uint64_t seq = 0;
  int64_t created_ns = 0;
  char description[sizeof(detail::BarCell::description)];
  char unit[sizeof(detail::BarCell::unit)];
};
CellCopy copy_cell(const detail::BarCell& cell);
// kDone if the cell is closed, kOpen otherwise (the owner decides how open bars end).
protocol::BarState to_bar(const CellCopy& cell, int64_t now_ns);

// Slot side: hands out cells to the running task. Used by the slot's task thread.
class BarAllocator {
 public:
  explicit BarAllocator(ProgressRegion* region) : region_(region) {}
  void begin_task(protocol::TaskKey key, uint32_t attempt);
  ProgressBar create(std::string_view description, uint64_t total, std::string_view unit);
  // Frees the task's cells and returns the final state of its bars (those it left open have
  // phase kOpen: they end as the task does).
  std::vector<protocol::BarState> end_task();

 private:
  ProgressRegion* region_;
  protocol::TaskKey key_;
  uint32_t attempt_ = 0;
  uint32_t next_bar_no_ = 0;
  uint32_t cursor_ = 0;
  bool warned_full_ = false;
  std::vector<uint32_t> cells_;  // of the current task
};

// Worker side: finds what changed in a region since the last scan.
class Sampler {
 public:
  explicit Sampler(const ProgressRegion* region);
  // Appends the bars that changed; marks closed ones as seen.
  void scan(int64_t now_ns, std::vector<protocol::BarState>& out);
  // Forgets what was seen (after the region was reset).
  void forget();

 private:
  struct Seen {
    uint32_t generation = 0;
    uint32_t state = detail::BarCell::kFree;
    uint64_t count = 0;
    uint64_t total = 0;
  };
  const ProgressRegion* region_;
  std::vector<Seen> seen_;
};

}  // namespace lrts::shm
