#include "protocol/msgpack_io.hpp"

#include <bit>

namespace lrts::protocol::mp {

// ---- Writer ---------------------------------------------------------------------------------

void Writer::put_be(uint64_t v, int bytes) {
  char b[8];
  for (int i = bytes - 1; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out_.append(b, static_cast<size_t>(bytes));
}

void Writer::array(uint32_t n) {
  if (n < 16) {
    put8(static_cast<uint8_t>(0x90 | n));
  } else if (n <= 0xffff) {
    put8(0xdc);
    put_be(n, 2);
  } else {
    put8(0xdd);
    put_be(n, 4);
  }
}

void Writer::map(uint32_t n) {
  if (n < 16) {
    put8(static_cast<uint8_t>(0x80 | n));
  } else if (n <= 0xffff) {
    put8(0xde);
    put_be(n, 2);
  } else {
    put8(0xdf);
    put_be(n, 4);
  }
}

void Writer::uint(uint64_t v) {
  if (v < 128) {
    put8(static_cast<uint8_t>(v));
  } else if (v <= 0xff) {
    put8(0xcc);
    put8(static_cast<uint8_t>(v));
  } else if (v <= 0xffff) {
    put8(0xcd);
    put_be(v, 2);
  } else if (v <= 0xffffffffULL) {
    put8(0xce);
    put_be(v, 4);
  } else {
    put8(0xcf);
    put_be(v, 8);
  }
}

void Writer::sint(int64_t v) {
  if (v >= 0) return uint(static_cast<uint64_t>(v));
  if (v >= -32) {
    put8(static_cast<uint8_t>(v));
  } else if (v >= INT8_MIN) {
    put8(0xd0);
    put8(static_cast<uint8_t>(v));
  } else if (v >= INT16_MIN) {
    put8(0xd1);
    put_be(static_cast<uint16_t>(v), 2);
  } else if (v >= INT32_MIN) {
    put8(0xd2);
    put_be(static_cast<uint32_t>(v), 4);
  } else {
    put8(0xd3);
    put_be(static_cast<uint64_t>(v), 8);
  }
}

void Writer::f64(double v) {
  put8(0xcb);
  put_be(std::bit_cast<uint64_t>(v), 8);
}

void Writer::str(std::string_view s) {
  const size_t n = s.size();
  if (n < 32) {
    put8(static_cast<uint8_t>(0xa0 | n));
  } else if (n <= 0xff) {
    put8(0xd9);
    put8(static_cast<uint8_t>(n));
  } else if (n <= 0xffff) {
    put8(0xda);
    put_be(n, 2);
  } else {
    put8(0xdb);
    put_be(n, 4);
  }
  out_.append(s);
}

void Writer::bin(std::string_view b) {
  const size_t n = b.size();
  if (n <= 0xff) {
    put8(0xc4);
    put8(static_cast<uint8_t>(n));
  } else if (n <= 0xffff) {
    put8(0xc5);
    put_be(n, 2);
  } else {
    put8(0xc6);
    put_be(n, 4);
  }
  if (external_ && n >= threshold_) {
    external_->push_back({out_.size(), b});
  } else {
    out_.append(b);
  }
}

// ---- Reader ---------------------------------------------------------------------------------

uint64_t Reader::get_be(int bytes) {
  if (!need(static_cast<size_t>(bytes))) return 0;
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | static_cast<uint8_t>(p_[i]);
  p_ += bytes;
  return v;
}

std::string_view Reader::take(size_t n) {
  if (!need(n)) return {};
  std::string_view v(p_, n);
  p_ += n;
  return v;
}

uint32_t Reader::container(bool is_map) {
  if (!need(1)) return 0;
  const uint8_t b = static_cast<uint8_t>(*p_);
  uint32_t n = 0;
  if (!is_map && (b & 0xf0) == 0x90) {
    ++p_;
    n = b & 0x0f;
  } else if (is_map && (b & 0xf0) == 0x80) {
    ++p_;
    n = b & 0x0f;
  } else if (b == (is_map ? 0xde : 0xdc)) {
    ++p_;
    n = static_cast<uint32_t>(get_be(2));
  } else if (b == (is_map ? 0xdf : 0xdd)) {
    ++p_;
    n = static_cast<uint32_t>(get_be(4));
  } else {
    fail(is_map ? "expected a map" : "expected an array");
    return 0;
  }
  const uint64_t min_bytes = is_map ? 2ULL * n : n;
  if (min_bytes > remaining()) {
    fail("container length exceeds message");
    return 0;
  }
  return n;
}

uint32_t Reader::array() { return container(false); }
uint32_t Reader::map() { return container(true); }

void Reader::expect_array(uint32_t n) {
  const uint32_t got = array();
  if (ok() && got != n) fail("array has the wrong number of fields");
}

void Reader::nil() {
  if (!need(1)) return;
  if (static_cast<uint8_t>(*p_) != 0xc0) return fail("expected nil");
  ++p_;
}

bool Reader::boolean() {
  if (!need(1)) return false;
  const uint8_t b = static_cast<uint8_t>(*p_);
  if (b == 0xc2 || b == 0xc3) {
    ++p_;
    return b == 0xc3;
  }
  fail("expected a boolean");
  return false;
}

uint64_t Reader::uint() {
  if (!need(1)) return 0;
  const uint8_t b = static_cast<uint8_t>(*p_);
  if (b < 0x80) {
    ++p_;
    return b;
  }
  switch (b) {
    case 0xcc:
      ++p_;
      return get_be(1);
    case 0xcd:
      ++p_;
      return get_be(2);
    case 0xce:
      ++p_;
      return get_be(4);
    case 0xcf:
      ++p_;
      return get_be(8);
    default:
      fail("expected an unsigned integer");
      return 0;
  }
}

uint64_t Reader::uint_max(uint64_t max) {
  const uint64_t v = uint();
  if (v > max) {
    fail("integer out of range");
    return 0;
  }
  return v;
}

int64_t Reader::sint() {
  if (!need(1)) return 0;
  const uint8_t b = static_cast<uint8_t>(*p_);
  if (b < 0x80) {
    ++p_;
    return b;
  }
  if (b >= 0xe0) {
    ++p_;
    return static_cast<int8_t>(b);
  }
  switch (b) {
    case 0xcc:
      ++p_;
      return static_cast<int64_t>(get_be(1));
    case 0xcd:
      ++p_;
      return static_cast<int64_t>(get_be(2));
    case 0xce:
      ++p_;
      return static_cast<int64_t>(get_be(4));
    case 0xcf: {
      ++p_;
      const uint64_t v = get_be(8);
      if (v > static_cast<uint64_t>(INT64_MAX)) {
        fail("integer out of range");
        return 0;
      }
      return static_cast<int64_t>(v);
    }
    case 0xd0:
      ++p_;
      return static_cast<int8_t>(get_be(1));
    case 0xd1:
      ++p_;
      return static_cast<int16_t>(get_be(2));
    case 0xd2:
      ++p_;
      return static_cast<int32_t>(get_be(4));
    case 0xd3:
      ++p_;
      return static_cast<int64_t>(get_be(8));
    default:
      fail("expected an integer");
      return 0;
  }
}

double Reader::f64() {
  if (!need(1)) return 0;
  const uint8_t b = static_cast<uint8_t>(*p_);
  if (b == 0xcb) {
    ++p_;
    return std::bit_cast<double>(get_be(8));
  }
  if (b == 0xca) {
    ++p_;
    return std::bit_cast<float>(static_cast<uint32_t>(get_be(4)));
  }
  const Type t = peek();
  if (t == Type::kUint) return static_cast<double>(uint());
  if (t == Type::kSint) return static_cast<double>(sint());
  fail("expected a number");
  return 0;
}

std::string_view Reader::str() {
  if (!need(1)) return {};
  const uint8_t b = static_cast<uint8_t>(*p_);
  if ((b & 0xe0) == 0xa0) {
    ++p_;
    return take(b & 0x1f);
  }
  switch (b) {
    case 0xd9:
      ++p_;
      return take(get_be(1));
    case 0xda:
      ++p_;
      return take(get_be(2));
    case 0xdb:
      ++p_;
      return take(get_be(4));
    default:
      fail("expected a string");
      return {};
  }
}

std::string_view Reader::bin() {
  if (!need(1)) return {};
  switch (static_cast<uint8_t>(*p_)) {
    case 0xc4:
      ++p_;
      return take(get_be(1));
    case 0xc5:
      ++p_;
      return take(get_be(2));
    case 0xc6:
      ++p_;
      return take(get_be(4));
    default:
      fail("expected binary data");
      return {};
  }
}

std::string_view Reader::bytes() { return peek() == Type::kBin ? bin() : str(); }

Reader::Type Reader::peek() const {
  if (!ok() || p_ >= end_) return Type::kInvalid;
  const uint8_t b = static_cast<uint8_t>(*p_);
  if (b < 0x80) return Type::kUint;
  if ((b & 0xf0) == 0x80) return Type::kMap;
  if ((b & 0xf0) == 0x90) return Type::kArray;
  if ((b & 0xe0) == 0xa0) return Type::kStr;
  if (b >= 0xe0) return Type::kSint;
  switch (b) {
    case 0xc0:
      return Type::kNil;
    case 0xc2:
    case 0xc3:
      return Type::kBool;
    case 0xc4:
    case 0xc5:
    case 0xc6:
      return Type::kBin;
    case 0xc7:
    case 0xc8:
    case 0xc9:
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      return Type::kExt;
    case 0xca:
    case 0xcb:
      return Type::kFloat;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
      return Type::kUint;
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
      return Type::kSint;
    case 0xd9:
    case 0xda:
    case 0xdb:
      return Type::kStr;
    case 0xdc:
    case 0xdd:
      return Type::kArray;
    case 0xde:
    case 0xdf:
      return Type::kMap;
    default:
      return Type::kInvalid;  // 0xc1 is never used
  }
}

void Reader::skip_depth(int depth) {
  if (depth > kMaxDepth) return fail("nesting too deep");
  switch (peek()) {
    case Type::kNil:
      nil();
      return;
    case Type::kBool:
      boolean();
      return;
    case Type::kUint:
      uint();
      return;
    case Type::kSint:
      sint();
      return;
    case Type::kFloat:
      f64();
      return;
    case Type::kStr:
      str();
      return;
    case Type::kBin:
      bin();
      return;
    case Type::kArray: {
      const uint32_t n = array();
      for (uint32_t i = 0; i < n && ok(); ++i) skip_depth(depth + 1);
      return;
    }
    case Type::kMap: {
      const uint32_t n = map();
      for (uint32_t i = 0; i < 2 * n && ok(); ++i) skip_depth(depth + 1);
      return;
    }
    case Type::kExt: {
      const uint8_t b = static_cast<uint8_t>(*p_++);
      size_t len = 0;
      switch (b) {
        case 0xd4:
          len = 1;
          break;
        case 0xd5:
          len = 2;
          break;
        case 0xd6:
          len = 4;
          break;
        case 0xd7:
          len = 8;
          break;
        case 0xd8:
          len = 16;
          break;
        case 0xc7:
          len = get_be(1);
          break;
        case 0xc8:
          len = get_be(2);
          break;
        case 0xc9:
          len = get_be(4);
          break;
      }
      take(len + 1);  // type byte + data
      return;
    }
    case Type::kInvalid:
      if (ok()) fail(p_ >= end_ ? "truncated message" : "invalid MessagePack byte");
      return;
  }
}

void Reader::skip() { skip_depth(0); }

std::string_view Reader::raw() {
  const char* start = p_;
  skip();
  if (!ok()) return {};
  return {start, static_cast<size_t>(p_ - start)};
}

}  // namespace lrts::protocol::mp
