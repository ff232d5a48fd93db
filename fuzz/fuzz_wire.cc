// Every wire decoder on arbitrary bytes: decoding never crashes, and what decodes encodes and
// decodes again to the same bytes (one description drives both directions).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/progress_messages.hpp"
#include "protocol/slot_messages.hpp"

namespace {

template <class Variant>
void round_trip(std::string_view bytes) {
  auto first = lrts::protocol::decode<Variant>(bytes, 1u << 20);
  if (!first) return;
  std::string again;
  std::visit([&](const auto& m) { lrts::protocol::encode(m, again); }, *first);
  auto second = lrts::protocol::decode<Variant>(again, 1u << 20);
  if (!second) std::abort();  // we wrote something we cannot read
  std::string third;
  std::visit([&](const auto& m) { lrts::protocol::encode(m, third); }, *second);
  if (third != again) std::abort();  // not a fixed point
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  using namespace lrts::protocol;
  round_trip<ToScheduler>(bytes);
  round_trip<ToApp>(bytes);
  round_trip<ToWorker>(bytes);
  round_trip<ToSlot>(bytes);
  round_trip<FromSlot>(bytes);
  round_trip<ToProgressServer>(bytes);
  round_trip<ToProgressWorker>(bytes);
  round_trip<ToProgressSubscriber>(bytes);
  return 0;
}
