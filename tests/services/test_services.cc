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
  if (!finished.empty()) std::ofstream(finished) << ctx.service_id() << "\n";
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

#include <signal.h>
#include <unistd.h>

#include <cstdlib>

namespace {

// A real invalid access (not raise(SIGSEGV)), hidden from UndefinedBehaviorSanitizer, which
// would otherwise report it and exit instead of letting the slot die of the signal.
__attribute__((no_sanitize("undefined"))) void segfault() {
  volatile int* null = nullptr;
  *null = 1;
}

}  // namespace

namespace test_services {

int64_t ProgressService::run(lrts::TaskContext& ctx) {
  std::vector<lrts::ProgressBar> handles;
  for (int i = 0; i < bars; ++i) {
    handles.push_back(ctx.create_progress("bar " + std::to_string(i), 10ull * (i + 1), "steps"));
  }
  for (int step = 0; step < 10; ++step) {
    if (step_ms) std::this_thread::sleep_for(std::chrono::milliseconds(step_ms));
    for (int i = 0; i < bars; ++i)
      handles[static_cast<size_t>(i)].advance(static_cast<uint64_t>(i + 1));
    if (step == 5 && bars > 0) handles[0].set_total(20);
  }
  int64_t sum = 0;
  for (int i = 0; i < bars; ++i) {
    sum += static_cast<int64_t>(handles[static_cast<size_t>(i)].count());
    if (i % 2 == 1) handles[static_cast<size_t>(i)].close();
  }
  return sum;
}

int64_t CrashService::run(lrts::TaskContext& ctx) {
  if (static_cast<int>(ctx.attempt()) > crash_attempts) {
    lrts::ProgressBar bar = ctx.create_progress("attempt " + std::to_string(ctx.attempt()), 10);
    bar.advance(10);
    return ctx.attempt();
  }
  lrts::ProgressBar bar = ctx.create_progress("before the crash", 10);
  bar.advance(7);
  if (!started.empty()) std::ofstream(started) << ctx.attempt() << "\n";
  if (delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  if (mode == "throw") throw std::runtime_error("failed on purpose");
  if (mode == "abort") std::abort();
  if (mode == "exit") std::_Exit(3);
  if (mode == "kill") ::kill(::getpid(), SIGKILL);
  segfault();
  return -1;
}

int64_t SpinProgressService::run(lrts::TaskContext& ctx) {
  lrts::ProgressBar bar = ctx.create_progress("spinning", 0, "it");
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    for (int i = 0; i < 1000; ++i) bar.advance();
  }
  return static_cast<int64_t>(bar.count());
}

}  // namespace test_services

LRTS_REGISTER_SERVICE(test_services::ProgressService);
LRTS_REGISTER_SERVICE(test_services::CrashService);
LRTS_REGISTER_SERVICE(test_services::SpinProgressService);

#include <cstring>

namespace test_services {

int64_t AllocService::run() {
  std::vector<char> block(static_cast<size_t>(mb) << 20);
  for (size_t off = 0; off < block.size(); off += 4096) block[off] = 1;  // make it resident
  std::this_thread::sleep_for(std::chrono::milliseconds(hold_ms));
  return static_cast<int64_t>(block.size());
}

}  // namespace test_services

LRTS_REGISTER_SERVICE(test_services::AllocService);

#include <sys/wait.h>

namespace test_services {

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string pattern(uint64_t bytes, int seed) {
  std::string out(bytes, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ULL ^ static_cast<uint64_t>(seed);
  for (size_t i = 0; i < out.size(); ++i) {
    if (i % 8 == 0) x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    out[i] = static_cast<char>(x >> (8 * (i % 8)));
  }
  return out;
}

BlobResult BlobService::run() {
  BlobResult r;
  r.fields_size = data.size();
  r.fields_hash = fnv1a(data);
  std::string().swap(data);  // what the task no longer needs
  r.data = pattern(result_bytes, seed);
  return r;
}

int64_t ForkService::run() {
  const pid_t child = ::fork();
  if (child == 0) {
    if (escape) ::setsid();
    ::sleep(3600);
    std::_Exit(0);
  }
  std::ofstream(pid_file) << child << "\n";
  if (mode == "sleep") std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  if (mode == "segv") segfault();
  return child;
}

}  // namespace test_services

LRTS_REGISTER_SERVICE(test_services::BlobService);
LRTS_REGISTER_SERVICE(test_services::ForkService);
