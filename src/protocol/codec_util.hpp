// Helpers shared by the protocol's encoders and decoders. Internal to src/protocol.
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::protocol::detail {

inline void header(mp::Writer& w, MsgType type, uint32_t fields) {
  w.array(2 + fields);
  w.uint(kVersion);
  w.uint(static_cast<uint8_t>(type));
}

// How a decoder's error about another protocol version begins.
inline constexpr std::string_view kVersionError = "protocol version ";

struct Header {
  uint8_t type = 0;
  uint32_t fields = 0;
};

// Reads `[version, type, ...]`: the type and the number of fields after it.
inline Result<Header> read_header(mp::Reader& r, std::string_view bytes, size_t max_bytes) {
  if (bytes.size() > max_bytes) {
    return make_error("message of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                      std::to_string(max_bytes));
  }
  const uint32_t n = r.array();
  if (!r.ok() || n < 2) return make_error("not an lrts message (expected [version, type, ...])");
  const uint64_t version = r.uint();
  if (!r.ok()) return make_error("not an lrts message (bad version field)");
  if (version != kVersion) {
    return make_error(std::string(kVersionError) + std::to_string(version) +
                      " is not supported (this side speaks version " + std::to_string(kVersion) +
                      ")");
  }
  const uint64_t type = r.uint_max(255);
  if (!r.ok()) return make_error("bad message type field");
  return Header{static_cast<uint8_t>(type), n - 2};
}

template <class T, class V>
Result<T> finish(mp::Reader& r, V&& value, const char* what) {
  if (r.ok() && !r.at_end()) r.fail("trailing bytes after message");
  if (!r.ok()) return make_error(std::string("malformed ") + what + ": " + r.error());
  return T(std::forward<V>(value));
}

inline bool expect_fields(mp::Reader& r, const Header& h, uint32_t n) {
  if (h.fields != n) {
    r.fail("wrong number of fields");
    return false;
  }
  return true;
}

// A bar's own values, as workers, slots and the progress server send them (7 fields, after
// whatever identifies the bar's task): bar_no, description, unit, count, total, closed, elapsed.
inline constexpr uint32_t kBarValueFields = 7;

inline void write_bar_values(mp::Writer& w, const BarState& b) {
  w.uint(b.bar_no);
  w.str(b.description);
  w.str(b.unit);
  w.uint(b.count);
  w.uint(b.total);
  w.boolean(b.closed);
  w.uint(b.elapsed_ms);
}

inline void read_bar_values(mp::Reader& r, BarState& b) {
  b.bar_no = static_cast<uint32_t>(r.uint_max(kMaxBarsPerTask - 1));
  b.description.assign(r.str());
  b.unit.assign(r.str());
  b.count = r.uint();
  b.total = r.uint();
  b.closed = r.boolean();
  b.elapsed_ms = r.uint();
}

}  // namespace lrts::protocol::detail
