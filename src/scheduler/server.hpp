// SchedulerServer: the scheduler's socket loop around a SchedulerCore. One thread runs run();
// it owns the ROUTER socket and the core. Idle, it sleeps in zmq_poll until a message, a signal
// or the core's next deadline: no polling interval.
#pragma once

#include <memory>
#include <string>

#include "common/result.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {

struct ServerOptions {
  std::string address = "127.0.0.1";
  int port = 5555;
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
  Duration stats_interval = seconds(30);  // how often a summary line is logged while busy
  std::string state_dir;                  // empty: no journal, state in memory only
  bool journal_sync_full = false;
  // A cluster directory from lrts keygen: CURVE on every connection, members only, each in its
  // role. Empty: open to anyone who can connect (refused on a non-loopback address unless
  // `insecure`).
  std::string auth_dir;
  bool insecure = false;
  int metrics_port = 0;  // 0: no /metrics
  std::string metrics_address = "127.0.0.1";
  CoreOptions core;
};

class SchedulerServer {
 public:
  static Result<std::unique_ptr<SchedulerServer>> create(const ServerOptions& options);
  ~SchedulerServer();

  // Serves until SIGINT or SIGTERM (then commits what the journal holds). Returns the process
  // exit code.
  int run();

 private:
  struct Impl;
  explicit SchedulerServer(std::unique_ptr<Impl> impl);
  void deliver(const PeerId& peer, std::string_view bytes, const Caller& caller, TimePoint now);
  std::unique_ptr<Impl> impl_;
};

}  // namespace lrts::scheduler
