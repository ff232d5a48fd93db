#include "common/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
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

}  // namespace

spdlog::logger& logger() {
  static std::shared_ptr<spdlog::logger> instance = make_logger();
  return *instance;
}

Status init(std::string_view component, std::string_view level) {
  auto lvl = spdlog::level::from_str(std::string(level));
  if (lvl == spdlog::level::off && level != "off") {
    return make_error("unknown log level '" + std::string(level) +
                      "' (use trace, debug, info, warn, error or off)");
  }
  logger().set_pattern("%Y-%m-%d %H:%M:%S.%e %^%-5l%$ [" + std::string(component) + "] %v");
  logger().set_level(lvl);
  logger().flush_on(spdlog::level::info);
  return {};
}

}  // namespace lrts::log
