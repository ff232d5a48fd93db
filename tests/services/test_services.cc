#include "services/test_services.hpp"

#include <fstream>
#include <stdexcept>
#include <thread>

namespace test_services {

int ThrowingService::run(lrts::TaskContext&) { throw std::runtime_error(message); }

EchoResult EchoService::run(lrts::TaskContext& ctx) {
  return EchoResult{text, ctx.service_id(), ctx.attempt(), numbers};
}

int64_t SleepService::run(lrts::TaskContext& ctx) {
  if (!started.empty()) std::ofstream(started) << ctx.service_id() << "\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}

std::map<std::string, int> MapService::run() {
  std::map<std::string, int> out;
  for (int i = 0; i < n; ++i) out["k" + std::to_string(i)] = i * i;
  return out;
}

void TouchService::run(lrts::TaskContext& ctx) {
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  std::ofstream(path) << ctx.service_id() << "\n";
}

}  // namespace test_services

LRTS_REGISTER_SERVICE(test_services::ThrowingService);
LRTS_REGISTER_SERVICE(test_services::EchoService);
LRTS_REGISTER_SERVICE(test_services::SleepService);
LRTS_REGISTER_SERVICE(test_services::NoopService);
LRTS_REGISTER_SERVICE(test_services::MapService);
LRTS_REGISTER_SERVICE(test_services::TouchService);
