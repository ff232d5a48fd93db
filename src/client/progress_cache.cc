#include "client/progress_cache.hpp"

#include "tui/view.hpp"

namespace lrts::client {

std::vector<ProgressSnapshot> ProgressCache::apply(const std::vector<protocol::BarState>& bars) {
  std::vector<ProgressSnapshot> changed;
  changed.reserve(bars.size());
  for (const auto& b : bars) changed.push_back(tui::to_snapshot(b));
  {
    MutexLock lock(mu_);
    for (size_t i = 0; i < changed.size(); ++i) store_locked(bars[i].key, changed[i]);
  }
  cv_.notify_all();
  return changed;
}

void ProgressCache::store_locked(const protocol::TaskKey& key, const ProgressSnapshot& p) {
  auto [it, fresh] = bars_.try_emplace(key);
  auto& tb = it->second;
  if (fresh) {
    order_.push_back(key);
    while (bars_.size() > kMaxTasks && !order_.empty()) {
      bars_.erase(order_.front());
      order_.pop_front();
    }
  }
  if (p.attempt < tb.attempt) return;
  if (p.attempt > tb.attempt) {
    tb.bars.clear();  // a retry starts its bars again
    tb.attempt = p.attempt;
  }
  if (tb.bars.size() <= p.bar) tb.bars.resize(static_cast<size_t>(p.bar) + 1);
  tb.bars[p.bar] = p;
}

std::vector<ProgressCache::Callback> ProgressCache::callbacks() const {
  MutexLock lock(mu_);
  return callbacks_;
}

void ProgressCache::add_callback(Callback cb) {
  MutexLock lock(mu_);
  callbacks_.push_back(std::move(cb));
}

std::vector<ProgressSnapshot> ProgressCache::of(const protocol::TaskKey& key) const {
  MutexLock lock(mu_);
  auto it = bars_.find(key);
  if (it == bars_.end()) return {};
  std::vector<ProgressSnapshot> out;
  for (const auto& b : it->second.bars) {
    if (!b.service_id.empty()) out.push_back(b);
  }
  return out;
}

std::vector<ProgressSnapshot> ProgressCache::all() const {
  MutexLock lock(mu_);
  std::vector<ProgressSnapshot> out;
  for (const auto& key : order_) {
    auto it = bars_.find(key);
    if (it == bars_.end()) continue;
    for (const auto& b : it->second.bars) {
      if (!b.service_id.empty()) out.push_back(b);
    }
  }
  return out;
}

void ProgressCache::wait_settled(TimePoint deadline,
                                 const std::function<bool(const protocol::TaskKey&)>& finished) {
  MutexLock lock(mu_);
  auto settled = [&]() LRTS_REQUIRES(mu_) {
    for (const auto& [key, tb] : bars_) {
      if (!finished(key)) continue;
      for (const auto& b : tb.bars) {
        if (!b.service_id.empty() && !b.closed) return false;
      }
    }
    return true;
  };
  while (!settled()) {
    if (!cv_.wait_until(mu_, deadline)) return;
  }
}

}  // namespace lrts::client
