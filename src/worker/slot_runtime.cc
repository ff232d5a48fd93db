#include "worker/slot_runtime.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string_view>
#include <thread>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/process.hpp"
#include "common/unique_fd.hpp"
#include "protocol/framing.hpp"
#include "protocol/slot_messages.hpp"
#include "services/registry.hpp"
#include "shm/region.hpp"
#include "worker/python_task.hpp"
#include "worker/result_limit.hpp"

namespace lrts::worker {

using protocol::TaskStatus;

namespace {

constexpr size_t kMaxFrame = protocol::kMaxPayloadBytes + (16u << 20);
constexpr size_t kMaxBufferedResults = 1024;
constexpr Duration kMaxResultDelay = milliseconds(1);

class SlotContext final : public TaskContext {
 public:
  explicit SlotContext(shm::ProgressRegion* region) : bars_(region) {}

  const std::string& service_id() const override { return service_id_; }
  uint32_t attempt() const override { return attempt_; }
  ProgressBar create_progress(std::string_view description, uint64_t total,
                              std::string_view unit) override {
    return bars_.create(description, total, unit);
  }
  ProgressBar& progress() override {
    if (!default_bar_) default_bar_ = bars_.create(service_name_, 0, "it");
    return *default_bar_;
  }

  void begin(std::string_view service_id, std::string_view service_name, uint32_t attempt) {
    service_id_.assign(service_id);
    service_name_.assign(service_name);
    attempt_ = attempt;
    default_bar_.reset();
    protocol::TaskKey key;
    protocol::parse_service_id(service_id, &key);
    bars_.begin_task(key, attempt);
  }
  std::vector<protocol::BarState> end() { return bars_.end_task(); }

 private:
  std::string service_id_;
  std::string service_name_;
  uint32_t attempt_ = 0;
  shm::BarAllocator bars_;
  std::optional<ProgressBar> default_bar_;
};

// A task as the slot holds it until it runs (its frame's buffer is gone by then).
struct Task {
  uint32_t ref = 0;
  std::string name;
  Bytes fields;
  std::string service_id;
  uint32_t attempt = 0;
};

struct Done {
  uint32_t ref = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string payload;
  uint64_t run_ns = 0;
  std::vector<protocol::BarState> bars;
};

// DESIGN
// Two threads. The task thread (main) takes tasks from the queue and runs them one after
// another. The reader thread reads frames: RUN appends to the queue; RECALL takes back the
// tasks that have not started and answers RECALLED with them; and it sends results the task
// thread buffered once they are kMaxResultDelay old, so a result never waits behind a long task
// that runs next (the task thread wakes it through an eventfd when it buffers a first result: a
// reader asleep in poll() would not see a condition variable). The task thread sends its buffer
// itself before it waits for work (no one to batch with — checked under the queue's lock, so a
// RECALL that empties the queue cannot strand a result) or when the buffer is full. Writes to
// the socket are serialised by out_mu_.
class Slot {
 public:
  Slot(int fd, shm::ProgressRegion* region, uint64_t max_result_bytes,
       std::unique_ptr<PythonRunner> python, std::vector<std::string> offered)
      : offered_(std::move(offered)),
        fd_(fd),
        frames_(kMaxFrame),
        region_(region),
        ctx_(region),
        max_result_bytes_(max_result_bytes),
        python_(std::move(python)),
        forwards_python_(services::find_service(kPythonServiceName) == nullptr) {}

  int run() {
    std::thread reader([this] { read_loop(); });
    for (;;) {
      Task task;
      queue_mu_.lock();
      if (queue_.empty()) {
        // Nothing to batch the buffered results with: they go now. Only this thread adds
        // results, so none is left behind while it waits.
        queue_mu_.unlock();
        {
          MutexLock out(out_mu_);
          flush_locked();
        }
        queue_mu_.lock();
      }
      while (queue_.empty() && !closed_) queue_cv_.wait(queue_mu_);
      const bool closed = queue_.empty();  // the worker closed our socket: time to go
      std::vector<Task> python_tasks;      // Python tasks next to each other go together
      if (!closed && forwards(queue_.front())) {
        while (!queue_.empty() && python_tasks.size() < kMaxHandedTasks &&
               forwards(queue_.front())) {
          python_tasks.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
      } else if (!closed) {
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      queue_mu_.unlock();
      if (closed) break;
      if (!python_tasks.empty()) {
        run_python(python_tasks);
      } else {
        add_result(run_task(task));
      }
      clean_up_children(python_ ? python_->pid() : 0);
    }
    {
      MutexLock lock(out_mu_);
      flush_locked();
      stopping_ = true;
    }
    wake_reader();
    ::shutdown(fd_, SHUT_RD);  // wakes the reader if it still waits
    reader.join();
    return 0;
  }

 private:
  void read_loop() {
    for (;;) {
      // Wait for input, or until the oldest buffered result is due.
      int timeout_ms = -1;
      {
        MutexLock lock(out_mu_);
        if (stopping_) return;
        if (!results_.empty()) {
          const auto due = first_buffered_ + kMaxResultDelay - Clock::now();
          timeout_ms = static_cast<int>(std::max<int64_t>(0, (to_ns(due) + 999'999) / 1'000'000));
        }
      }
      pollfd p[2] = {{fd_, POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      const int r = ::poll(p, 2, timeout_ms);
      if (r < 0 && errno != EINTR) return close();
      if (r > 0 && (p[1].revents & POLLIN)) {
        uint64_t n;
        [[maybe_unused]] const auto got = ::read(wake_.get(), &n, sizeof n);
        if (!(p[0].revents & POLLIN)) continue;  // a result was buffered: time it
      }
      if (r == 0) {
        MutexLock lock(out_mu_);
        if (!results_.empty() && Clock::now() - first_buffered_ >= kMaxResultDelay) flush_locked();
        continue;
      }
      if (r < 0) continue;
      const long n = frames_.read_from(fd_);
      if (n == 0) return close();
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        return close();
      }
      if (!take_frames()) return close();
    }
  }

  // Handles every complete frame read so far; false on a protocol error.
  bool take_frames() {
    std::string_view body;
    for (;;) {
      auto got = frames_.next(&body);
      if (!got) {
        std::fprintf(stderr, "lrts slot %d: %s\n", ::getpid(), got.error().c_str());
        return false;
      }
      if (!*got) return true;
      auto msg = protocol::decode<protocol::ToSlot>(body, kMaxFrame);
      if (!msg) {
        std::fprintf(stderr, "lrts slot %d: %s\n", ::getpid(), msg.error().text.c_str());
        return false;
      }
      if (auto* recall = std::get_if<protocol::SlotRecall>(&*msg)) {
        protocol::SlotRecalled back;
        std::vector<uint32_t> elsewhere;  // running, done, or in the Python process
        {
          MutexLock lock(queue_mu_);
          for (uint32_t ref : recall->refs) {
            bool found = false;
            for (auto it = queue_.begin(); it != queue_.end(); ++it) {
              if (it->ref == ref) {
                back.refs.push_back(ref);
                queue_.erase(it);
                found = true;
                break;
              }
            }
            if (!found) elsewhere.push_back(ref);
          }
        }
        // The Python process answers for its own, through the task thread.
        if (python_ && !elsewhere.empty()) python_->recall(elsewhere);
        MutexLock lock(out_mu_);
        out_.push(back);
        if (!out_.write_all(fd_)) return false;
        continue;
      }
      // A large frame's buffer is kept by the tasks that point into it: nothing is copied.
      std::shared_ptr<const std::string> owner;
      if (body.size() >= protocol::kLargeFrameBytes) owner = frames_.take_large();
      MutexLock lock(queue_mu_);
      for (const auto& t : std::get<protocol::SlotRun>(*msg).tasks) {
        Task task;
        task.ref = t.ref;
        task.name.assign(t.name);
        task.fields = owner ? Bytes(owner, t.fields) : Bytes(std::string(t.fields));
        task.service_id.assign(t.service_id);
        task.attempt = t.attempt;
        queue_.push_back(std::move(task));
      }
      queue_cv_.notify_one();
    }
  }

  void wake_reader() {
    const uint64_t one = 1;
    [[maybe_unused]] const auto put = ::write(wake_.get(), &one, sizeof one);
  }

  void close() {
    MutexLock lock(queue_mu_);
    closed_ = true;
    queue_cv_.notify_one();
  }

  Done run_task(const Task& task) {
    Done d;
    d.ref = task.ref;
    const auto* type = services::find_service(task.name);
    mark_running(task.ref + 1);
    const TimePoint start = Clock::now();
    if (!type) {
      d.status = TaskStatus::kFailed;
      d.payload = "unknown service '" + task.name + "' (this worker has: ";
      // What this slot offers (as its HELLO said), without programs unless they are allowed.
      std::vector<std::string> names;
      for (const auto& n : offered_) {
        const char* commands = std::getenv("LRTS_ALLOW_COMMANDS");
        if (n == "lrts.command" && !(commands && *commands)) continue;
        names.push_back(n);
      }
      for (size_t i = 0; i < names.size(); ++i) d.payload += (i ? ", '" : "'") + names[i] + "'";
      d.payload += names.empty() ? "none)" : ")";
    } else {
      ctx_.begin(task.service_id, task.name, task.attempt);
      try {
        d.payload = type->invoke(ctx_, task.fields.view());
        d.status = TaskStatus::kFinished;
      } catch (const FieldsError& e) {
        d.status = TaskStatus::kFailed;
        d.payload = "service '" + type->name + "': " + e.what();
      } catch (const std::bad_alloc&) {
        d.status = TaskStatus::kFailed;
        d.payload = "run ran out of memory (std::bad_alloc)";
      } catch (const std::exception& e) {
        d.status = TaskStatus::kFailed;
        d.payload = e.what();
        if (d.payload.empty()) d.payload = "exception with an empty message";
      } catch (...) {
        d.status = TaskStatus::kFailed;
        d.payload = "run threw something that is not a std::exception";
      }
    }
    d.run_ns = static_cast<uint64_t>(to_ns(Clock::now() - start));
    if (type) d.bars = ctx_.end();
    mark_running(0);
    if (d.status == TaskStatus::kFinished &&
        over_result_limit(d.payload.size(), max_result_bytes_)) {
      d.status = TaskStatus::kFailed;
      d.payload = result_limit_error(d.payload.size(), max_result_bytes_);
    }
    return d;
  }

  // Tells the worker, through the region, which task runs (ref + 1) or none (0).
  void mark_running(uint32_t value) {
    if (region_->valid()) region_->header().running.store(value, std::memory_order_release);
  }

  // A task of the service lrts.python, in a slot that hands them to its Python process.
  bool forwards(const Task& task) const {
    return forwards_python_ && task.name == kPythonServiceName;
  }

  void add_result(Done done) {
    MutexLock lock(out_mu_);
    const bool first = results_.empty();
    if (first) first_buffered_ = Clock::now();
    results_.push_back(std::move(done));
    if (results_.size() >= kMaxBufferedResults) {
      flush_locked();
    } else if (first) {
      wake_reader();  // its flush timer starts now (it may be waiting for input alone)
    }
  }

  // Python services run in the slot's Python process (python_task.hpp), which reports their
  // bars itself; tasks it gives back after a recall are this slot's RECALLED.
  void run_python(const std::vector<Task>& tasks) {
    std::string why;
    if (!python_) {
      const char* error = std::getenv("LRTS_PYTHON_ERROR");
      why = std::string("this worker does not run Python services (") +
            (error && *error ? error : "it was started with --python none") + ")";
    } else if (std::string e = python_->start_if_needed(); !e.empty()) {
      if (const int status = python_->start_signal(); status != 0) {
        // Killed before it was ready (from outside: an OOM killer, an operator): this slot
        // ends the same way and its tasks go back as a crashed slot's do.
        std::fprintf(stderr, "lrts slot %d: %s\n", ::getpid(), e.c_str());
        {
          MutexLock lock(out_mu_);
          flush_locked();
        }
        PythonRunner::end_with(status);
      }
      why = "cannot run Python services here: " + e;
    }
    if (!why.empty()) {
      for (const Task& t : tasks) add_result(Done{t.ref, TaskStatus::kFailed, why, 0, {}});
      return;
    }
    std::vector<PythonRunner::Task> handed;
    handed.reserve(tasks.size());
    for (const Task& t : tasks) handed.push_back({t.ref, t.fields.view(), t.service_id, t.attempt});
    python_->run(handed);
    while (python_->outstanding() > 0) {
      PythonRunner::Event ev = python_->next();
      if (ev.died) {
        // What it finished and this slot has not sent yet goes first; then this slot ends as
        // it did, in the task its region names.
        {
          MutexLock lock(out_mu_);
          flush_locked();
        }
        python_->end_like_it();
      }
      for (auto& r : ev.results) {
        add_result(Done{r.ref, r.status, std::move(r.payload), r.run_ns, std::move(r.bars)});
      }
      if (!ev.recalled.empty()) {
        protocol::SlotRecalled back;
        back.refs = std::move(ev.recalled);
        MutexLock lock(out_mu_);
        out_.push(back);
        write_ok_ = out_.write_all(fd_) && write_ok_;
      }
    }
  }

  // A task's processes end with it: whatever it started and left running is killed (the slot
  // is their subreaper, so even orphans are found), except the slot's Python process, which
  // cleans up after its own tasks. A waitpid is enough to know there are none.
  static void clean_up_children(pid_t keep) {
    int status;
    if (::waitpid(-1, &status, WNOHANG) < 0 && errno == ECHILD) return;
    kill_descendants(keep > 0 ? std::vector<pid_t>{keep} : std::vector<pid_t>{});
  }

  void flush_locked() LRTS_REQUIRES(out_mu_) {
    if (results_.empty()) return;
    protocol::SlotResults msg;
    msg.items.reserve(results_.size());
    for (Done& d : results_) {
      msg.items.push_back({d.ref, d.status, d.payload, d.run_ns, std::move(d.bars)});
    }
    out_.push(msg);  // large payloads are written from results_, which lives until then
    write_ok_ = out_.write_all(fd_) && write_ok_;
    results_.clear();
  }

  const std::vector<std::string> offered_;
  int fd_;
  protocol::FrameBuffer frames_;  // reader thread only
  shm::ProgressRegion* region_;   // header.running: task thread only
  SlotContext ctx_;               // task thread only
  uint64_t max_result_bytes_;
  // Null: no Python services here. Set once; recall() is called from the reader thread too.
  const std::unique_ptr<PythonRunner> python_;
  const bool forwards_python_;  // false in a Python slot process: it runs them itself

  Mutex queue_mu_;
  CondVar queue_cv_;
  std::deque<Task> queue_ LRTS_GUARDED_BY(queue_mu_);
  bool closed_ LRTS_GUARDED_BY(queue_mu_) = false;

  UniqueFd wake_{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};  // the task thread wakes the reader
  Mutex out_mu_;
  protocol::FrameWriter out_ LRTS_GUARDED_BY(out_mu_);
  std::vector<Done> results_ LRTS_GUARDED_BY(out_mu_);
  TimePoint first_buffered_ LRTS_GUARDED_BY(out_mu_){};
  bool stopping_ LRTS_GUARDED_BY(out_mu_) = false;
  bool write_ok_ LRTS_GUARDED_BY(out_mu_) = true;
};

}  // namespace

bool is_slot_invocation(int argc, char** argv) {
  return argc >= 3 && std::strcmp(argv[1], kSlotFlag) == 0;
}

int slot_main(int argc, char** argv) {
  const pid_t parent = ::getppid();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) return 1;  // the worker died before we armed the signal
  ::signal(SIGPIPE, SIG_IGN);
  ::signal(SIGINT, SIG_IGN);  // the worker decides when slots stop
  become_subreaper();

  const int fd = std::atoi(argv[2]);
  std::string error;
  shm::ProgressRegion region;
  int region_fd = -1;
  uint64_t max_result_bytes = 0;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--service-lib") == 0 && i + 1 < argc) {
      if (auto s = services::load_service_library(argv[++i]); !s && error.empty()) {
        error = s.error();
      }
    } else if (std::strcmp(argv[i], kProgressFdFlag) == 0 && i + 1 < argc) {
      region_fd = std::atoi(argv[++i]);
      auto r = shm::ProgressRegion::attach(region_fd);
      if (r) {
        region = std::move(*r);
      } else if (error.empty()) {
        error = r.error();
      }
    } else if (std::strcmp(argv[i], kMaxResultFlag) == 0 && i + 1 < argc) {
      max_result_bytes = std::strtoull(argv[++i], nullptr, 10);
    }
  }
  auto names = registered_services();
  // Python services: run here when this is a Python slot process (its extension registered
  // them), else handed to one (python_task.hpp) when the worker found an interpreter.
  std::unique_ptr<PythonRunner> python;
  const char* interpreter = std::getenv("LRTS_PYTHON");
  if (!services::find_service(kPythonServiceName) && interpreter && *interpreter) {
    python = std::make_unique<PythonRunner>(interpreter, region.valid() ? region_fd : -1,
                                            max_result_bytes);
    names.emplace_back(kPythonServiceName);
  }
  protocol::SlotHello hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  for (const auto& n : names) hello.services.push_back(n);
  hello.error = error;
  protocol::FrameWriter out;
  out.push(hello);
  if (!out.write_all(fd) || !error.empty()) return error.empty() ? 0 : 2;
  return Slot(fd, &region, max_result_bytes, std::move(python), names).run();
}

}  // namespace lrts::worker
