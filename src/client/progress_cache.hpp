// ProgressCache: the latest bars of an application's tasks (bounded), and the callbacks that
// want each change. Filled by the I/O thread, read by user threads. Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "lrts/progress.hpp"
#include "protocol/ids.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::client {

class ProgressCache {
 public:
  static constexpr size_t kMaxTasks = 100'000;  // the oldest tasks' bars are forgotten first
  using Callback = std::function<void(const std::vector<ProgressSnapshot>& changed)>;

  // I/O thread: stores the bars and returns them as the application sees them.
  std::vector<ProgressSnapshot> apply(const std::vector<protocol::BarState>& bars);
  std::vector<Callback> callbacks() const;

  void add_callback(Callback cb);
  std::vector<ProgressSnapshot> of(const protocol::TaskKey& key) const;
  std::vector<ProgressSnapshot> all() const;
  // Waits until no bar of a task that `finished` says is done is still open, or the deadline:
  // results travel faster than progress, and the last frame should show where tasks ended.
  void wait_settled(TimePoint deadline,
                    const std::function<bool(const protocol::TaskKey&)>& finished);

 private:
  struct TaskBars {
    uint32_t attempt = 0;
    std::vector<ProgressSnapshot> bars;  // by bar number
  };
  void store_locked(const protocol::TaskKey& key, const ProgressSnapshot& p) LRTS_REQUIRES(mu_);

  mutable Mutex mu_;
  CondVar cv_;
  std::unordered_map<protocol::TaskKey, TaskBars, protocol::TaskKeyHash> bars_ LRTS_GUARDED_BY(mu_);
  std::deque<protocol::TaskKey> order_ LRTS_GUARDED_BY(mu_);  // first seen first
  std::vector<Callback> callbacks_ LRTS_GUARDED_BY(mu_);
};

}  // namespace lrts::client
