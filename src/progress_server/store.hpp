// ProgressStore: the progress server's state, without I/O (time is passed in).
//
// Keeps the latest state of every bar, computes a smoothed rate and an ETA, and remembers which
// bars changed since subscribers were last told. A task's bars belong to one attempt: when a
// newer attempt reports, the older attempt's bars are dropped (the view shows the retry starting
// from zero). Closed bars are kept for `keep_closed`, then forgotten; past `max_bars` the oldest
// closed bars go first, so memory stays bounded. Bars whose worker went silent end lost
// (mark_lost), frozen. Not thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::progress_server {

struct StoreOptions {
  Duration keep_closed = seconds(300);
  size_t max_bars = 1'000'000;
  Duration rate_time_constant = seconds(3);  // smoothing of the rate (EWMA over time)
};

class ProgressStore {
 public:
  explicit ProgressStore(StoreOptions options = {}) : options_(options) {}

  // One bar update from a worker (`source` names it, for mark_lost).
  void apply(const protocol::BarState& update, TimePoint now, uint32_t source = 0);
  // The open bars from `source` end lost (their worker went silent); returns how many. A later
  // update from the same attempt opens a bar again (the worker was only cut off).
  size_t mark_lost(uint32_t source, TimePoint now);
  // Bars that changed since the last call, with rate and ETA filled in.
  std::vector<protocol::BarState> take_changes(TimePoint now);
  // Every bar whose session passes `filter` (all bars if the filter is empty).
  std::vector<protocol::BarState> snapshot(TimePoint now,
                                           const std::function<bool(uint64_t)>& filter) const;
  // Forgets closed bars older than keep_closed.
  void expire(TimePoint now);
  TimePoint next_expiry() const;
  size_t size() const { return bars_.size(); }
  bool has_changes() const { return !changed_.empty(); }
  uint64_t dropped() const { return dropped_; }

 private:
  struct Key {
    protocol::TaskKey task;
    uint32_t bar_no;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept {
      return protocol::TaskKeyHash{}(k.task) * 31 + k.bar_no;
    }
  };
  struct Entry {
    protocol::BarState state;
    TimePoint started;  // when the bar was created (from its elapsed time)
    TimePoint last_update;
    TimePoint closed_at{};
    double rate = 0;
    uint32_t source = 0;
    bool changed = false;
  };

  void fill(const Entry& e, TimePoint now, protocol::BarState& out) const;
  void drop_task_bars(const protocol::TaskKey& task, uint32_t below_attempt);
  void erase_bar(const Key& key);
  bool make_room();

  StoreOptions options_;
  std::unordered_map<Key, Entry, KeyHash> bars_;
  std::unordered_map<protocol::TaskKey, uint32_t, protocol::TaskKeyHash> attempt_of_;
  // Bar numbers held per task.
  std::unordered_map<protocol::TaskKey, std::vector<uint32_t>, protocol::TaskKeyHash> bars_of_task_;
  std::vector<Key> changed_;
  std::deque<std::pair<TimePoint, Key>> closed_;  // in closing order
  uint64_t dropped_ = 0;
};

}  // namespace lrts::progress_server
