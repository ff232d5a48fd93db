// Wire descriptions: each message (and each item inside one) names its fields once, in
// `static constexpr auto describe()`, and one generic encoder and one generic decoder walk that
// description. A field's entry says how it travels and what a decoder accepts (ranges, lengths,
// counts), so an encoder and its decoder can never disagree and a new message is one struct.
//
//   struct AppHello {
//     static constexpr MsgType kType = MsgType::kAppHello;
//     std::string_view application_id;
//     uint64_t session = 0;
//     static constexpr auto describe() {
//       return std::tuple{wire::str(&AppHello::application_id, 1, 256),
//       wire::u(&AppHello::session)};
//     }
//   };
//
// A struct encodes as one MessagePack array of its fields in order; a TaskKey field takes two
// elements (session, seq). A message is `[version, type, fields...]` in one array. Decoders
// return string views into the input: a decoded message is valid while its buffer lives.
// An optional `void check(mp::Reader&) const` on a struct adds rules across fields.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <vector>

#include "protocol/ids.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::protocol::wire {

template <class M>
void put_struct(mp::Writer& w, const M& m);
template <class M>
void get_struct(mp::Reader& r, M& m);

template <class T>
constexpr uint64_t max_of() {
  if constexpr (std::is_enum_v<T>) {
    return std::numeric_limits<std::underlying_type_t<T>>::max();
  } else {
    return std::numeric_limits<T>::max();
  }
}

// An unsigned integer (or an enum stored as one), at most `max`.
template <class M, class T>
struct Uint {
  static constexpr uint32_t kWire = 1;
  T M::*member;
  uint64_t max;
  void put(mp::Writer& w, const M& m) const { w.uint(static_cast<uint64_t>(m.*member)); }
  void get(mp::Reader& r, M& m) const { m.*member = static_cast<T>(r.uint_max(max)); }
};
template <class M, class T>
constexpr Uint<M, T> u(T M::*member, uint64_t max = max_of<T>()) {
  return {member, max};
}

template <class M>
struct Bool {
  static constexpr uint32_t kWire = 1;
  bool M::*member;
  void put(mp::Writer& w, const M& m) const { w.boolean(m.*member); }
  void get(mp::Reader& r, M& m) const { m.*member = r.boolean(); }
};
template <class M>
constexpr Bool<M> flag(bool M::*member) {
  return {member};
}

template <class M>
struct F64 {
  static constexpr uint32_t kWire = 1;
  double M::*member;
  void put(mp::Writer& w, const M& m) const { w.f64(m.*member); }
  void get(mp::Reader& r, M& m) const { m.*member = r.f64(); }
};
template <class M>
constexpr F64<M> f64(double M::*member) {
  return {member};
}

// UTF-8 text (std::string_view, or std::string where the struct owns it), min..max bytes.
template <class M, class T>
struct Str {
  static constexpr uint32_t kWire = 1;
  T M::*member;
  uint32_t min_len;
  uint32_t max_len;
  void put(mp::Writer& w, const M& m) const { w.str(m.*member); }
  void get(mp::Reader& r, M& m) const {
    const std::string_view s = r.str();
    if (r.ok() && (s.size() < min_len || s.size() > max_len)) r.fail("text field of a bad length");
    m.*member = T(s);
  }
};
template <class M, class T>
constexpr Str<M, T> str(T M::*member, uint32_t min_len = 0, uint32_t max_len = UINT32_MAX) {
  return {member, min_len, max_len};
}

// Opaque bytes (user data: service fields, results).
template <class M>
struct Bin {
  static constexpr uint32_t kWire = 1;
  std::string_view M::*member;
  void put(mp::Writer& w, const M& m) const { w.bin(m.*member); }
  void get(mp::Reader& r, M& m) const { m.*member = r.bin(); }
};
template <class M>
constexpr Bin<M> bin(std::string_view M::*member) {
  return {member};
}

// A task key, as two elements: session, seq.
template <class M>
struct Key {
  static constexpr uint32_t kWire = 2;
  TaskKey M::*member;
  void put(mp::Writer& w, const M& m) const {
    w.uint((m.*member).session);
    w.uint((m.*member).seq);
  }
  void get(mp::Reader& r, M& m) const {
    (m.*member).session = r.uint();
    (m.*member).seq = r.uint();
  }
};
template <class M>
constexpr Key<M> key(TaskKey M::*member) {
  return {member};
}

// A list of keys, flat: [session1, seq1, session2, seq2, ...].
template <class M>
struct Keys {
  static constexpr uint32_t kWire = 1;
  std::vector<TaskKey> M::*member;
  void put(mp::Writer& w, const M& m) const {
    const auto& keys = m.*member;
    w.array(static_cast<uint32_t>(keys.size() * 2));
    for (const TaskKey& k : keys) {
      w.uint(k.session);
      w.uint(k.seq);
    }
  }
  void get(mp::Reader& r, M& m) const {
    const uint32_t n = r.array();
    if (n % 2 != 0) return r.fail("key list has an odd length");
    auto& keys = m.*member;
    keys.reserve(n / 2);
    for (uint32_t i = 0; i < n / 2 && r.ok(); ++i) {
      TaskKey k;
      k.session = r.uint();
      k.seq = r.uint();
      keys.push_back(k);
    }
  }
};
template <class M>
constexpr Keys<M> keys(std::vector<TaskKey> M::*member) {
  return {member};
}

// A list of unsigned integers.
template <class M, class T>
struct Uints {
  static constexpr uint32_t kWire = 1;
  std::vector<T> M::*member;
  uint64_t max;
  void put(mp::Writer& w, const M& m) const {
    w.array(static_cast<uint32_t>((m.*member).size()));
    for (T v : m.*member) w.uint(v);
  }
  void get(mp::Reader& r, M& m) const {
    const uint32_t n = r.array();
    auto& v = m.*member;
    v.reserve(n);
    for (uint32_t i = 0; i < n && r.ok(); ++i) v.push_back(static_cast<T>(r.uint_max(max)));
  }
};
template <class M, class T>
constexpr Uints<M, T> uints(std::vector<T> M::*member, uint64_t max = max_of<T>()) {
  return {member, max};
}

// A list of strings, at most max_count of at most max_len bytes each.
template <class M, class T>
struct Strs {
  static constexpr uint32_t kWire = 1;
  std::vector<T> M::*member;
  uint32_t max_count;
  uint32_t max_len;
  void put(mp::Writer& w, const M& m) const {
    w.array(static_cast<uint32_t>((m.*member).size()));
    for (const auto& s : m.*member) w.str(s);
  }
  void get(mp::Reader& r, M& m) const {
    const uint32_t n = r.array();
    if (r.ok() && n > max_count) return r.fail("too many strings in a list");
    auto& v = m.*member;
    v.reserve(n);
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      const std::string_view s = r.str();
      if (r.ok() && s.size() > max_len) r.fail("string in a list is too long");
      v.emplace_back(s);
    }
  }
};
template <class M, class T>
constexpr Strs<M, T> strs(std::vector<T> M::*member, uint32_t max_count = UINT32_MAX,
                          uint32_t max_len = UINT32_MAX) {
  return {member, max_count, max_len};
}

// A list of structs that describe themselves (each one array), at most max_count.
template <class M, class Item>
struct List {
  static constexpr uint32_t kWire = 1;
  std::vector<Item> M::*member;
  uint32_t max_count;
  void put(mp::Writer& w, const M& m) const {
    w.array(static_cast<uint32_t>((m.*member).size()));
    for (const Item& item : m.*member) put_struct(w, item);
  }
  void get(mp::Reader& r, M& m) const {
    const uint32_t n = r.array();
    if (r.ok() && n > max_count) return r.fail("list is too long");
    auto& v = m.*member;
    v.reserve(n);
    for (uint32_t i = 0; i < n && r.ok(); ++i) get_struct(r, v.emplace_back());
  }
};
template <class M, class Item>
constexpr List<M, Item> list(std::vector<Item> M::*member, uint32_t max_count = UINT32_MAX) {
  return {member, max_count};
}

// ---- the generic walkers --------------------------------------------------------------------

template <class M>
constexpr uint32_t wire_count() {
  return std::apply([](const auto&... f) { return (0u + ... + f.kWire); }, M::describe());
}

template <class M>
void put_fields(mp::Writer& w, const M& m) {
  std::apply([&](const auto&... f) { (f.put(w, m), ...); }, M::describe());
}

template <class M>
void get_fields(mp::Reader& r, M& m) {
  std::apply([&](const auto&... f) { ((r.ok() ? f.get(r, m) : void()), ...); }, M::describe());
  if constexpr (requires(const M& x) { x.check(r); }) {
    if (r.ok()) m.check(r);
  }
}

template <class M>
void put_struct(mp::Writer& w, const M& m) {
  w.array(wire_count<M>());
  put_fields(w, m);
}

template <class M>
void get_struct(mp::Reader& r, M& m) {
  const uint32_t n = r.array();
  if (r.ok() && n != wire_count<M>()) return r.fail("item has the wrong number of fields");
  get_fields(r, m);
}

}  // namespace lrts::protocol::wire
