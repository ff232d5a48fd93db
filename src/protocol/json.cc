#include "protocol/json.hpp"

#include <cmath>
#include <cstdio>

#include "protocol/msgpack_io.hpp"

namespace lrts::protocol::mp {
namespace {

void append_base64(std::string& out, std::string_view in) {
  static const char* const kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) |
                       (static_cast<uint8_t>(in[i + 1]) << 8) | static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == in.size()) {
    const uint32_t v = static_cast<uint8_t>(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const uint32_t v = (static_cast<uint8_t>(in[i]) << 16) | (static_cast<uint8_t>(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
}

// Map keys that are not strings are written as JSON and quoted, so each level of such keys
// doubles the escaping: without a bound, 40 bytes of nested maps make gigabytes of text.
void write_value(Reader& r, std::string& out, int depth, size_t limit) {
  if (depth > Reader::kMaxDepth) return r.fail("nesting too deep");
  if (out.size() > limit) return r.fail("the JSON text would be too large");
  char buf[40];
  switch (r.peek()) {
    case Reader::Type::kNil:
      r.nil();
      out += "null";
      return;
    case Reader::Type::kBool:
      out += r.boolean() ? "true" : "false";
      return;
    case Reader::Type::kUint:
      std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(r.uint()));
      out += buf;
      return;
    case Reader::Type::kSint:
      std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(r.sint()));
      out += buf;
      return;
    case Reader::Type::kFloat: {
      const double d = r.f64();
      if (!std::isfinite(d)) {
        out += "null";
        return;
      }
      std::snprintf(buf, sizeof buf, "%.17g", d);
      // Shortest representation that reads back the same value.
      for (int prec = 1; prec <= 17; ++prec) {
        char tmp[40];
        std::snprintf(tmp, sizeof tmp, "%.*g", prec, d);
        if (std::strtod(tmp, nullptr) == d) {
          std::snprintf(buf, sizeof buf, "%s", tmp);
          break;
        }
      }
      out += buf;
      return;
    }
    case Reader::Type::kStr:
      append_json_string(out, r.str());
      return;
    case Reader::Type::kBin:
      out += '"';
      append_base64(out, r.bin());
      out += '"';
      return;
    case Reader::Type::kArray: {
      const uint32_t n = r.array();
      out += '[';
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        if (i) out += ',';
        write_value(r, out, depth + 1, limit);
      }
      out += ']';
      return;
    }
    case Reader::Type::kMap: {
      const uint32_t n = r.map();
      out += '{';
      for (uint32_t i = 0; i < n && r.ok(); ++i) {
        if (i) out += ',';
        if (r.peek() == Reader::Type::kStr) {
          append_json_string(out, r.str());
        } else {
          std::string key;
          write_value(r, key, depth + 1, limit);
          if (!r.ok()) return;
          append_json_string(out, key);
        }
        out += ':';
        write_value(r, out, depth + 1, limit);
      }
      out += '}';
      return;
    }
    case Reader::Type::kExt: {
      std::string_view raw = r.raw();
      if (!r.ok()) return;
      out += "{\"ext\":\"";
      append_base64(out, raw);
      out += "\"}";
      return;
    }
    case Reader::Type::kInvalid:
      r.fail("invalid MessagePack");
      return;
  }
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
}

Result<std::string> to_json(std::string_view msgpack) {
  Reader r(msgpack);
  std::string out;
  // Base64 of binaries and escapes take up to about twice the input; more is an attack.
  write_value(r, out, 0, (16u << 20) + 4 * msgpack.size());
  if (out.size() > (16u << 20) + 4 * msgpack.size()) r.fail("the JSON text would be too large");
  if (r.ok() && !r.at_end()) r.fail("trailing bytes after value");
  if (!r.ok()) return make_error(std::string("cannot convert to JSON: ") + r.error());
  return out;
}

}  // namespace lrts::protocol::mp
