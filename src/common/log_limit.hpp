// LogLimiter: keeps a flood of one kind of warning (bad messages from one peer, say) from
// filling the disk: at most `burst` lines per key per `window`, then one line that says how many
// were left out. Keys are bounded too (the oldest is forgotten), so a peer cannot grow it.
// Time is passed in. Not thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/clock.hpp"

namespace lrts {

class LogLimiter {
 public:
  explicit LogLimiter(Duration window = seconds(10), uint32_t burst = 5, size_t max_keys = 1024)
      : window_(window), burst_(burst), max_keys_(max_keys) {}

  // Whether a line for `key` may be written now; `*suppressed` is how many lines for it were
  // left out since the last one written.
  bool allow(std::string_view key, TimePoint now, uint64_t* suppressed);

 private:
  struct State {
    TimePoint window_start;
    uint32_t in_window = 0;
    uint64_t suppressed = 0;
    std::list<std::string>::iterator order;
  };
  Duration window_;
  uint32_t burst_;
  size_t max_keys_;
  std::unordered_map<std::string, State> states_;
  std::list<std::string> order_;  // least recently used first
};

}  // namespace lrts
