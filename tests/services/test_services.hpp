// Services used by the integration tests (library: libtest_services.so).
#pragma once

#include <cstdint>
#include <lrts/lrts.hpp>
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
  LRTS_FIELDS(text, service_id, attempt, numbers);  // the same macro as for a service
};

class EchoService : public lrts::Service {
 public:
  std::string text;
  std::vector<int> numbers;
  EchoResult run(lrts::TaskContext& ctx);
  LRTS_SERVICE("test.echo", text, numbers);  // name and fields in one place
};

// Sleeps `ms` milliseconds (a wait in the task, not in the test), returns `value`. If
// `started` names a file, writes the service id there first, so a test can wait for the task to
// be running.
class SleepService : public lrts::Service {
 public:
  int ms = 0;
  int64_t value = 0;
  std::string started;
  std::string finished;  // if set, a file written when the sleep is over
  std::string service_name() const override { return "test.sleep"; }
  int64_t run(lrts::TaskContext& ctx);
  LRTS_FIELDS(ms, value, started, finished);
};

// Returns nothing (nil result).
class NoopService : public lrts::Service {
 public:
  void run() {}
  LRTS_SERVICE_NO_FIELDS("test.noop");
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

namespace test_services {

// Creates `bars` bars; bar i gets total 10*(i+1) and is advanced by i+1 ten times, `step_ms`
// apart. Bar 0's total is changed to 20 half way. Odd bars are closed by the task, even ones
// are left open (closed when run returns). Returns the sum of all counts.
class ProgressService : public lrts::Service {
 public:
  int bars = 1;
  int step_ms = 0;
  std::string service_name() const override { return "test.progress"; }
  int64_t run(lrts::TaskContext& ctx);
  LRTS_FIELDS(bars, step_ms);
};

// Dies (`mode`: "segv", "abort", "exit", "kill"; "throw" fails without dying) on attempts up to
// `crash_attempts` after advancing a bar to 7 and writing `started` (if set); later attempts
// advance a bar "attempt <n>" to 10 and return the attempt number.
class CrashService : public lrts::Service {
 public:
  std::string mode = "segv";
  int crash_attempts = 1000;
  int delay_ms = 0;
  std::string started;
  std::string service_name() const override { return "test.crash"; }
  int64_t run(lrts::TaskContext& ctx);
  LRTS_FIELDS(mode, crash_attempts, delay_ms, started);
};

// Advances a bar in a tight loop for `ms` milliseconds; returns the count reached.
class SpinProgressService : public lrts::Service {
 public:
  int ms = 100;
  std::string service_name() const override { return "test.spin_progress"; }
  int64_t run(lrts::TaskContext& ctx);
  LRTS_FIELDS(ms);
};

}  // namespace test_services

namespace test_services {

// Allocates and touches `mb` megabytes, holds them for `hold_ms`, returns the size.
class AllocService : public lrts::Service {
 public:
  int mb = 1;
  int hold_ms = 0;
  std::string service_name() const override { return "test.alloc"; }
  int64_t run();
  LRTS_FIELDS(mb, hold_ms);
};

}  // namespace test_services

namespace test_services {

// What BlobService saw and made.
struct BlobResult {
  uint64_t fields_size = 0;
  uint64_t fields_hash = 0;  // FNV-1a of the data field
  std::string data;          // result_bytes bytes of pattern(seed)
  MSGPACK_DEFINE_MAP(fields_size, fields_hash, data);
};

// Takes `data` (of any size) and returns a result of `result_bytes` bytes: large payloads in
// both directions, checkable at the far end.
class BlobService : public lrts::Service {
 public:
  std::string data;
  uint64_t result_bytes = 0;
  int seed = 0;
  std::string service_name() const override { return "test.blob"; }
  BlobResult run();
  LRTS_FIELDS(data, result_bytes, seed);
};
uint64_t fnv1a(std::string_view s);
std::string pattern(uint64_t bytes, int seed);

// Starts a child process (in the slot's process group, or in a session of its own with
// `escape`) that sleeps for an hour, writes its pid to `pid_file`, then `mode`: "return" at
// once, "sleep" for `ms`, or "segv".
class ForkService : public lrts::Service {
 public:
  std::string pid_file;
  std::string mode = "return";
  int ms = 0;
  bool escape = false;
  std::string service_name() const override { return "test.fork"; }
  int64_t run();
  LRTS_FIELDS(pid_file, mode, ms, escape);
};

}  // namespace test_services
