// Encoding and decoding of every protocol message, from the descriptions in messages.hpp,
// progress_messages.hpp and slot_messages.hpp. A message is one MessagePack array
// `[version, type, fields...]`.
//
// Decoders validate strictly — version, type (only those the receiver accepts), field count,
// types, ranges, lengths, counts, no trailing bytes, at most `max_bytes` — and fail with a code
// and a one-line text. They never throw and never read past the input.
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "common/result.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/wire.hpp"

namespace lrts::protocol {

enum class DecodeCode : uint8_t {
  kTooLarge = 1,    // over the receiver's size limit
  kNotLrts = 2,     // not [version, type, ...]
  kVersion = 3,     // another protocol version
  kUnexpected = 4,  // a type this receiver does not take
  kMalformed = 5,   // fields of the wrong type, count or range
};

struct DecodeError {
  DecodeCode code = DecodeCode::kMalformed;
  std::string text;
};

template <class V>
using Decoded = Expected<V, DecodeError>;

template <class M>
void encode(const M& m, std::string& out) {
  mp::Writer w(out);
  w.array(2 + wire::wire_count<M>());
  w.uint(kVersion);
  w.uint(static_cast<uint8_t>(M::kType));
  wire::put_fields(w, m);
}

// Encodes with binaries of at least `threshold` bytes left out (see mp::External).
template <class M>
void encode(const M& m, std::string& out, std::vector<mp::External>* external, size_t threshold) {
  mp::Writer w(out, external, threshold);
  w.array(2 + wire::wire_count<M>());
  w.uint(kVersion);
  w.uint(static_cast<uint8_t>(M::kType));
  wire::put_fields(w, m);
}

template <class... Ms>
void encode(const std::variant<Ms...>& v, std::string& out) {
  std::visit([&](const auto& m) { encode(m, out); }, v);
}

namespace detail {

template <class V, size_t I = 0>
bool decode_alternative(uint8_t type, uint32_t nfields, mp::Reader& r, V& out, const char** name) {
  if constexpr (I < std::variant_size_v<V>) {
    using M = std::variant_alternative_t<I, V>;
    if (static_cast<uint8_t>(M::kType) != type) {
      return decode_alternative<V, I + 1>(type, nfields, r, out, name);
    }
    *name = M::kName;
    M m;
    if (nfields != wire::wire_count<M>()) {
      r.fail("wrong number of fields");
    } else {
      wire::get_fields(r, m);
    }
    out = std::move(m);
    return true;
  } else {
    return false;
  }
}

}  // namespace detail

// Decodes one message that must be one of V's alternatives.
template <class V>
Decoded<V> decode(std::string_view bytes, size_t max_bytes = kDefaultMaxMessageBytes) {
  if (bytes.size() > max_bytes) {
    return DecodeError{DecodeCode::kTooLarge, "message of " + std::to_string(bytes.size()) +
                                                  " bytes exceeds the limit of " +
                                                  std::to_string(max_bytes)};
  }
  mp::Reader r(bytes);
  const uint32_t n = r.array();
  if (!r.ok() || n < 2) {
    return DecodeError{DecodeCode::kNotLrts, "not an lrts message (expected [version, type, ...])"};
  }
  const uint64_t version = r.uint();
  if (!r.ok()) return DecodeError{DecodeCode::kNotLrts, "not an lrts message (bad version field)"};
  if (version != kVersion) {
    return DecodeError{DecodeCode::kVersion, "protocol version " + std::to_string(version) +
                                                 " is not supported (this side speaks version " +
                                                 std::to_string(kVersion) + ")"};
  }
  const uint64_t type = r.uint_max(255);
  if (!r.ok()) return DecodeError{DecodeCode::kNotLrts, "bad message type field"};
  V out;
  const char* name = "";
  if (!detail::decode_alternative<V>(static_cast<uint8_t>(type), n - 2, r, out, &name)) {
    return DecodeError{DecodeCode::kUnexpected,
                       "unexpected message type " + std::to_string(type) + " here"};
  }
  if (r.ok() && !r.at_end()) r.fail("trailing bytes after message");
  if (!r.ok()) {
    return DecodeError{DecodeCode::kMalformed, std::string("malformed ") + name + ": " + r.error()};
  }
  return out;
}

}  // namespace lrts::protocol
