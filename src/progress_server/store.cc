#include "progress_server/store.hpp"

#include <algorithm>
#include <cmath>

namespace lrts::progress_server {

void ProgressStore::apply(const protocol::BarState& u, TimePoint now, uint32_t source) {
  auto at = attempt_of_.find(u.key);
  if (at != attempt_of_.end()) {
    if (u.attempt < at->second) return;  // a late update of an attempt already replaced
    if (u.attempt > at->second) drop_task_bars(u.key, u.attempt);
  }
  const Key key{u.key, u.bar_no};
  auto it = bars_.find(key);
  if (it == bars_.end()) {
    if (bars_.size() >= options_.max_bars && !make_room()) {
      ++dropped_;
      return;
    }
    Entry e;
    e.state = u;
    e.started = now - milliseconds(u.elapsed_ms);
    e.last_update = now;
    // The average so far is the best first estimate (a late subscriber or a restarted server
    // sees a sensible rate at once).
    const double secs = static_cast<double>(u.elapsed_ms) / 1000.0;
    e.rate = secs > 0 ? static_cast<double>(u.count) / secs : 0;
    it = bars_.emplace(key, std::move(e)).first;
    attempt_of_[u.key] = u.attempt;
    bars_of_task_[u.key].push_back(u.bar_no);
  } else {
    Entry& e = it->second;
    const double dt = std::chrono::duration<double>(now - e.last_update).count();
    const double age = static_cast<double>(u.elapsed_ms) / 1000.0;
    const double tau = std::chrono::duration<double>(options_.rate_time_constant).count();
    if (u.closed() || age < tau) {
      // Young bars: the average since the start is the best estimate; finished bars show
      // their overall average.
      e.rate = age > 0 ? static_cast<double>(u.count) / age : 0;
    } else if (u.count < e.state.count) {
      e.rate = 0;  // restarted from zero
    } else if (dt > 0) {
      const double inst = static_cast<double>(u.count - e.state.count) / dt;
      e.rate += (1.0 - std::exp(-dt / tau)) * (inst - e.rate);
    }
    // A closed bar stays closed, except one marked lost whose worker is heard from again.
    const bool reopened = e.state.phase == protocol::BarPhase::kLost && !u.closed();
    const bool was_closed = e.state.closed() && !reopened;
    const protocol::BarPhase phase = was_closed ? e.state.phase : u.phase;
    e.state = u;
    e.state.phase = phase;
    e.last_update = now;
    if (reopened) e.closed_at = TimePoint{};  // its entry in closed_ goes stale
  }
  Entry& e = it->second;
  e.source = source;
  if (e.state.closed() && e.closed_at == TimePoint{}) {
    e.closed_at = now;
    closed_.emplace_back(now, key);
  }
  if (!e.changed) {
    e.changed = true;
    changed_.push_back(key);
  }
}

size_t ProgressStore::mark_lost(uint32_t source, TimePoint now) {
  size_t n = 0;
  for (auto& [key, e] : bars_) {
    if (e.source != source || e.state.closed()) continue;
    e.state.phase = protocol::BarPhase::kLost;
    e.closed_at = now;
    closed_.emplace_back(now, key);
    if (!e.changed) {
      e.changed = true;
      changed_.push_back(key);
    }
    ++n;
  }
  return n;
}

void ProgressStore::drop_task_bars(const protocol::TaskKey& task, uint32_t below_attempt) {
  auto n = bars_of_task_.find(task);
  if (n == bars_of_task_.end()) return;
  for (uint32_t bar : n->second) {
    auto it = bars_.find(Key{task, bar});
    if (it != bars_.end() && it->second.state.attempt < below_attempt) bars_.erase(it);
  }
  bars_of_task_.erase(n);
  attempt_of_.erase(task);
}

void ProgressStore::erase_bar(const Key& key) {
  bars_.erase(key);
  auto n = bars_of_task_.find(key.task);
  if (n == bars_of_task_.end()) return;
  auto& v = n->second;
  v.erase(std::remove(v.begin(), v.end(), key.bar_no), v.end());
  if (v.empty()) {
    bars_of_task_.erase(n);
    attempt_of_.erase(key.task);
  }
}

bool ProgressStore::make_room() {
  while (!closed_.empty()) {
    const auto [at, key] = closed_.front();
    closed_.pop_front();
    auto it = bars_.find(key);
    if (it == bars_.end() || it->second.closed_at != at) continue;  // replaced since
    erase_bar(key);
    return true;
  }
  return false;
}

void ProgressStore::fill(const Entry& e, TimePoint now, protocol::BarState& out) const {
  out = e.state;
  const auto end = e.state.closed() ? e.closed_at : now;
  out.elapsed_ms = static_cast<uint64_t>(std::max<int64_t>(0, to_ms(end - e.started)));
  out.rate = e.rate;
  if (!e.state.closed() && e.state.total > e.state.count && e.rate > 0) {
    out.eta_seconds = static_cast<double>(e.state.total - e.state.count) / e.rate;
  } else {
    out.eta_seconds =
        e.state.closed() || (e.state.total && e.state.count >= e.state.total) ? 0 : -1;
  }
}

std::vector<protocol::BarState> ProgressStore::take_changes(TimePoint now) {
  std::vector<protocol::BarState> out;
  out.reserve(changed_.size());
  for (const Key& k : changed_) {
    auto it = bars_.find(k);
    if (it == bars_.end() || !it->second.changed) continue;
    it->second.changed = false;
    out.emplace_back();
    fill(it->second, now, out.back());
  }
  changed_.clear();
  return out;
}

std::vector<protocol::BarState> ProgressStore::snapshot(
    TimePoint now, const std::function<bool(uint64_t)>& filter) const {
  std::vector<protocol::BarState> out;
  for (const auto& [k, e] : bars_) {
    if (filter && !filter(k.task.session)) continue;
    out.emplace_back();
    fill(e, now, out.back());
  }
  return out;
}

void ProgressStore::expire(TimePoint now) {
  while (!closed_.empty() && closed_.front().first + options_.keep_closed <= now) {
    const auto [at, key] = closed_.front();
    closed_.pop_front();
    auto it = bars_.find(key);
    if (it == bars_.end() || it->second.closed_at != at) continue;  // replaced since
    erase_bar(key);
  }
}

TimePoint ProgressStore::next_expiry() const {
  return closed_.empty() ? TimePoint::max() : closed_.front().first + options_.keep_closed;
}

}  // namespace lrts::progress_server
