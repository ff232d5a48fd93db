#include "worker/slot_pool.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/log.hpp"
#include "worker/slot_runtime.hpp"

namespace lrts::worker {

namespace {
constexpr int kSlotFd = 3;
constexpr int kProgressFd = 4;
constexpr double kTargetQueuedNs = 2e6;  // keep ~2 ms of work in each slot
// At most this many tasks wait in a slot's pipe: tasks there cannot move to another slot, so a
// long task among short ones strands at most these behind it. Refills from the worker's own
// queue are a socketpair write away, so a short pipe costs little.
constexpr uint32_t kMaxDepth = 64;
// No task is queued behind one that has run this long (or 4x the typical task) already.
constexpr int64_t kLongRunningNs = 1'000'000;
constexpr Duration kMaxRestartDelay = seconds(5);
constexpr Duration kMemoryCheckInterval = milliseconds(100);

// Resident memory of a process, from /proc/<pid>/statm; 0 if unknown.
uint64_t resident_bytes(pid_t pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/statm", static_cast<int>(pid));
  FILE* f = std::fopen(path, "re");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  return n == 2 ? resident * static_cast<uint64_t>(::sysconf(_SC_PAGESIZE)) : 0;
}
}  // namespace

struct SlotPool::Slot {
  int index = 0;
  ChildProcess proc;
  UniqueFd fd;
  protocol::FrameBuffer in{protocol::kDefaultMaxMessageBytes};
  protocol::FrameWriter out;
  bool ready = false;
  std::deque<uint32_t> in_flight;  // refs, in the order the slot runs them
  TimePoint front_started{};       // when in_flight.front() started (as seen from here)
  int failures = 0;                // consecutive deaths without finishing a task
  TimePoint restart_at = TimePoint::max();
  std::string hello_error;
  shm::ProgressRegion region;
  std::unique_ptr<shm::Sampler> sampler;
  uint64_t killed_at_rss = 0;  // set when the memory limit stopped it
  // Set when we killed it to stop one task (cancel, timeout, memory): that is not the slot's
  // failure, and if the task had just finished, the next one was only a bystander.
  uint32_t kill_target = UINT32_MAX;
};

SlotPool::SlotPool(SlotPoolOptions options) : options_(std::move(options)) {
  slots_.resize(static_cast<size_t>(std::max(1, options_.slots)));
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].index = static_cast<int>(i);
    slots_[i].in = protocol::FrameBuffer(options_.max_frame_bytes + 1024);
  }
}

SlotPool::~SlotPool() { stop(); }

int SlotPool::slot_count() const { return static_cast<int>(slots_.size()); }

Status SlotPool::spawn(Slot& slot) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return make_error(std::string("socketpair: ") + std::strerror(errno));
  }
  UniqueFd mine(sv[0]), theirs(sv[1]);
  SpawnOptions so;
  so.argv = {options_.executable, kSlotFlag, std::to_string(kSlotFd), kProgressFdFlag,
             std::to_string(kProgressFd)};
  for (const auto& lib : options_.service_libs) {
    so.argv.push_back("--service-lib");
    so.argv.push_back(lib);
  }
  so.fds = {{theirs.get(), kSlotFd}, {slot.region.fd(), kProgressFd}};
  so.new_process_group = true;
  auto child = ChildProcess::spawn(so);
  if (!child) return Error{child.error()};
  const int flags = ::fcntl(mine.get(), F_GETFL);
  ::fcntl(mine.get(), F_SETFL, flags | O_NONBLOCK);
  slot.proc = std::move(*child);
  slot.fd = std::move(mine);
  slot.in = protocol::FrameBuffer(options_.max_frame_bytes + 1024);
  slot.out.clear();
  slot.ready = false;
  slot.restart_at = TimePoint::max();
  slot.killed_at_rss = 0;
  slot.kill_target = UINT32_MAX;
  LRTS_DEBUG("slot {} started (pid {})", slot.index, slot.proc.pid());
  return {};
}

Result<std::vector<std::string>> SlotPool::start(Duration timeout) {
  for (Slot& s : slots_) {
    auto region = shm::ProgressRegion::create(std::max(1u, options_.bars_per_slot));
    if (!region) return Error{region.error()};
    s.region = std::move(*region);
    s.sampler = std::make_unique<shm::Sampler>(&s.region);
    if (auto st = spawn(s); !st) return Error{st.error()};
  }
  const TimePoint deadline = Clock::now() + timeout;
  std::vector<Outcome> none;
  for (;;) {
    bool all_ready = true;
    for (Slot& s : slots_) {
      if (!s.hello_error.empty()) return make_error("slot failed to start: " + s.hello_error);
      if (!s.fd.valid()) return make_error("slot failed to start");
      all_ready = all_ready && s.ready;
    }
    if (all_ready) break;
    const TimePoint now = Clock::now();
    if (now >= deadline) return make_error("slots did not start within the time limit");
    std::vector<pollfd> fds;
    for (Slot& s : slots_) fds.push_back({s.fd.get(), POLLIN, 0});
    const int wait_ms = static_cast<int>(std::max<int64_t>(1, to_ms(deadline - now)));
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
      return make_error(std::string("poll: ") + std::strerror(errno));
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (fds[i].revents && read_slot(slots_[i], none)) {
        Slot& s = slots_[i];
        s.proc.signal(SIGKILL);
        const std::string how = describe_wait_status(s.proc.wait());
        s.fd.reset();
        if (s.hello_error.empty()) s.hello_error = "slot process " + how;
      }
    }
  }
  return services_;  // all slots load the same code; the first one speaks for them
}

void SlotPool::stop() {
  for (Slot& s : slots_) {
    s.fd.reset();
    if (s.proc.running()) {
      s.proc.signal(SIGKILL);
      s.proc.wait();
    }
    s.ready = false;
  }
}

bool SlotPool::add(LocalTask task) {
  if (by_key_.count(task.key)) return false;
  uint32_t ref;
  if (free_.empty()) {
    ref = static_cast<uint32_t>(entries_.size());
    entries_.emplace_back();
  } else {
    ref = free_.back();
    free_.pop_back();
  }
  Entry& e = entries_[ref];
  e.task = std::move(task);
  e.cancelled = false;
  e.used = true;
  by_key_.emplace(e.task.key, ref);
  queue_.push_back(ref);
  return true;
}

void SlotPool::free_entry(uint32_t ref) {
  Entry& e = entries_[ref];
  auto it = by_key_.find(e.task.key);
  if (it != by_key_.end() && it->second == ref) by_key_.erase(it);  // cancelled ones are detached
  e.used = false;
  e.cancelled = false;
  e.timed_out = false;
  e.task.fields.clear();
  free_.push_back(ref);
}

namespace {
constexpr const char* kCancelled = "cancelled by the scheduler";
}  // namespace

bool SlotPool::cancel(const TaskKey& key, std::vector<Outcome>& out) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  const uint32_t ref = it->second;
  Entry& e = entries_[ref];
  auto q = std::find(queue_.begin(), queue_.end(), ref);
  if (q != queue_.end()) {
    queue_.erase(q);
    out.push_back(Outcome{e.task.key, e.task.attempt, TaskStatus::kLost, kCancelled, 0, {}});
    free_entry(ref);
    return true;
  }
  // In a slot: detach the key now (a new assignment of it may come), finish up when the slot
  // answers or dies.
  e.cancelled = true;
  by_key_.erase(it);
  for (Slot& s : slots_) {
    if (!s.in_flight.empty() && s.in_flight.front() == ref && s.proc.running()) {
      LRTS_INFO("stopping slot {} to cancel the task it runs", s.index);
      s.kill_target = ref;
      s.proc.signal(SIGKILL);
    }
  }
  return true;
}

std::vector<protocol::TaskAttempt> SlotPool::held() const {
  std::vector<protocol::TaskAttempt> out;
  out.reserve(by_key_.size());
  for (const auto& [key, ref] : by_key_) {
    if (!entries_[ref].cancelled) out.push_back({key, entries_[ref].task.attempt});
  }
  return out;
}

std::vector<protocol::TaskAttempt> SlotPool::take_queued() {
  std::vector<protocol::TaskAttempt> out;
  for (uint32_t ref : queue_) {
    out.push_back({entries_[ref].task.key, entries_[ref].task.attempt});
    free_entry(ref);
  }
  queue_.clear();
  return out;
}

uint32_t SlotPool::depth() const {
  if (ewma_run_ns_ <= 0) return 1;
  // A task running now counts with what it has taken so far: when long tasks follow short ones,
  // the estimate moves before the first long one ends.
  double typical = ewma_run_ns_;
  const TimePoint now = Clock::now();
  for (const Slot& s : slots_) {
    if (!s.in_flight.empty()) typical = std::max(typical, static_cast<double>(to_ns(now - s.front_started)));
  }
  const double d = kTargetQueuedNs / std::max(typical, 1.0);
  return static_cast<uint32_t>(std::clamp(d, 1.0, static_cast<double>(kMaxDepth)));
}

uint32_t SlotPool::capacity() const {
  const uint32_t d = depth();
  const auto n = static_cast<uint32_t>(slots_.size());
  // Short tasks: hold a second round locally so slots never wait for the scheduler. Long
  // tasks: exactly one per slot, so none waits here while another worker is idle.
  return d > 1 ? 2 * n * d : n;
}

void SlotPool::add_poll_items(std::vector<zmq_pollitem_t>& items) const {
  for (const Slot& s : slots_) {
    short events = 0;
    if (s.fd.valid()) {
      events = ZMQ_POLLIN;
      if (!s.out.empty()) events |= ZMQ_POLLOUT;
    }
    // An invalid fd with no events is ignored by zmq_poll; keeps positions stable.
    items.push_back({nullptr, s.fd.valid() ? s.fd.get() : -1, events, 0});
  }
}

void SlotPool::on_poll(const zmq_pollitem_t* items, std::vector<Outcome>& out) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.fd.valid()) continue;
    if ((items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) && read_slot(s, out)) {
      kill_and_reap(s, out);
      continue;
    }
    if (s.fd.valid() && (items[i].revents & ZMQ_POLLOUT)) write_slot(s);
  }
}

void SlotPool::kill_and_reap(Slot& s, std::vector<Outcome>& out) {
  s.proc.signal(SIGKILL);
  const int status = s.proc.wait();
  on_slot_dead(s, status, out);
}

bool SlotPool::read_slot(Slot& s, std::vector<Outcome>& out) {
  bool eof = false;
  for (;;) {
    const long n = s.in.read_from(s.fd.get());
    if (n > 0) {
      if (n < 64 * 1024) break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    eof = true;  // closed or broken: the slot is gone
    break;
  }
  std::string_view body;
  for (;;) {
    auto got = s.in.next(&body);
    if (!got || !*got) {
      if (!got) {
        LRTS_ERROR("slot {} sent a bad frame ({}); restarting it", s.index, got.error());
        eof = true;
      }
      break;
    }
    auto msg = protocol::decode<protocol::FromSlot>(body, options_.max_frame_bytes + 1024);
    if (!msg) {
      LRTS_ERROR("slot {} sent a bad message ({}); restarting it", s.index, msg.error().text);
      eof = true;
      break;
    }
    if (auto* hello = std::get_if<protocol::SlotHello>(&*msg)) {
      if (!hello->error.empty()) {
        s.hello_error.assign(hello->error);
        LRTS_ERROR("slot {} cannot start: {}", s.index, s.hello_error);
        eof = true;
        break;
      }
      s.ready = true;
      if (services_.empty()) {
        for (auto name : hello->services) services_.emplace_back(name);
      }
      continue;
    }
    if (std::holds_alternative<protocol::SlotRecalled>(*msg)) continue;
    auto& results = std::get<protocol::SlotResults>(*msg);
    for (auto& r : results.items) {
      if (s.in_flight.empty() || s.in_flight.front() != r.ref) {
        LRTS_ERROR("slot {} answered for a task it was not running; restarting it", s.index);
        eof = true;
        break;
      }
      s.in_flight.pop_front();
      s.front_started = Clock::now();
      s.failures = 0;
      Entry& e = entries_[r.ref];
      const double ns = static_cast<double>(r.run_ns);
      ewma_run_ns_ = ewma_run_ns_ <= 0 ? ns : 0.8 * ewma_run_ns_ + 0.2 * ns;
      {  // a cancelled task that finished anyway still reports: the scheduler sorts it out
        Outcome o{e.task.key, e.task.attempt, r.status, std::string(r.payload), r.run_ns, {}};
        o.bars = std::move(r.bars);
        for (auto& b : o.bars) {
          b.key = e.task.key;
          b.attempt = e.task.attempt;
        }
        out.push_back(std::move(o));
      }
      free_entry(r.ref);
    }
    if (eof) break;
  }
  return eof;
}

void SlotPool::reap(std::vector<Outcome>& out) {
  for (Slot& s : slots_) {
    int status = 0;
    if (s.proc.running() && s.proc.try_wait(&status)) {
      if (s.fd.valid()) read_slot(s, out);  // what it managed to send before dying counts
      on_slot_dead(s, status, out);
    }
  }
}

void SlotPool::on_slot_dead(Slot& s, int wait_status, std::vector<Outcome>& out) {
  s.fd.reset();
  s.proc.mark_reaped();
  // Its bars stay where the dead attempt left them; closed, so the view shows them ended.
  if (s.region.valid()) {
    std::vector<protocol::BarState> last;
    s.sampler->scan(shm::monotonic_ns(), last);
    dead_bars_.insert(dead_bars_.end(), last.begin(), last.end());
    for (uint32_t i = 0; i < s.region.capacity(); ++i) {
      const auto& c = s.region.cells()[i];
      if (c.state.load(std::memory_order_acquire) != detail::BarCell::kOpen) continue;
      if (c.bar_no >= protocol::kMaxBarsPerTask) continue;  // a dying slot may scribble
      protocol::BarState b;
      b.key = {c.task_session, c.task_seq};
      b.attempt = c.attempt;
      b.bar_no = c.bar_no;
      b.description.assign(c.description, ::strnlen(c.description, sizeof c.description));
      b.unit.assign(c.unit, ::strnlen(c.unit, sizeof c.unit));
      b.count = c.count.load(std::memory_order_relaxed);
      b.total = c.total.load(std::memory_order_relaxed);
      b.phase = protocol::BarPhase::kLost;
      b.elapsed_ms = static_cast<uint64_t>(
          std::max<int64_t>(0, shm::monotonic_ns() - c.created_ns) / 1'000'000);
      dead_bars_.push_back(std::move(b));
    }
    s.region.reset();
    s.sampler->forget();
  }
  std::string how = describe_wait_status(wait_status);
  if (s.killed_at_rss) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "exceeded the memory limit of %llu MB (resident %llu MB)",
                  static_cast<unsigned long long>(options_.max_job_memory >> 20),
                  static_cast<unsigned long long>(s.killed_at_rss >> 20));
    how = buf;
  }
  bool first = true;
  std::vector<uint32_t> back;
  const bool deliberate = s.kill_target != UINT32_MAX;
  // We killed it for one task, but that one had already finished: the task now at the front
  // was a bystander and goes back to the queue with the rest, its attempt intact.
  if (deliberate && (s.in_flight.empty() || s.in_flight.front() != s.kill_target)) first = false;
  for (uint32_t ref : s.in_flight) {
    Entry& e = entries_[ref];
    if (e.cancelled) {
      out.push_back(Outcome{e.task.key, e.task.attempt, TaskStatus::kLost, kCancelled, 0, {}});
      free_entry(ref);
    } else if (first && e.timed_out) {
      out.push_back(Outcome{e.task.key, e.task.attempt, TaskStatus::kTimedOut,
                            "exceeded its timeout of " + std::to_string(e.task.timeout_ms) + " ms",
                            static_cast<uint64_t>(e.task.timeout_ms) * 1'000'000, {}});
      LRTS_WARN("task {} exceeded its timeout of {} ms; slot {} stopped",
                protocol::format_service_id(e.task.key), e.task.timeout_ms, s.index);
      free_entry(ref);
    } else if (first) {
      out.push_back(Outcome{e.task.key, e.task.attempt, TaskStatus::kLost,
                            s.killed_at_rss ? how : "slot process " + how + " while running the task",
                            0, {}});
      LRTS_WARN("slot {} {} while running task {} (attempt {})", s.index, how,
                protocol::format_service_id(e.task.key), e.task.attempt);
      free_entry(ref);
    } else {
      back.push_back(ref);
    }
    first = false;
  }
  s.in_flight.clear();
  for (auto it = back.rbegin(); it != back.rend(); ++it) queue_.push_front(*it);
  if (first && !deliberate) LRTS_WARN("slot {} {} while idle", s.index, how);
  if (!deliberate) ++s.failures;
  const Duration delay = std::min<Duration>(
      kMaxRestartDelay, milliseconds(s.failures <= 1 ? 0 : 50LL << std::min(s.failures, 10)));
  s.restart_at = Clock::now() + delay;
}

void SlotPool::write_slot(Slot& s) {
  s.out.write_some(s.fd.get());  // an error shows up as end of file on read
}

void SlotPool::check_memory(TimePoint now) {
  if (options_.max_job_memory == 0 || now < next_memory_check_) return;
  next_memory_check_ = now + kMemoryCheckInterval;
  for (Slot& s : slots_) {
    if (s.in_flight.empty() || !s.proc.running() || s.killed_at_rss) continue;
    const uint64_t rss = resident_bytes(s.proc.pid());
    if (rss > options_.max_job_memory) {
      s.killed_at_rss = rss;
      s.kill_target = s.in_flight.front();
      s.proc.signal(SIGKILL);  // reaped through SIGCHLD like any other death
    }
  }
}

void SlotPool::dispatch(TimePoint now) {
  check_memory(now);
  for (Slot& s : slots_) {
    if (!s.fd.valid() && s.restart_at <= now) {
      if (auto st = spawn(s); !st) {
        LRTS_ERROR("cannot restart slot {}: {}", s.index, st.error());
        ++s.failures;
        s.restart_at = now + kMaxRestartDelay;
      }
    }
  }
  for (Slot& s : slots_) {
    if (s.in_flight.empty() || !s.proc.running()) continue;
    Entry& e = entries_[s.in_flight.front()];
    if (e.task.timeout_ms > 0 && !e.timed_out &&
        now - s.front_started >= milliseconds(e.task.timeout_ms)) {
      e.timed_out = true;
      s.kill_target = s.in_flight.front();
      s.proc.signal(SIGKILL);  // reaped through SIGCHLD like any other death
    }
  }
  if (queue_.empty()) return;
  const uint32_t d = depth();
  const int64_t long_ns = std::max<int64_t>(kLongRunningNs, static_cast<int64_t>(4 * ewma_run_ns_));
  // Idle slots first (one task each), then top up the others: a batch never goes to one slot
  // while another has nothing to do.
  std::vector<std::vector<uint32_t>> batches(slots_.size());
  for (int pass = 0; pass < 2 && !queue_.empty(); ++pass) {
    for (size_t i = 0; i < slots_.size() && !queue_.empty(); ++i) {
      Slot& s = slots_[i];
      if (!s.fd.valid() || !s.ready) continue;
      const size_t have = s.in_flight.size() + batches[i].size();
      if (pass == 0 && have > 0) continue;
      if (pass == 1 && !s.in_flight.empty() && to_ns(now - s.front_started) > long_ns) continue;
      const size_t n = std::min<size_t>(pass == 0 ? 1 : (d > have ? d - have : 0), queue_.size());
      for (size_t k = 0; k < n; ++k) {
        batches[i].push_back(queue_.front());
        queue_.pop_front();
      }
    }
  }
  protocol::SlotRun run;
  std::vector<std::string> ids;
  for (size_t i = 0; i < slots_.size(); ++i) {
    if (batches[i].empty()) continue;
    Slot& s = slots_[i];
    run.tasks.clear();
    ids.clear();
    ids.reserve(batches[i].size());  // views into ids must not move
    if (s.in_flight.empty()) s.front_started = now;
    for (uint32_t ref : batches[i]) {
      const Entry& e = entries_[ref];
      ids.push_back(protocol::format_service_id(e.task.key));
      run.tasks.push_back({ref, e.task.name, e.task.fields, ids.back(), e.task.attempt});
      s.in_flight.push_back(ref);
    }
    s.out.push(run);
    write_slot(s);
  }
}

std::vector<protocol::TaskAttempt> SlotPool::take_surplus() {
  // What the local queue holds beyond what the slots can take within the current estimate goes
  // back to the scheduler, which may have idle workers for it.
  std::vector<protocol::TaskAttempt> out;
  size_t in_slots = 0;
  for (const Slot& s : slots_) in_slots += s.in_flight.size();
  const size_t keep = capacity() > in_slots ? capacity() - in_slots : 0;
  while (queue_.size() > keep) {
    const uint32_t ref = queue_.back();
    queue_.pop_back();
    out.push_back({entries_[ref].task.key, entries_[ref].task.attempt});
    free_entry(ref);
  }
  return out;
}

bool SlotPool::busy() const {
  for (const Slot& s : slots_) {
    if (!s.in_flight.empty()) return true;
  }
  return false;
}

bool SlotPool::has_open_bars() const {
  for (const Slot& s : slots_) {
    if (s.region.valid() && !s.in_flight.empty() &&
        s.region.header().open_bars.load(std::memory_order_relaxed) > 0) {
      return true;
    }
  }
  return false;
}

void SlotPool::sample_progress(std::vector<protocol::BarState>& out) {
  out.insert(out.end(), std::make_move_iterator(dead_bars_.begin()),
             std::make_move_iterator(dead_bars_.end()));
  dead_bars_.clear();
  const int64_t now = shm::monotonic_ns();
  for (Slot& s : slots_) {
    if (s.sampler && !s.in_flight.empty()) s.sampler->scan(now, out);
  }
}

TimePoint SlotPool::next_deadline() const {
  TimePoint next = options_.max_job_memory && busy() ? next_memory_check_ : TimePoint::max();
  for (const Slot& s : slots_) {
    if (!s.fd.valid()) next = std::min(next, s.restart_at);
    if (s.in_flight.empty()) continue;
    const Entry& e = entries_[s.in_flight.front()];
    if (e.task.timeout_ms > 0 && !e.timed_out) {
      next = std::min(next, s.front_started + milliseconds(e.task.timeout_ms));
    }
  }
  return next;
}

}  // namespace lrts::worker
