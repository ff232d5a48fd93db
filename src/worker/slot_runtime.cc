#include "worker/slot_runtime.hpp"

#include <poll.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <csignal>
#include <optional>
#include <string_view>

#include "common/clock.hpp"
#include "shm/region.hpp"
#include "protocol/framing.hpp"
#include "protocol/slot_messages.hpp"
#include "services/registry.hpp"

namespace lrts::worker {

using protocol::SlotResult;
using protocol::TaskStatus;

namespace {

constexpr size_t kMaxFrame = 1u << 30;
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

bool readable_now(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

class Slot {
 public:
  Slot(int fd, shm::ProgressRegion* region) : fd_(fd), frames_(kMaxFrame), ctx_(region) {}

  int run() {
    for (;;) {
      std::string_view body;
      auto got = frames_.next(&body);
      if (!got) {
        std::fprintf(stderr, "lrts slot %d: %s\n", ::getpid(), got.error().c_str());
        return 3;
      }
      if (*got) {
        auto msg = protocol::decode<protocol::ToSlot>(body, kMaxFrame);
        if (!msg) {
          std::fprintf(stderr, "lrts slot %d: %s\n", ::getpid(), msg.error().text.c_str());
          return 3;
        }
        if (auto* recall = std::get_if<protocol::SlotRecall>(&*msg)) {
          (void)recall;  // tasks are run as they arrive: nothing waits to be recalled
          out_.push(protocol::SlotRecalled{});
          if (!out_.write_all(fd_)) return 0;
          continue;
        }
        for (const auto& task : std::get<protocol::SlotRun>(*msg).tasks) {
          run_task(task);
          if (results_.items.size() >= kMaxBufferedResults ||
              Clock::now() - first_buffered_ >= kMaxResultDelay) {
            if (!flush()) return 0;
          }
        }
        continue;  // maybe another complete frame is already buffered
      }
      // Nothing buffered: send what we hold before waiting, unless more work is right there.
      if (!results_.items.empty() && !readable_now(fd_)) {
        if (!flush()) return 0;
      }
      const long n = frames_.read_from(fd_);
      if (n == 0) {
        flush();
        return 0;  // the worker closed our socket: time to go
      }
      if (n < 0) {
        if (errno == EINTR) continue;
        return 0;
      }
    }
  }

 private:
  void run_task(const protocol::SlotTask& task) {
    if (results_.items.empty()) first_buffered_ = Clock::now();
    SlotResult r;
    r.ref = task.ref;
    const auto* type = services::find_service(task.name);
    const TimePoint start = Clock::now();
    payloads_.emplace_back();
    std::string& payload = payloads_.back();
    if (!type) {
      r.status = TaskStatus::kFailed;
      payload = "unknown service '" + std::string(task.name) + "' (this worker has: ";
      const auto names = registered_services();
      for (size_t i = 0; i < names.size(); ++i) payload += (i ? ", '" : "'") + names[i] + "'";
      payload += names.empty() ? "none)" : ")";
    } else {
      ctx_.begin(task.service_id, task.name, task.attempt);
      try {
        payload = type->invoke(ctx_, task.fields);
        r.status = TaskStatus::kFinished;
      } catch (const FieldsError& e) {
        r.status = TaskStatus::kFailed;
        payload = "service '" + type->name + "': " + e.what();
      } catch (const std::exception& e) {
        r.status = TaskStatus::kFailed;
        payload = e.what();
        if (payload.empty()) payload = "exception with an empty message";
      } catch (...) {
        r.status = TaskStatus::kFailed;
        payload = "run threw something that is not a std::exception";
      }
    }
    r.run_ns = static_cast<uint64_t>(to_ns(Clock::now() - start));
    if (type) r.bars = ctx_.end();
    results_.items.push_back(std::move(r));
  }

  bool flush() {
    if (results_.items.empty()) return true;
    // Payload views are bound now: payloads_ no longer grows until cleared.
    for (size_t i = 0; i < results_.items.size(); ++i) results_.items[i].payload = payloads_[i];
    out_.push(results_);
    results_.items.clear();
    const bool ok = out_.write_all(fd_);
    payloads_.clear();
    return ok;
  }

  int fd_;
  protocol::FrameBuffer frames_;
  SlotContext ctx_;
  protocol::SlotResults results_;
  std::vector<std::string> payloads_;
  protocol::FrameWriter out_;
  TimePoint first_buffered_{};
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

  const int fd = std::atoi(argv[2]);
  std::string error;
  shm::ProgressRegion region;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--service-lib") == 0 && i + 1 < argc) {
      if (auto s = services::load_service_library(argv[++i]); !s && error.empty()) {
        error = s.error();
      }
    } else if (std::strcmp(argv[i], kProgressFdFlag) == 0 && i + 1 < argc) {
      auto r = shm::ProgressRegion::attach(std::atoi(argv[++i]));
      if (r) {
        region = std::move(*r);
      } else if (error.empty()) {
        error = r.error();
      }
    }
  }
  const auto names = registered_services();
  protocol::SlotHello hello;
  hello.pid = static_cast<uint32_t>(::getpid());
  for (const auto& n : names) hello.services.push_back(n);
  hello.error = error;
  protocol::FrameWriter out;
  out.push(hello);
  if (!out.write_all(fd) || !error.empty()) return error.empty() ? 0 : 2;
  return Slot(fd, &region).run();
}

}  // namespace lrts::worker
