// A small MessagePack writer and a strict, bounds-checked reader for the wire protocol.
//
// The reader never throws, never allocates and never reads past its buffer: every accessor
// returns a value and, on malformed input (wrong type, truncation, absurd lengths, nesting deeper
// than kMaxDepth), sets a sticky error after which all further reads return zero values. Decoders
// read a whole message and check ok() once at the end. Strings and binaries are returned as views
// into the input buffer (zero copy).
//
// User values (service fields and results) are encoded with msgpack-c in the public headers; the
// protocol only carries them as opaque, already-encoded objects (raw()).
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace lrts::protocol::mp {

// Where a Writer leaves large binaries instead of copying them: each entry is the position in
// the output where the bytes belong, and the bytes (which the caller keeps alive). A stream
// writer then sends the pieces in order (writev) without ever assembling them.
struct External {
  size_t at;
  std::string_view bytes;
};

class Writer {
 public:
  explicit Writer(std::string& out) : out_(out) {}
  // Binaries of at least `threshold` bytes go to `external` (their header stays in `out`).
  Writer(std::string& out, std::vector<External>* external, size_t threshold)
      : out_(out), external_(external), threshold_(threshold) {}

  void array(uint32_t n);
  void map(uint32_t n);
  void nil() { out_.push_back(static_cast<char>(0xc0)); }
  void boolean(bool b) { out_.push_back(static_cast<char>(b ? 0xc3 : 0xc2)); }
  void uint(uint64_t v);
  void sint(int64_t v);
  void f64(double v);
  void str(std::string_view s);
  void bin(std::string_view b);
  // Appends an already-encoded MessagePack object verbatim.
  void raw(std::string_view encoded) { out_.append(encoded); }

  std::string& buffer() { return out_; }

 private:
  void put8(uint8_t b) { out_.push_back(static_cast<char>(b)); }
  void put_be(uint64_t v, int bytes);
  std::string& out_;
  std::vector<External>* external_ = nullptr;
  size_t threshold_ = SIZE_MAX;
};

class Reader {
 public:
  static constexpr int kMaxDepth = 32;

  Reader(const char* data, size_t size) : p_(data), end_(data + size) {}
  explicit Reader(std::string_view s) : Reader(s.data(), s.size()) {}

  bool ok() const { return error_ == nullptr; }
  const char* error() const { return error_ ? error_ : ""; }
  bool at_end() const { return p_ == end_; }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }
  void fail(const char* why) {
    if (!error_) error_ = why;
    p_ = end_;
  }

  // Container headers. The count is checked against the bytes left (every element takes at
  // least one byte), so a hostile count cannot make a decoder loop or reserve billions.
  uint32_t array();
  uint32_t map();
  // Expects an array of exactly n elements.
  void expect_array(uint32_t n);

  bool is_nil() const { return ok() && p_ < end_ && static_cast<uint8_t>(*p_) == 0xc0; }
  void nil();
  bool boolean();
  uint64_t uint();
  // Unsigned value that must fit `max`.
  uint64_t uint_max(uint64_t max);
  int64_t sint();
  double f64();
  std::string_view str();
  std::string_view bin();
  // str or bin, whichever is present.
  std::string_view bytes();
  // The next complete object, as encoded bytes (validated, zero copy).
  std::string_view raw();
  void skip();

  // Type of the next object, for generic walkers (JSON conversion).
  enum class Type { kNil, kBool, kUint, kSint, kFloat, kStr, kBin, kArray, kMap, kExt, kInvalid };
  Type peek() const;

 private:
  bool need(size_t n) {
    if (remaining() < n) {
      fail("truncated message");
      return false;
    }
    return true;
  }
  uint64_t get_be(int bytes);
  uint32_t container(bool is_map);
  void skip_depth(int depth);
  std::string_view take(size_t n);

  const char* p_;
  const char* end_;
  const char* error_ = nullptr;
};

}  // namespace lrts::protocol::mp
