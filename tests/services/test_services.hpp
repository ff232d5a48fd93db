// Services used by the integration tests (library: libtest_services.so).
#pragma once

#include <lrts/lrts.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace test_services {

// Throws with the given message.
class ThrowingService : public lrts::Service {
 public:
  std::string message = "boom";
  std::string service_name() const override { return "test.throw"; }
  int run(lrts::TaskContext&);
  LRTS_FIELDS(message);
};

// Returns its input and facts about the attempt.
struct EchoResult {
  std::string text;
  std::string service_id;
  uint32_t attempt = 0;
  std::vector<int> numbers;
  MSGPACK_DEFINE_MAP(text, service_id, attempt, numbers);
};

class EchoService : public lrts::Service {
 public:
  std::string text;
  std::vector<int> numbers;
  std::string service_name() const override { return "test.echo"; }
  EchoResult run(lrts::TaskContext& ctx);
  LRTS_FIELDS(text, numbers);
};

// Sleeps `ms` milliseconds (a wait in the task, not in the test), returns `value`. If
// `started` names a file, writes the service id there first, so a test can wait for the task to
// be running.
class SleepService : public lrts::Service {
 public:
  int ms = 0;
  int64_t value = 0;
  std::string started;
  std::string service_name() const override { return "test.sleep"; }
  int64_t run(lrts::TaskContext& ctx);
  LRTS_FIELDS(ms, value, started);
};

// Returns nothing (nil result).
class NoopService : public lrts::Service {
 public:
  std::string service_name() const override { return "test.noop"; }
  void run() {}
  LRTS_NO_FIELDS();
};

// Returns a map, to check structured results.
class MapService : public lrts::Service {
 public:
  int n = 0;
  std::string service_name() const override { return "test.map"; }
  std::map<std::string, int> run();
  LRTS_FIELDS(n);
};

// Waits delay_ms, then writes its service id to `path`: leaves a trace outside the cluster.
class TouchService : public lrts::Service {
 public:
  std::string path;
  int delay_ms = 0;
  std::string service_name() const override { return "test.touch"; }
  void run(lrts::TaskContext& ctx);
  LRTS_FIELDS(path, delay_ms);
};

}  // namespace test_services
