// The worker's --max-result-mb rule, in one place: the slot applies it before it sends a result
// (so an oversized one is never copied), and the worker again on what a slot sends.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

namespace lrts::worker {

// The limit is on what the service returns: the few bytes of encoding around it (a result
// struct's other fields, lengths) are not counted, so a result of exactly the limit passes.
inline constexpr uint64_t kResultEncodingAllowance = 64 << 10;

inline bool over_result_limit(uint64_t size, uint64_t limit) {
  return limit != 0 && size > limit + kResultEncodingAllowance;
}

// The failed task's error: its size and the limit.
inline std::string result_limit_error(uint64_t size, uint64_t limit) {
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "the result of %.1f MB is larger than the worker's --max-result-mb limit of "
                "%.1f MB",
                static_cast<double>(size) / (1024.0 * 1024.0),
                static_cast<double>(limit) / (1024.0 * 1024.0));
  return buf;
}

}  // namespace lrts::worker
