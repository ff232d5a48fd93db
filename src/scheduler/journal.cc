#include "scheduler/journal.hpp"

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.hpp"

namespace lrts::scheduler {

namespace {
constexpr auto kCommitWindow = std::chrono::milliseconds(2);
constexpr size_t kBatchesPerCommit = 64;  // a busy loop fills a transaction sooner
}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const JournalOptions& options) {
  auto store = JournalStore::open(options.dir, options.sync_full);
  if (!store) return Error{store.error()};
  std::unique_ptr<Journal> j(new Journal(std::move(*store)));
  j->notify_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  return j;
}

Journal::~Journal() { stop(); }

void Journal::start() {
  writer_ = std::thread([this] {
    // Durability is throughput work: the event loop's latency-critical work goes first.
    ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 5);
    writer_loop();
  });
}

void Journal::stop() {
  hand_off();
  {
    MutexLock lock(mu_);
    if (!writer_.joinable()) return;
    stopping_ = true;
    cv_.notify_all();
  }
  writer_.join();
}

void Journal::hand_off() {
  if (records_.empty()) return;
  MutexLock lock(mu_);
  pending_.push_back(records_.take());
  pending_upto_ = records_.count();
  cv_.notify_one();
}

void Journal::drain_notify() {
  uint64_t v;
  [[maybe_unused]] auto n = ::read(notify_.get(), &v, sizeof v);
}

JournalStats Journal::stats() const {
  MutexLock lock(mu_);
  return stats_;
}

void Journal::writer_loop() {
  for (;;) {
    std::vector<std::string> batches;
    uint64_t upto = 0;
    {
      MutexLock lock(mu_);
      while (!stopping_ && pending_.empty()) cv_.wait(mu_);
      if (pending_.empty()) return;  // stopping, and everything is written
      // Group commit: give the batch a moment to grow. A task submitted, finished and
      // collected within the window never reaches the database, and a trickle of records costs
      // one transaction instead of one each. Only acknowledgements wait for this.
      const auto until = std::chrono::steady_clock::now() + kCommitWindow;
      while (!stopping_ && pending_.size() < kBatchesPerCommit) {
        if (!cv_.wait_until(mu_, until)) break;
      }
      batches.swap(pending_);
      upto = pending_upto_;
    }
    JournalStats delta;
    const TimePoint began = Clock::now();
    Status st = store_->apply(batches, &delta);
    for (int attempt = 1; !st; ++attempt) {
      // The disk is full or failing: nothing that depends on these records is acknowledged
      // until they are written. Keep trying, unless we are asked to stop.
      bool stopping;
      {
        MutexLock lock(mu_);
        stopping = stopping_;
      }
      if (stopping && attempt > 3) {
        LRTS_ERROR(
            "journal: giving up on {} batch(es) while stopping; the work they hold was "
            "never acknowledged to its senders, who will send it again",
            batches.size());
        return;
      }
      LRTS_ERROR("journal: {} (attempt {}); acknowledgements wait until it succeeds", st.error(),
                 attempt);
      std::this_thread::sleep_for(std::chrono::seconds(std::min(attempt, 5)));
      st = store_->apply(batches, &delta);
    }
    {
      MutexLock lock(mu_);
      ++stats_.transactions;
      stats_.commit_seconds.observe(to_seconds(Clock::now() - began));
      stats_.records += delta.records;
      stats_.coalesced += delta.coalesced;
    }
    committed_.store(upto, std::memory_order_release);
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(notify_.get(), &one, sizeof one);
  }
}

}  // namespace lrts::scheduler
