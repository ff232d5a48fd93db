#include "worker/slot_pool.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>

#include "common/log.hpp"
#include "protocol/slot_messages.hpp"
#include "worker/core.hpp"
#include "worker/slot_runtime.hpp"

namespace lrts::worker {

namespace {

constexpr int kSlotFd = 3;
constexpr int kProgressFd = 4;

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

// Resident memory of what each of `roots` runs: its process group and its descendants (a
// program that starts a new session with setsid is still a descendant), from one pass over
// /proc/*/stat. A process that left both — it double-forked out of a new session and was
// reparented to this worker (the subreaper) — is not counted; it is killed when its task ends.
std::unordered_map<pid_t, uint64_t> resident_of_trees(const std::vector<pid_t>& roots) {
  struct Proc {
    pid_t ppid;
    pid_t pgrp;
    uint64_t rss;
  };
  std::unordered_map<pid_t, Proc> procs;
  std::unordered_map<pid_t, uint64_t> out;
  for (pid_t r : roots) out[r] = 0;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  char path[300], buf[512];
  while (const dirent* e = ::readdir(d)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
    const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    if (n <= 0) continue;
    buf[n] = 0;
    // pid (comm) state ppid pgrp ... ; comm may hold spaces and parentheses: skip to the last ')'.
    const char* p = std::strrchr(buf, ')');
    if (!p) continue;
    char state = 0;
    long ppid = 0, pgrp = 0;
    unsigned long long rss = 0;
    // Fields after comm: state(3) ppid(4) pgrp(5) ... rss(24).
    if (std::sscanf(p + 1,
                    " %c %ld %ld %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d "
                    "%*u %*u %llu",
                    &state, &ppid, &pgrp, &rss) == 4) {
      procs[static_cast<pid_t>(std::atol(e->d_name))] = {static_cast<pid_t>(ppid),
                                                         static_cast<pid_t>(pgrp), rss * page};
    }
  }
  ::closedir(d);
  for (const auto& [pid, proc] : procs) {
    // The root it belongs to: its group's, or the first root up its parent chain.
    pid_t root = 0;
    if (out.count(proc.pgrp)) root = proc.pgrp;
    for (pid_t at = pid; !root && at > 1;) {
      if (out.count(at)) root = at;
      const auto it = procs.find(at);
      if (it == procs.end() || it->second.ppid == at) break;
      at = it->second.ppid;
    }
    if (root) out[root] += proc.rss;
  }
  return out;
}

}  // namespace

struct SlotPool::Slot {
  int index = 0;
  ChildProcess proc;
  UniqueFd fd;
  protocol::FrameBuffer in{protocol::kDefaultMaxMessageBytes};
  protocol::FrameWriter out;
  bool ready = false;
  bool reported_up = false;  // the core was told it is up
  std::string hello_error;
  shm::ProgressRegion region;
  std::unique_ptr<shm::Sampler> sampler;
};

SlotPool::SlotPool(SlotPoolOptions options) : options_(std::move(options)) {
  for (int i = 0; i < std::max(1, options_.slots); ++i) {
    auto s = std::make_unique<Slot>();
    s->index = i;
    slots_.push_back(std::move(s));
  }
}

SlotPool::~SlotPool() { stop(); }

Status SlotPool::spawn(Slot& slot) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return make_error(std::string("socketpair: ") + std::strerror(errno));
  }
  UniqueFd mine(sv[0]), theirs(sv[1]);
  SpawnOptions so;
  so.argv = {options_.executable, kSlotFlag, std::to_string(kSlotFd), kProgressFdFlag,
             std::to_string(kProgressFd)};
  if (options_.max_result_bytes) {
    so.argv.push_back(kMaxResultFlag);
    so.argv.push_back(std::to_string(options_.max_result_bytes));
  }
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
  // Results may be as large as --max-result-mb allows.
  slot.in = protocol::FrameBuffer(
      std::max<size_t>(options_.max_frame_bytes, options_.max_result_bytes) + (1u << 20));
  slot.out.clear();
  slot.ready = false;
  slot.reported_up = false;
  slot.hello_error.clear();
  LRTS_DEBUG("slot {} started (pid {})", slot.index, slot.proc.pid());
  return {};
}

Result<std::vector<std::string>> SlotPool::start(Duration timeout) {
  for (auto& s : slots_) {
    auto region = shm::ProgressRegion::create(std::max(1u, options_.bars_per_slot));
    if (!region) return Error{region.error()};
    s->region = std::move(*region);
    s->sampler = std::make_unique<shm::Sampler>(&s->region);
    if (auto st = spawn(*s); !st) return Error{st.error()};
  }
  const TimePoint deadline = Clock::now() + timeout;
  for (;;) {
    bool all_ready = true;
    for (auto& s : slots_) {
      if (!s->hello_error.empty()) return make_error("slot failed to start: " + s->hello_error);
      if (!s->fd.valid()) return make_error("slot failed to start");
      all_ready = all_ready && s->ready;
    }
    if (all_ready) break;
    const TimePoint now = Clock::now();
    if (now >= deadline) return make_error("slots did not start within the time limit");
    std::vector<pollfd> fds;
    for (auto& s : slots_) fds.push_back({s->fd.get(), POLLIN, 0});
    const int wait_ms = static_cast<int>(std::max<int64_t>(1, to_ms(deadline - now)));
    if (::poll(fds.data(), fds.size(), wait_ms) < 0 && errno != EINTR) {
      return make_error(std::string("poll: ") + std::strerror(errno));
    }
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (fds[i].revents && !read_slot(*slots_[i], now)) {
        Slot& s = *slots_[i];
        s.proc.signal_group(SIGKILL);
        const std::string how = describe_wait_status(s.proc.wait());
        s.fd.reset();
        if (s.hello_error.empty()) s.hello_error = "slot process " + how;
      }
    }
  }
  return services_;  // all slots load the same code; the first one speaks for them
}

void SlotPool::attach(WorkerCore* core, TimePoint now) {
  core_ = core;
  for (auto& s : slots_) {
    if (s->ready && !s->reported_up) {
      s->reported_up = true;
      core_->on_slot_hello(s->index, now);
    }
  }
}

void SlotPool::stop() {
  for (auto& s : slots_) {
    s->fd.reset();
    if (s->proc.unreaped()) {
      s->proc.signal_group(SIGKILL);
      s->proc.wait();
    }
    s->ready = false;
  }
}

// ---- SlotControl ------------------------------------------------------------------------------

void SlotPool::start_slot(int index) {
  Slot& s = *slots_[index];
  if (s.proc.unreaped()) return;  // still being reaped; the executor asks again
  s.region.reset();
  s.sampler->forget();
  if (auto st = spawn(s); !st) {
    LRTS_ERROR("cannot restart slot {}: {}", index, st.error());
    if (core_) core_->on_slot_exit(index, "could not be started: " + st.error(), {}, Clock::now());
  }
}

void SlotPool::run(int index, const std::vector<uint32_t>& refs,
                   const std::vector<const LocalTask*>& tasks) {
  Slot& s = *slots_[index];
  if (!s.fd.valid()) return;  // it died meanwhile; its end settles these tasks
  protocol::SlotRun run;
  std::vector<std::string> ids;
  std::vector<Bytes> keep;
  ids.reserve(tasks.size());  // views into ids must not move
  for (size_t i = 0; i < tasks.size(); ++i) {
    const LocalTask& t = *tasks[i];
    ids.push_back(protocol::format_service_id(t.key));
    run.tasks.push_back({refs[i], t.name, t.fields.view(), ids.back(), t.attempt});
    if (t.fields.size() >= protocol::kExternalBinBytes) keep.push_back(t.fields);
  }
  s.out.push(run, std::move(keep));
  s.out.write_some(s.fd.get());
}

void SlotPool::recall(int index, const std::vector<uint32_t>& refs) {
  Slot& s = *slots_[index];
  if (!s.fd.valid()) return;
  s.out.push(protocol::SlotRecall{refs});
  s.out.write_some(s.fd.get());
}

void SlotPool::kill(int index) {
  Slot& s = *slots_[index];
  if (s.proc.unreaped()) s.proc.signal_group(SIGKILL);  // reaped through SIGCHLD
}

// ---- event loop -------------------------------------------------------------------------------

void SlotPool::add_poll_items(std::vector<zmq_pollitem_t>& items) const {
  for (const auto& s : slots_) {
    short events = 0;
    if (s->fd.valid()) {
      events = ZMQ_POLLIN;
      if (!s->out.empty()) events |= ZMQ_POLLOUT;
    }
    // An invalid fd with no events is ignored by zmq_poll; keeps positions stable.
    items.push_back({nullptr, s->fd.valid() ? s->fd.get() : -1, events, 0});
  }
}

void SlotPool::on_poll(const zmq_pollitem_t* items, TimePoint now) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = *slots_[i];
    if (!s.fd.valid()) continue;
    if ((items[i].revents & (ZMQ_POLLIN | ZMQ_POLLERR)) && !read_slot(s, now)) {
      // Closed, or it broke the protocol: it is finished. Reap it now.
      s.proc.signal_group(SIGKILL);
      slot_ended(s, s.proc.wait(), now);
      continue;
    }
    if (s.fd.valid() && (items[i].revents & ZMQ_POLLOUT)) s.out.write_some(s.fd.get());
  }
}

bool SlotPool::read_slot(Slot& s, TimePoint now) {
  bool alive = true;
  for (;;) {
    const long n = s.in.read_from(s.fd.get());
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    alive = false;  // closed or broken: the slot is gone
    break;
  }
  std::string_view body;
  for (;;) {
    auto got = s.in.next(&body);
    if (!got) {
      LRTS_ERROR("slot {} sent a bad frame ({}); restarting it", s.index, got.error());
      return false;
    }
    if (!*got) break;
    auto msg = protocol::decode<protocol::FromSlot>(body, body.size());
    if (!msg) {
      LRTS_ERROR("slot {} sent a bad message ({}); restarting it", s.index, msg.error().text);
      return false;
    }
    if (auto* hello = std::get_if<protocol::SlotHello>(&*msg)) {
      if (!hello->error.empty()) {
        s.hello_error.assign(hello->error);
        LRTS_ERROR("slot {} cannot start: {}", s.index, s.hello_error);
        return false;
      }
      s.ready = true;
      if (services_.empty()) {
        for (auto name : hello->services) services_.emplace_back(name);
      }
      if (core_ && !s.reported_up) {
        s.reported_up = true;
        core_->on_slot_hello(s.index, now);
      }
    } else if (auto* recalled = std::get_if<protocol::SlotRecalled>(&*msg)) {
      if (core_) core_->on_slot_recalled(s.index, recalled->refs);
    } else if (auto* results = std::get_if<protocol::SlotResults>(&*msg)) {
      // A large frame's buffer is kept, and results are views into it: nothing is copied.
      std::shared_ptr<const std::string> owner;
      if (body.size() >= protocol::kLargeFrameBytes) owner = s.in.take_large();
      std::vector<SlotOutcome> outcomes;
      outcomes.reserve(results->items.size());
      for (auto& r : results->items) {
        Bytes payload = owner ? Bytes(owner, r.payload) : Bytes(std::string(r.payload));
        outcomes.push_back({r.ref, r.status, std::move(payload), r.run_ns, std::move(r.bars)});
      }
      if (core_ && !core_->on_slot_results(s.index, outcomes, now)) return false;
    }
  }
  return alive;
}

void SlotPool::reap(TimePoint now) {
  for (auto& s : slots_) {
    int status = 0;
    if (s->proc.unreaped() && s->proc.try_wait(&status)) {
      if (s->fd.valid()) read_slot(*s, now);  // what it managed to send before dying counts
      slot_ended(*s, status, now);
    }
  }
  // Processes a task started that outlived their slot were reparented here: they die too.
  std::vector<pid_t> slots;
  for (auto& s : slots_) {
    if (s->proc.unreaped()) slots.push_back(s->proc.pid());
  }
  kill_descendants(slots);
}

std::vector<protocol::BarState> SlotPool::last_bars(Slot& s) {
  // Its bars stay where the dead attempt left them; the executor says how they ended.
  std::vector<protocol::BarState> last;
  if (!s.region.valid()) return last;
  const int64_t now = shm::monotonic_ns();
  s.sampler->scan(now, last);  // what changed since the last sample, closed bars included
  std::erase_if(last, [](const protocol::BarState& b) { return !b.closed(); });
  for (uint32_t i = 0; i < s.region.capacity(); ++i) {
    const shm::CellCopy c = shm::copy_cell(s.region.cells()[i]);
    if (c.state != detail::BarCell::kOpen) continue;
    if (c.bar_no >= protocol::kMaxBarsPerTask) continue;  // a dying slot may scribble
    last.push_back(shm::to_bar(c, now));                  // open: it ends as the attempt did
  }
  s.region.reset();
  s.sampler->forget();
  return last;
}

void SlotPool::slot_ended(Slot& s, int wait_status, TimePoint now) {
  s.fd.reset();
  s.proc.mark_reaped();
  s.ready = false;
  s.proc.signal_group(SIGKILL);  // whatever its task started
  uint32_t running = kRunningUnknown;
  if (s.region.valid()) {
    const uint32_t r = s.region.header().running.load(std::memory_order_acquire);
    running = r == 0 ? kRunningNone : r - 1;
  }
  auto bars = last_bars(s);  // resets the region
  if (core_) {
    core_->on_slot_exit(s.index, describe_wait_status(wait_status), std::move(bars), now, running);
  }
}

void SlotPool::check_memory(TimePoint now) {
  if (!core_ || now < next_memory_check_ || !core_->executor().wants_memory_check()) return;
  next_memory_check_ = now + kMemoryCheckInterval;
  // The slot itself every check; its whole tree (programs it started) once a second.
  refresh_tree_rss(now);
  for (int i : core_->executor().busy_slots()) {
    Slot& s = *slots_[i];
    if (!s.proc.unreaped()) continue;
    const auto g = group_rss_.find(s.proc.pid());
    const uint64_t own = resident_bytes(s.proc.pid());
    core_->on_slot_rss(i, std::max(own, g != group_rss_.end() ? g->second : 0));
  }
}

void SlotPool::refresh_tree_rss(TimePoint now) {
  // A pass over /proc costs a millisecond or so: at most once a second, shared by the memory
  // limit and the heartbeat's figure.
  if (now < next_group_scan_) return;
  next_group_scan_ = now + seconds(1);
  std::vector<pid_t> roots;
  for (const auto& slot : slots_) {
    if (slot->proc.unreaped()) roots.push_back(slot->proc.pid());
  }
  group_rss_ = resident_of_trees(roots);
}

uint64_t SlotPool::resident_total(TimePoint now) {
  refresh_tree_rss(now);
  uint64_t total = resident_bytes(::getpid());
  for (const auto& s : slots_) {
    if (!s->proc.unreaped()) continue;
    const auto g = group_rss_.find(s->proc.pid());
    total += g != group_rss_.end() ? g->second : resident_bytes(s->proc.pid());
  }
  return total;
}

bool SlotPool::has_open_bars(const std::vector<int>& busy) const {
  for (int i : busy) {
    const Slot& s = *slots_[i];
    if (s.region.valid() && s.region.header().open_bars.load(std::memory_order_relaxed) > 0) {
      return true;
    }
  }
  return false;
}

void SlotPool::sample_progress(const std::vector<int>& busy, std::vector<protocol::BarState>& out) {
  const int64_t now = shm::monotonic_ns();
  for (int i : busy) {
    Slot& s = *slots_[i];
    if (s.sampler) s.sampler->scan(now, out);
  }
}

}  // namespace lrts::worker
