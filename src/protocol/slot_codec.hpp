// The slot protocol: what a worker and its slot processes say over their socketpair.
//
// A stream of frames, each a 4-byte little-endian length followed by one MessagePack message
// `[version, type, ...]`. It is language-neutral on purpose (docs/protocol.md): a slot written in
// another language only has to speak these three messages.
//   slot -> worker  kSlotHello   [v, 64, pid, [service names], error]   once, after loading code
//   worker -> slot  kSlotRun     [v, 65, [[ref, name, fields(bin), service_id, attempt], ...]]
//   slot -> worker  kSlotResults [v, 66, [[ref, status, payload(bin), run_ns, bars], ...]]
//                   bars: final state of the task's progress bars,
//                   [[bar_no, description, unit, count, total, closed, elapsed_ms], ...]
// The slot runs tasks in the order received and reports results in that order. To stop a slot
// the worker closes its end (the slot exits on end of file) or kills it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.hpp"
#include "protocol/messages.hpp"

namespace lrts::protocol {

inline constexpr size_t kFrameHeaderBytes = 4;

struct SlotHello {
  uint32_t pid = 0;
  std::vector<std::string_view> services;
  std::string_view error;  // non-empty: the slot could not start (e.g. a library failed to load)
};

struct SlotTask {
  uint32_t ref = 0;  // the worker's handle for this task
  std::string_view name;
  std::string_view fields;
  std::string_view service_id;
  uint32_t attempt = 0;
};

struct SlotRun {
  std::vector<SlotTask> tasks;
};

struct SlotResult {
  uint32_t ref = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string_view payload;
  uint64_t run_ns = 0;
  std::vector<BarState> bars;  // key and attempt are left empty: they are the task's
};

struct SlotResults {
  std::vector<SlotResult> items;
};

using FromSlot = std::variant<SlotHello, SlotResults>;

// Encoders append one complete frame (length prefix included).
void encode_frame(const SlotHello& m, std::string& out);
void encode_frame(const SlotRun& m, std::string& out);
void encode_frame(const SlotResults& m, std::string& out);

// Decoders take a frame body (without the length prefix).
Result<FromSlot> decode_from_slot(std::string_view body, size_t max_bytes);
Result<SlotRun> decode_to_slot(std::string_view body, size_t max_bytes);

// Accumulates bytes read from a stream and cuts them into frames.
class FrameBuffer {
 public:
  explicit FrameBuffer(size_t max_frame) : max_frame_(max_frame) {}
  // Space to read into; call commit(n) after writing n bytes there.
  char* prepare(size_t n);
  void commit(size_t n) { size_ += n; }
  // The next complete frame body, if any. The view stays valid until the next prepare().
  // Fails if a frame announces more than max_frame bytes.
  Result<bool> next(std::string_view* body);

 private:
  std::string buf_;
  size_t start_ = 0;
  size_t size_ = 0;  // bytes in use in buf_, from 0
  size_t max_frame_;
};

}  // namespace lrts::protocol
