#include "shm/region.hpp"

#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace lrts {
namespace detail {

BarCell* detached_cell() {
  static BarCell cell{};
  return &cell;
}

}  // namespace detail

namespace shm {

using detail::BarCell;

int64_t monotonic_ns() {
  timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

namespace {

size_t region_size(uint32_t capacity) {
  return sizeof(RegionHeader) + static_cast<size_t>(capacity) * sizeof(BarCell);
}

Result<void*> map(int fd, size_t size) {
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED)
    return make_error(std::string("mmap progress region: ") + std::strerror(errno));
  return p;
}

void copy_text(char* dst, size_t cap, std::string_view src) {
  const size_t n = std::min(src.size(), cap - 1);
  std::memcpy(dst, src.data(), n);
  dst[n] = '\0';
}

std::string_view text(const char* src, size_t cap) { return {src, ::strnlen(src, cap)}; }

}  // namespace

Result<ProgressRegion> ProgressRegion::create(uint32_t capacity) {
  const int fd = ::memfd_create("lrts-progress", MFD_CLOEXEC);
  if (fd < 0) return make_error(std::string("memfd_create: ") + std::strerror(errno));
  const size_t size = region_size(capacity);
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    ::close(fd);
    return make_error(std::string("ftruncate progress region: ") + std::strerror(errno));
  }
  auto p = map(fd, size);
  if (!p) {
    ::close(fd);
    return Error{p.error()};
  }
  ProgressRegion r;
  r.base_ = *p;
  r.size_ = size;
  r.fd_ = fd;
  RegionHeader& h = r.header();
  h.magic = RegionHeader::kMagic;
  h.version = 1;
  h.capacity = capacity;  // the file is zero-filled: every cell starts free
  return r;
}

Result<ProgressRegion> ProgressRegion::attach(int fd) {
  struct stat st;
  if (::fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(RegionHeader)) {
    return make_error("progress region: not a valid shared memory file");
  }
  auto p = map(fd, static_cast<size_t>(st.st_size));
  if (!p) return Error{p.error()};
  ProgressRegion r;
  r.base_ = *p;
  r.size_ = static_cast<size_t>(st.st_size);
  r.fd_ = fd;
  const RegionHeader& h = r.header();
  if (h.magic != RegionHeader::kMagic || h.version != 1 || region_size(h.capacity) > r.size_) {
    return make_error("progress region: unknown layout");
  }
  return r;
}

ProgressRegion& ProgressRegion::operator=(ProgressRegion&& o) noexcept {
  if (this != &o) {
    release();
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

void ProgressRegion::release() {
  if (base_) ::munmap(base_, size_);
  if (fd_ >= 0) ::close(fd_);
  base_ = nullptr;
  size_ = 0;
  fd_ = -1;
}

void ProgressRegion::reset() {
  for (uint32_t i = 0; i < capacity(); ++i) {
    cells()[i].state.store(BarCell::kFree, std::memory_order_release);
  }
  header().open_bars.store(0, std::memory_order_relaxed);
  header().running.store(0, std::memory_order_relaxed);
}

// ---- slot side -----------------------------------------------------------------------------

void BarAllocator::begin_task(protocol::TaskKey key, uint32_t attempt) {
  key_ = key;
  attempt_ = attempt;
  next_bar_no_ = 0;
  warned_full_ = false;
  cells_.clear();
}

ProgressBar BarAllocator::create(std::string_view description, uint64_t total,
                                 std::string_view unit) {
  if (!region_ || !region_->valid() || next_bar_no_ >= protocol::kMaxBarsPerTask) {
    return ProgressBar();
  }
  const uint32_t cap = region_->capacity();
  BarCell* cells = region_->cells();
  for (uint32_t n = 0; n < cap; ++n) {
    const uint32_t i = (cursor_ + n) % cap;
    BarCell& c = cells[i];
    if (c.state.load(std::memory_order_acquire) != BarCell::kFree) continue;
    cursor_ = i + 1;
    // Sequence-locked rewrite: odd generation while the fields change.
    const uint32_t g = c.generation.load(std::memory_order_relaxed);
    c.generation.store(g | 1u, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    c.bar_no = next_bar_no_++;
    c.task_session = key_.session;
    c.task_seq = key_.seq;
    c.attempt = attempt_;
    c.created_ns = monotonic_ns();
    copy_text(c.description, sizeof c.description, description);
    copy_text(c.unit, sizeof c.unit, unit.empty() ? "it" : unit);
    c.count.store(0, std::memory_order_relaxed);
    c.total.store(total, std::memory_order_relaxed);
    c.state.store(BarCell::kOpen, std::memory_order_relaxed);
    c.generation.store((g | 1u) + 1, std::memory_order_release);
    region_->header().open_bars.fetch_add(1, std::memory_order_relaxed);
    cells_.push_back(i);
    return ProgressBar(&c);
  }
  if (!warned_full_) {
    warned_full_ = true;
    std::fprintf(stderr,
                 "lrts slot: all %u progress bars of this slot are in use; further bars "
                 "of task %s are not shown\n",
                 cap, protocol::format_service_id(key_).c_str());
  }
  return ProgressBar();
}

std::vector<protocol::BarState> BarAllocator::end_task() {
  std::vector<protocol::BarState> finals;
  if (!region_ || !region_->valid()) return finals;
  const int64_t now = monotonic_ns();
  finals.reserve(cells_.size());
  for (uint32_t i : cells_) {
    BarCell& c = region_->cells()[i];
    finals.push_back(to_bar(copy_cell(c), now));  // still open: it ends as the task does
    c.state.store(BarCell::kFree, std::memory_order_release);
  }
  region_->header().open_bars.store(0, std::memory_order_relaxed);
  cells_.clear();
  return finals;
}

// ---- worker side ---------------------------------------------------------------------------

CellCopy copy_cell(const BarCell& c) {
  CellCopy k;
  k.count = c.count.load(std::memory_order_relaxed);
  k.total = c.total.load(std::memory_order_relaxed);
  k.state = c.state.load(std::memory_order_relaxed);
  k.bar_no = c.bar_no;
  k.attempt = c.attempt;
  k.session = c.task_session;
  k.seq = c.task_seq;
  k.created_ns = c.created_ns;
  std::memcpy(k.description, c.description, sizeof k.description);
  std::memcpy(k.unit, c.unit, sizeof k.unit);
  return k;
}

protocol::BarState to_bar(const CellCopy& k, int64_t now_ns) {
  protocol::BarState b;
  b.key = {k.session, k.seq};
  b.attempt = k.attempt;
  b.bar_no = k.bar_no;
  b.description.assign(text(k.description, sizeof k.description));
  b.unit.assign(text(k.unit, sizeof k.unit));
  b.count = k.count;
  b.total = k.total;
  b.phase = k.state == BarCell::kClosed ? protocol::BarPhase::kDone : protocol::BarPhase::kOpen;
  b.elapsed_ms = static_cast<uint64_t>(std::max<int64_t>(0, now_ns - k.created_ns) / 1'000'000);
  return b;
}

Sampler::Sampler(const ProgressRegion* region) : region_(region) {
  seen_.resize(region_->capacity());
}

void Sampler::forget() { std::fill(seen_.begin(), seen_.end(), Seen{}); }

void Sampler::scan(int64_t now_ns, std::vector<protocol::BarState>& out) {
  BarCell* cells = region_->cells();
  for (uint32_t i = 0; i < seen_.size(); ++i) {
    BarCell& c = cells[i];
    Seen& last = seen_[i];
    if (c.state.load(std::memory_order_acquire) == BarCell::kFree) {
      last.state = BarCell::kFree;
      continue;
    }
    const uint32_t g1 = c.generation.load(std::memory_order_acquire);
    if (g1 & 1u) continue;  // being rewritten; next scan
    const CellCopy k = copy_cell(c);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (c.generation.load(std::memory_order_relaxed) != g1 || k.state == BarCell::kFree) continue;
    if (k.bar_no >= protocol::kMaxBarsPerTask) continue;  // not written by a slot of ours
    if (g1 == last.generation && k.state == last.state && k.count == last.count &&
        k.total == last.total) {
      continue;  // unchanged
    }
    last = Seen{g1, k.state, k.count, k.total};
    protocol::BarState b = to_bar(k, now_ns);
    if (b.closed()) c.seen.store(g1, std::memory_order_relaxed);
    out.push_back(std::move(b));
  }
}

}  // namespace shm
}  // namespace lrts
