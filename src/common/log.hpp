// Logging for every component: one spdlog logger named "lrts" writing to stderr.
// Daemons call init() once at start; library users (applications) get a logger at level
// "warn" unless LRTS_LOG_LEVEL says otherwise. Thread-safe (spdlog's _mt sinks).
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace lrts::log {

spdlog::logger& logger();

// Sets the component name shown in each line, the level ("trace", "debug", "info", "warn",
// "error", "off") and the format: "text" (one readable line) or "json" (one JSON object per
// line: time, level, component, pid, message — for log shippers).
Status init(std::string_view component, std::string_view level, std::string_view format = "text");

}  // namespace lrts::log

#define LRTS_TRACE(...) ::lrts::log::logger().trace(__VA_ARGS__)
#define LRTS_DEBUG(...) ::lrts::log::logger().debug(__VA_ARGS__)
#define LRTS_INFO(...) ::lrts::log::logger().info(__VA_ARGS__)
#define LRTS_WARN(...) ::lrts::log::logger().warn(__VA_ARGS__)
#define LRTS_ERROR(...) ::lrts::log::logger().error(__VA_ARGS__)
