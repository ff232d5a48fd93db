// MessagePack to JSON (results printed by `lrts submit --wait` and `lrts results`) on arbitrary
// bytes: refused or printed, never a crash.
#include <cstdint>
#include <string_view>

#include "protocol/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)lrts::protocol::mp::to_json(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
