#include "worker/python_task.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "common/clock.hpp"
#include "protocol/slot_messages.hpp"
#include "worker/slot_runtime.hpp"

namespace lrts::worker {

namespace {

constexpr int kSlotFd = 3;
constexpr int kProgressFd = 4;
// A Python slot process imports the interpreter's site packages and the extension: seconds on a
// loaded machine, never minutes.
constexpr int kHelloTimeoutMs = 120'000;
// What a Python slot process may send: a batch of results, each at most --max-result-mb (a
// frame that announces more is a broken process, not one to allocate for).
size_t max_frame(uint64_t max_result_bytes) {
  const uint64_t payload = max_result_bytes ? max_result_bytes : protocol::kMaxPayloadBytes;
  return static_cast<size_t>(std::min<uint64_t>(payload, protocol::kMaxPayloadBytes)) + (16u << 20);
}

}  // namespace

std::string python_path_with(const std::string& dir) {
  const char* old = std::getenv("PYTHONPATH");
  if (!old || !*old) return dir;
  return dir + ":" + old;
}

PythonRunner::PythonRunner(std::string python, int region_fd, uint64_t max_result_bytes)
    : python_(std::move(python)),
      region_fd_(region_fd),
      max_result_bytes_(max_result_bytes),
      in_(max_frame(max_result_bytes)) {}

PythonRunner::~PythonRunner() {
  fd_.reset();  // it exits when its socket closes; the ChildProcess reaps (or kills) it
}

std::string PythonRunner::start_if_needed() {
  {
    MutexLock lock(mu_);
    if (up_) return {};
  }
  std::string why = start();
  MutexLock lock(mu_);
  up_ = why.empty();
  return why;
}

std::string PythonRunner::start() {
  start_signal_ = 0;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    return std::string("socketpair: ") + std::strerror(errno);
  }
  UniqueFd mine(sv[0]), theirs(sv[1]);
  SpawnOptions so;
  so.argv = {python_, "-m", "lrts._slot", kSlotFlag, std::to_string(kSlotFd)};
  so.fds = {{theirs.get(), kSlotFd}};
  if (region_fd_ >= 0) {
    so.argv.push_back(kProgressFdFlag);
    so.argv.push_back(std::to_string(kProgressFd));
    so.fds.emplace_back(region_fd_, kProgressFd);
  }
  if (max_result_bytes_) {
    so.argv.push_back(kMaxResultFlag);
    so.argv.push_back(std::to_string(max_result_bytes_));
  }
  // Same process group as this slot: whatever stops the slot stops it.
  auto child = ChildProcess::spawn(so);
  if (!child) return "cannot start " + python_ + ": " + child.error();
  child_ = std::move(*child);
  pid_.store(child_.pid(), std::memory_order_relaxed);
  theirs.reset();
  in_ = protocol::FrameBuffer(max_frame(max_result_bytes_));
  exit_fd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, child_.pid(), 0)));
  exited_ = false;
  const int fd = mine.get();
  auto gone = [&](std::string why) {
    fd_.reset();
    child_.reset();
    pid_.store(0, std::memory_order_relaxed);
    return why;
  };

  // Its HELLO, or its end.
  const TimePoint deadline = Clock::now() + milliseconds(kHelloTimeoutMs);
  for (;;) {
    std::string_view body;
    auto got = in_.next(&body);
    if (!got) return gone("Python slot process: " + got.error());
    if (*got) {
      auto msg = protocol::decode<protocol::FromSlot>(body, max_frame(max_result_bytes_));
      if (!msg) return gone("Python slot process: " + msg.error().text);
      if (auto* hello = std::get_if<protocol::SlotHello>(&*msg)) {
        if (!hello->error.empty()) return gone(std::string(hello->error));
        fd_ = std::move(mine);
        return {};
      }
      continue;
    }
    const auto left = to_ns(deadline - Clock::now()) / 1'000'000;
    if (left <= 0) {
      return gone(python_ + " -m lrts._slot did not say hello within " +
                  std::to_string(kHelloTimeoutMs / 1000) + " s");
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0 && errno != EINTR) {
      return gone(std::string("poll: ") + std::strerror(errno));
    }
    const long n = in_.read_from(fd);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      mine.reset();
      const int status = child_.wait();
      pid_.store(0, std::memory_order_relaxed);
      start_signal_ = WIFSIGNALED(status) ? status : 0;
      return python_ + " -m lrts._slot " + describe_wait_status(status) +
             " before it was ready (can it import the lrts package? its error is in the "
             "worker's log)";
    }
  }
}

void PythonRunner::run(const std::vector<Task>& tasks) {
  protocol::SlotRun msg;
  msg.tasks.reserve(tasks.size());
  for (const Task& t : tasks) {
    msg.tasks.push_back({t.ref, kPythonServiceName, t.fields, t.service_id, t.attempt});
  }
  MutexLock lock(mu_);
  for (const Task& t : tasks) handed_.insert(t.ref);
  out_.push(msg);
  // A failed write shows as the end of its socket in next().
  if (!out_.write_all(fd_.get())) out_.clear();
}

void PythonRunner::recall(const std::vector<uint32_t>& refs) {
  MutexLock lock(mu_);
  if (!up_) return;
  protocol::SlotRecall msg;
  for (uint32_t ref : refs) {
    if (handed_.count(ref)) msg.refs.push_back(ref);
  }
  if (msg.refs.empty()) return;
  out_.push(msg);
  if (!out_.write_all(fd_.get())) out_.clear();
}

size_t PythonRunner::outstanding() const {
  MutexLock lock(mu_);
  return handed_.size();
}

PythonRunner::Event PythonRunner::next() {
  for (;;) {
    std::string_view body;
    auto got = in_.next(&body);
    if (!got) {
      std::fprintf(stderr, "lrts slot %d: Python slot process: %s\n", ::getpid(),
                   got.error().c_str());
      std::_Exit(3);
    }
    if (*got) {
      auto msg = protocol::decode<protocol::FromSlot>(body, max_frame(max_result_bytes_));
      if (!msg) {
        std::fprintf(stderr, "lrts slot %d: Python slot process: %s\n", ::getpid(),
                     msg.error().text.c_str());
        std::_Exit(3);
      }
      Event ev;
      if (auto* results = std::get_if<protocol::SlotResults>(&*msg)) {
        ev.results.reserve(results->items.size());
        for (auto& item : results->items) {
          ev.results.push_back({item.ref, item.status, std::string(item.payload), item.run_ns,
                                std::move(item.bars)});
        }
      } else if (auto* back = std::get_if<protocol::SlotRecalled>(&*msg)) {
        ev.recalled = back->refs;
      } else {
        continue;
      }
      MutexLock lock(mu_);
      for (const Item& i : ev.results) handed_.erase(i.ref);
      for (uint32_t ref : ev.recalled) handed_.erase(ref);
      return ev;
    }
    // Its socket, and its exit: a process it forked may hold the socket open after it died.
    if (!exited_) {
      pollfd p[2] = {{fd_.get(), POLLIN, 0}, {exit_fd_.get(), POLLIN, 0}};
      const int r = ::poll(p, exit_fd_.valid() ? 2 : 1, -1);
      if (r < 0 && errno == EINTR) continue;
      if (r > 0 && (p[1].revents & POLLIN)) {
        exited_ = true;  // read what it sent, then report its end
        ::fcntl(fd_.get(), F_SETFL, ::fcntl(fd_.get(), F_GETFL) | O_NONBLOCK);
      }
    }
    const long n = in_.read_from(fd_.get());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN && !exited_) continue;
    if (n <= 0) {
      Event ev;
      ev.died = true;
      return ev;
    }
  }
}

void PythonRunner::end_like_it() {
  {
    MutexLock lock(mu_);
    fd_.reset();
    up_ = false;
  }
  end_with(child_.wait());
}

void PythonRunner::end_with(int status) {
  std::fflush(stderr);
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const rlimit no_core{0, 0};
    ::setrlimit(RLIMIT_CORE, &no_core);
    ::signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
    ::kill(::getpid(), sig);
    std::_Exit(128 + sig);  // a signal that does not end a process by default
  }
  std::_Exit(WIFEXITED(status) ? WEXITSTATUS(status) : 3);
}

}  // namespace lrts::worker

namespace lrts::worker {

Result<std::string> check_python(const std::string& python) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return make_error(std::string("pipe: ") + std::strerror(errno));
  UniqueFd read_end(p[0]), write_end(p[1]);
  UniqueFd null_fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  SpawnOptions so;
  so.argv = {python, "-m", "lrts._slot", "--check"};
  so.fds = {{null_fd.get(), 0}, {write_end.get(), 1}, {write_end.get(), 2}};
  auto child = ChildProcess::spawn(so);
  if (!child) return make_error("cannot start " + python + ": " + child.error());
  write_end.reset();
  std::string text;
  const TimePoint deadline = Clock::now() + milliseconds(kHelloTimeoutMs);
  for (;;) {
    const auto left = to_ns(deadline - Clock::now()) / 1'000'000;
    if (left <= 0) return make_error(python + " -m lrts._slot --check did not answer in time");
    pollfd pf{read_end.get(), POLLIN, 0};
    if (::poll(&pf, 1, static_cast<int>(left)) < 0 && errno != EINTR) break;
    char buf[4096];
    const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (text.size() < 64 * 1024) text.append(buf, static_cast<size_t>(n));
  }
  const int status = child->wait();
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return text;
  // The last line says it best ("ModuleNotFoundError: No module named 'lrts'").
  const size_t nl = text.rfind('\n');
  std::string last = nl == std::string::npos ? text : text.substr(nl + 1);
  if (last.empty()) last = describe_wait_status(status);
  return make_error(python + " cannot run lrts services: " + last);
}

}  // namespace lrts::worker
