#include "client/board.hpp"

#include <algorithm>

namespace lrts::client {

namespace {

std::string unknown_id(const std::string& id) {
  return "unknown service id " + id + " (not scheduled by this application, or already collected)";
}

}  // namespace

void ResultBoard::add_pending(const TaskKey& key) {
  MutexLock lock(mu_);
  pending_.insert(key);
  ++scheduled_;
}

void ResultBoard::drop_pending(const TaskKey& key) {
  MutexLock lock(mu_);
  pending_.erase(key);
}

bool ResultBoard::is_pending(const TaskKey& key) const {
  MutexLock lock(mu_);
  return pending_.count(key) != 0;
}

void ResultBoard::deliver(const TaskKey& key, ServiceResult result) {
  MutexLock lock(mu_);
  pending_.erase(key);
  for (auto* sub : subscriptions_) {
    if (sub->wanted.erase(key)) {
      sub->arrived.push_back(std::move(result));
      cv_.notify_all();
      return;
    }
  }
  ready_.insert_or_assign(key, std::move(result));
  cv_.notify_all();
}

void ResultBoard::adopt(const std::vector<TaskKey>& keys) {
  MutexLock lock(mu_);
  for (const TaskKey& k : keys) {
    if (!ready_.count(k)) pending_.insert(k);
  }
  cv_.notify_all();
}

std::vector<TaskKey> ResultBoard::take_collected() {
  MutexLock lock(mu_);
  std::vector<TaskKey> out;
  out.swap(collected_);
  return out;
}

void ResultBoard::collect_locked(const TaskKey& key) {
  const bool first = collected_.empty();
  collected_.push_back(key);
  if (first && wake_io_) wake_io_();
}

void ResultBoard::set_connected(bool connected) {
  MutexLock lock(mu_);
  connected_ = connected;
  cv_.notify_all();
}

void ResultBoard::set_acknowledged(uint64_t total) {
  MutexLock lock(mu_);
  acked_ = total;
  cv_.notify_all();
}

void ResultBoard::fail(const std::string& why) {
  MutexLock lock(mu_);
  fatal_ = why;
  cv_.notify_all();
}

void ResultBoard::close() {
  MutexLock lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

void ResultBoard::notify() {
  MutexLock lock(mu_);
  cv_.notify_all();
}

void ResultBoard::check_usable() const {
  if (!fatal_.empty()) throw std::runtime_error("lrts application: " + fatal_);
  if (closed_) throw std::runtime_error("lrts application is stopped");
}

template <class Pred>
void ResultBoard::wait_until(TimePoint deadline, Pred pred, const std::string& what) {
  while (!pred()) {
    check_usable();
    if (!cv_.wait_until(mu_, deadline) && !pred()) {
      throw TimeoutError("timed out waiting for " + what);
    }
  }
}

ServiceResult ResultBoard::wait_for(const TaskKey& key, const std::string& id, TimePoint deadline) {
  MutexLock lock(mu_);
  if (!ready_.count(key) && !pending_.count(key)) throw std::invalid_argument(unknown_id(id));
  wait_until(
      deadline, [&]() LRTS_REQUIRES(mu_) { return ready_.count(key) != 0 || !pending_.count(key); },
      id);
  auto it = ready_.find(key);
  if (it == ready_.end()) {
    throw std::invalid_argument("result of " + id + " was collected by another caller");
  }
  ServiceResult r = std::move(it->second);
  ready_.erase(it);
  collect_locked(key);
  return r;
}

std::vector<ServiceResult> ResultBoard::wait_for_multi(const std::vector<TaskKey>& keys,
                                                       const std::vector<std::string>& ids,
                                                       TimePoint deadline) {
  MutexLock lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!ready_.count(keys[i]) && !pending_.count(keys[i])) {
      throw std::invalid_argument(unknown_id(ids[i]));
    }
  }
  size_t have = 0;
  wait_until(
      deadline,
      [&]() LRTS_REQUIRES(mu_) {
        for (; have < keys.size(); ++have) {
          if (!ready_.count(keys[have])) {
            if (!pending_.count(keys[have])) {
              throw std::invalid_argument("result of " + ids[have] +
                                          " was collected by another caller");
            }
            return false;
          }
        }
        return true;
      },
      "results");
  std::vector<ServiceResult> out;
  out.reserve(keys.size());
  for (const auto& key : keys) {
    auto it = ready_.find(key);
    out.push_back(std::move(it->second));
    ready_.erase(it);
    collect_locked(key);
  }
  return out;
}

std::unique_ptr<CompletionRange::State> ResultBoard::subscribe(const std::vector<TaskKey>& keys,
                                                               const std::vector<std::string>& ids,
                                                               TimePoint deadline,
                                                               std::shared_ptr<ResultBoard> self) {
  auto state = std::make_unique<CompletionRange::State>();
  state->board = std::move(self);
  state->deadline = deadline;
  MutexLock lock(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!ready_.count(keys[i]) && !pending_.count(keys[i])) {
      throw std::invalid_argument(unknown_id(ids[i]));
    }
  }
  for (const auto& key : keys) {
    auto it = ready_.find(key);
    if (it != ready_.end()) {
      state->arrived.push_back(std::move(it->second));
      ready_.erase(it);
    } else {
      state->wanted.insert(key);
    }
    ++state->remaining;
  }
  subscriptions_.push_back(state.get());
  return state;
}

void ResultBoard::unsubscribe(CompletionRange::State* state) {
  MutexLock lock(mu_);
  std::erase(subscriptions_, state);
  // Results that arrived for this range but were not taken stay collectable.
  for (auto& r : state->arrived) {
    TaskKey key;
    if (protocol::parse_service_id(r.service_id(), &key)) ready_.emplace(key, std::move(r));
  }
  state->arrived.clear();
}

std::optional<ServiceResult> ResultBoard::next(CompletionRange::State& s) {
  MutexLock lock(mu_);
  if (s.remaining == 0) return std::nullopt;
  wait_until(
      s.deadline, [&] { return !s.arrived.empty(); }, "completed results");
  ServiceResult r = std::move(s.arrived.front());
  s.arrived.pop_front();
  --s.remaining;
  TaskKey key;
  if (protocol::parse_service_id(r.service_id(), &key)) collect_locked(key);
  return r;
}

std::vector<ServiceResult> ResultBoard::next_batch(CompletionRange::State& s, size_t max,
                                                   TimePoint deadline) {
  MutexLock lock(mu_);
  std::vector<ServiceResult> out;
  if (s.remaining == 0 || max == 0) return out;
  wait_until(
      std::min(s.deadline, deadline), [&] { return !s.arrived.empty(); }, "completed results");
  while (!s.arrived.empty() && out.size() < max) {
    out.push_back(std::move(s.arrived.front()));
    s.arrived.pop_front();
    --s.remaining;
    TaskKey key;
    if (protocol::parse_service_id(out.back().service_id(), &key)) collect_locked(key);
  }
  return out;
}

size_t ResultBoard::remaining(const CompletionRange::State& s) const {
  MutexLock lock(mu_);
  return s.remaining;
}

bool ResultBoard::connected() const {
  MutexLock lock(mu_);
  return connected_;
}

bool ResultBoard::wait_connected(TimePoint deadline) {
  MutexLock lock(mu_);
  while (!connected_ && fatal_.empty() && !closed_) {
    if (!cv_.wait_until(mu_, deadline)) break;
  }
  return connected_;
}

bool ResultBoard::wait_acknowledged(TimePoint deadline) {
  MutexLock lock(mu_);
  const uint64_t target = scheduled_;
  try {
    wait_until(
        deadline, [&]() LRTS_REQUIRES(mu_) { return acked_ >= target; }, "acknowledgements");
  } catch (const TimeoutError&) {
    return false;
  }
  return true;
}

std::vector<TaskKey> ResultBoard::outstanding() const {
  MutexLock lock(mu_);
  std::vector<TaskKey> keys(pending_.begin(), pending_.end());
  for (const auto& [key, r] : ready_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

size_t ResultBoard::ready_count() const {
  MutexLock lock(mu_);
  return ready_.size();
}

std::vector<ServiceResult> ResultBoard::take_ready() {
  MutexLock lock(mu_);
  std::vector<TaskKey> keys;
  for (const auto& [key, r] : ready_) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  std::vector<ServiceResult> out;
  for (const auto& key : keys) {
    out.push_back(std::move(ready_[key]));
    ready_.erase(key);
    collect_locked(key);
  }
  return out;
}

}  // namespace lrts::client
