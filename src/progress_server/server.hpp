// ProgressServer: `lrts progress-server`. Receives bar batches from workers (acknowledging each,
// which clocks the workers' latency balancing), keeps the latest state in a ProgressStore, and
// pushes changes to subscribed applications and viewers at most every `push_interval`. One
// thread; sleeps in zmq_poll when idle. Optional: the cluster runs the same without it.
#pragma once

#include <memory>
#include <string>

#include "common/result.hpp"
#include "progress_server/store.hpp"

namespace lrts::progress_server {

struct ProgressServerOptions {
  std::string address = "127.0.0.1";
  int port = 5454;
  size_t max_message_bytes = 64u << 20;
  Duration push_interval = milliseconds(100);  // at most ~10 updates a second per subscriber
  Duration subscriber_timeout = seconds(10);   // a subscriber must renew within this
  // A worker with open bars sends at least every few seconds; silent this long, its open bars
  // end lost (it died with them, or cannot reach us).
  Duration worker_silence = seconds(10);
  // The cluster directory (lrts keygen): CURVE, members only; workers send bars, a viewer key
  // sees every bar, an application key only its own applications'. Empty: open (refused on a
  // non-loopback address unless `insecure`).
  std::string auth_dir;
  bool insecure = false;
  int metrics_port = 0;  // /metrics (0: off)
  std::string metrics_address = "127.0.0.1";
  StoreOptions store;
};

class ProgressServer {
 public:
  static Result<std::unique_ptr<ProgressServer>> create(const ProgressServerOptions& options);
  ~ProgressServer();
  // Serves until SIGINT or SIGTERM; returns the exit code.
  int run();

 private:
  struct Impl;
  explicit ProgressServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lrts::progress_server
