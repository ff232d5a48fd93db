// Time as the components see it. Pure components (the scheduler core) never read a clock: the
// caller passes `TimePoint now` with every event, so tests drive time by hand.
#pragma once

#include <chrono>
#include <cstdint>

namespace lrts {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;
using std::chrono::milliseconds;
using std::chrono::nanoseconds;
using std::chrono::seconds;

inline int64_t to_ns(Duration d) { return std::chrono::duration_cast<nanoseconds>(d).count(); }
inline int64_t to_ms(Duration d) {
  return std::chrono::duration_cast<milliseconds>(d).count();
}

// Wall-clock milliseconds since the Unix epoch (for records that outlive a process).
inline int64_t wall_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace lrts
