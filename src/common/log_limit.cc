#include "common/log_limit.hpp"

namespace lrts {

bool LogLimiter::allow(std::string_view key, TimePoint now, uint64_t* suppressed) {
  *suppressed = 0;
  auto it = states_.find(std::string(key));
  if (it == states_.end()) {
    if (states_.size() >= max_keys_) {
      states_.erase(order_.front());
      order_.pop_front();
    }
    order_.emplace_back(key);
    it = states_.emplace(std::string(key), State{now, 0, 0, std::prev(order_.end())}).first;
  } else {
    order_.splice(order_.end(), order_, it->second.order);
  }
  State& s = it->second;
  if (now - s.window_start >= window_) {
    s.window_start = now;
    s.in_window = 0;
  }
  if (s.in_window >= burst_) {
    ++s.suppressed;
    return false;
  }
  ++s.in_window;
  *suppressed = s.suppressed;
  s.suppressed = 0;
  return true;
}

}  // namespace lrts
