#include "common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>

namespace lrts::log {
namespace {

std::shared_ptr<spdlog::logger> make_logger() {
  auto logger = spdlog::stderr_color_mt("lrts");
  logger->set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [app] %v");
  logger->set_level(spdlog::level::warn);
  if (const char* env = std::getenv("LRTS_LOG_LEVEL")) {
    logger->set_level(spdlog::level::from_str(env));
  }
  return logger;
}

// One JSON object per line, for log shippers: {"time", "level", "component", "pid", "message"}.
class JsonFormatter final : public spdlog::formatter {
 public:
  explicit JsonFormatter(std::string component) : component_(std::move(component)) {}
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto t = std::chrono::system_clock::to_time_t(msg.time);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count() %
        1000;
    std::tm tm{};
    ::gmtime_r(&t, &tm);
    char head[64];
    const size_t n = std::strftime(head, sizeof head, "{\"time\":\"%Y-%m-%dT%H:%M:%S", &tm);
    dest.append(head, head + n);
    char tail[16];
    std::snprintf(tail, sizeof tail, ".%03dZ\"", static_cast<int>(ms));
    dest.append(tail, tail + std::strlen(tail));
    const auto level = spdlog::level::to_string_view(msg.level);
    append(dest, ",\"level\":");
    quote(dest, std::string_view(level.data(), level.size()));
    append(dest, ",\"component\":");
    quote(dest, component_);
    append(dest, ",\"pid\":" + std::to_string(::getpid()) + ",\"message\":");
    quote(dest, std::string_view(msg.payload.data(), msg.payload.size()));
    append(dest, "}\n");
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>(component_);
  }

 private:
  static void append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
  // A JSON string: control characters escaped, and bytes that are not UTF-8 (names and ids come
  // from peers) replaced by U+FFFD, so that every line parses.
  static void quote(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.push_back('"');
    for (size_t i = 0; i < s.size();) {
      const auto c = static_cast<unsigned char>(s[i]);
      if (c < 0x80) {
        if (c == '"' || c == '\\') {
          dest.push_back('\\');
          dest.push_back(static_cast<char>(c));
        } else if (c < 0x20 || c == 0x7f) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", c);
          append(dest, esc);
        } else {
          dest.push_back(static_cast<char>(c));
        }
        ++i;
        continue;
      }
      const size_t n = utf8_length(s.substr(i));
      if (n == 0) {
        append(dest, "\\ufffd");
        ++i;
      } else {
        append(dest, s.substr(i, n));
        i += n;
      }
    }
    dest.push_back('"');
  }
  // Bytes of the well-formed UTF-8 sequence `s` starts with (2 to 4), or 0.
  static size_t utf8_length(std::string_view s) {
    const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
    const auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
    const unsigned char c = b(0);
    if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
      if (!cont(1) || !cont(2)) return 0;
      if ((c == 0xE0 && b(1) < 0xA0) || (c == 0xED && b(1) > 0x9F)) return 0;
      return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
      if (!cont(1) || !cont(2) || !cont(3)) return 0;
      if ((c == 0xF0 && b(1) < 0x90) || (c == 0xF4 && b(1) > 0x8F)) return 0;
      return 4;
    }
    return 0;
  }
  std::string component_;
};

}  // namespace

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = make_logger();
  return *instance;
}

Status init(std::string_view component, std::string_view level, std::string_view format) {
  if (format != "text" && format != "json") {
    return make_error("unknown log format '" + std::string(format) + "' (use text or json)");
  }
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return make_error("unknown log level '" + std::string(level) +
                      "' (use trace, debug, info, warn, error or off)");
  }
  if (format == "json") {
    logger().set_formatter(std::make_unique<JsonFormatter>(std::string(component)));
  } else {
    logger().set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [" + std::string(component) + "] %v");
  }
  logger().set_level(lvl);
  logger().flush_on(spdlog::level::info);
  return {};
}

}  // namespace lrts::log
