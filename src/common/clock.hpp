// Time as the components see it. Pure components (the scheduler core) never read a clock: the
// caller passes `TimePoint now` with every event, so tests drive time by hand.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>

namespace lrts {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

inline int64_t to_ns(Duration d) { return std::chrono::duration_cast<nanoseconds>(d).count(); }
inline int64_t to_ms(Duration d) { return std::chrono::duration_cast<milliseconds>(d).count(); }
inline double to_seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

// Wall-clock milliseconds since the Unix epoch (for records that outlive a process).
inline int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "7 d", "36 h", "90 min", "45 s", "250 ms": the largest unit that divides it, for log lines.
inline std::string format_duration(Duration d) {
  const int64_t ms = to_ms(d);
  const std::pair<int64_t, const char*> units[] = {
      {86'400'000, "d"}, {3'600'000, "h"}, {60'000, "min"}, {1'000, "s"}};
  for (const auto& [size, name] : units) {
    if (ms >= size && ms % size == 0) return std::to_string(ms / size) + " " + name;
  }
  if (ms >= 1000) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms) + " ms";
}

}  // namespace lrts
