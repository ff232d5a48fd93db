// The slot protocol: what a worker and its slot processes say over their socketpair, one
// struct per message kind (described once, protocol/wire.hpp). A stream of frames, each a
// 4-byte little-endian length and one message `[version, type, ...]` (framing.hpp). It is
// language-neutral on purpose (docs/protocol.md): a slot in another language speaks these five.
//
// A slot runs the tasks it holds in the order received and reports results in that order. A
// RECALL asks for tasks back that have not started; the slot answers RECALLED with those it
// removed (a task already running or finished is not among them). To stop a slot the worker
// closes its end (the slot exits on end of file) or kills it.
#pragma once

#include <cstdint>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "protocol/progress_messages.hpp"

namespace lrts::protocol {

struct SlotHello {
  static constexpr MsgType kType = MsgType::kSlotHello;
  static constexpr const char* kName = "slot hello";
  uint32_t pid = 0;
  std::vector<std::string_view> services;
  std::string_view error;  // non-empty: the slot could not start (e.g. a library failed to load)
  static constexpr auto describe() {
    return std::tuple{wire::u(&SlotHello::pid),
                      wire::strs(&SlotHello::services, kMaxServicesPerWorker, kMaxNameBytes),
                      wire::str(&SlotHello::error, 0, kMaxErrorTextBytes)};
  }
};

struct SlotTask {
  uint32_t ref = 0;  // the worker's handle for this task
  std::string_view name;
  std::string_view fields;
  std::string_view service_id;
  uint32_t attempt = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&SlotTask::ref), wire::str(&SlotTask::name, 0, kMaxNameBytes),
                      wire::bin(&SlotTask::fields), wire::str(&SlotTask::service_id, 0, 64),
                      wire::u(&SlotTask::attempt)};
  }
};

struct SlotRun {
  static constexpr MsgType kType = MsgType::kSlotRun;
  static constexpr const char* kName = "slot run";
  std::vector<SlotTask> tasks;
  static constexpr auto describe() { return std::tuple{wire::list(&SlotRun::tasks)}; }
};

struct SlotResult {
  uint32_t ref = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string_view payload;
  uint64_t run_ns = 0;
  std::vector<BarState> bars;  // final state; key and attempt are left zero (they are the task's)
  static constexpr auto describe() {
    return std::tuple{wire::u(&SlotResult::ref), wire::u(&SlotResult::status, kMaxTaskStatus),
                      wire::bin(&SlotResult::payload), wire::u(&SlotResult::run_ns),
                      wire::list(&SlotResult::bars, kMaxBarsPerTask)};
  }
};

struct SlotResults {
  static constexpr MsgType kType = MsgType::kSlotResults;
  static constexpr const char* kName = "slot results";
  std::vector<SlotResult> items;
  static constexpr auto describe() { return std::tuple{wire::list(&SlotResults::items)}; }
};

// RECALL (worker -> slot) and RECALLED (slot -> worker): refs of tasks not yet started.
template <MsgType T>
struct SlotRefs {
  static constexpr MsgType kType = T;
  static constexpr const char* kName = "slot refs";
  std::vector<uint32_t> refs;
  static constexpr auto describe() { return std::tuple{wire::uints(&SlotRefs::refs)}; }
};
using SlotRecall = SlotRefs<MsgType::kSlotRecall>;
using SlotRecalled = SlotRefs<MsgType::kSlotRecalled>;

using ToSlot = std::variant<SlotRun, SlotRecall>;
using FromSlot = std::variant<SlotHello, SlotResults, SlotRecalled>;

}  // namespace lrts::protocol
