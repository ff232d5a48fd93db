// Task identity: a task is (application session, sequence number within it). The application
// makes both, so schedule_service returns the id at once. Users see it as the service id
// "<session as 16 lower-case hex digits>-<seq in decimal>".
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace lrts::protocol {

struct TaskKey {
  uint64_t session = 0;
  uint64_t seq = 0;
  friend bool operator==(const TaskKey&, const TaskKey&) = default;
  friend auto operator<=>(const TaskKey&, const TaskKey&) = default;
};

struct TaskKeyHash {
  size_t operator()(const TaskKey& k) const noexcept {
    uint64_t h = k.session * 0x9E3779B97F4A7C15ULL ^ (k.seq + 0x632BE59BD9B4E019ULL);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

std::string format_service_id(TaskKey key);
// False on anything that format_service_id would not produce.
bool parse_service_id(std::string_view id, TaskKey* key);

}  // namespace lrts::protocol

template <>
struct std::hash<lrts::protocol::TaskKey> : lrts::protocol::TaskKeyHash {};
