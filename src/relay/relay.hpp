// lrts relay: accepts workers as if it were the scheduler and carries their messages on one
// connection to it (or to another relay: relays chain into a tree).
//
// DESIGN
// - Transparent: a worker speaks the worker protocol end to end with the scheduler. The relay
//   numbers each worker connection (a `sub`, never reused), wraps what the worker sends into
//   RELAYED batches (one upstream message for many workers' results, hellos and chunks) and
//   unwraps RELAY_DOWN batches into per-worker messages. It keeps no task state, so killing it
//   loses nothing: workers reconnect (to the next address in their --scheduler-address list,
//   another relay or the scheduler itself) and re-register with what they hold.
// - Heartbeats stop here: the relay keeps each worker's last heartbeat, answers it as the
//   scheduler would (at most one in ten, with the interval the scheduler set), and sends the
//   scheduler one RELAY_SUMMARY per interval: which workers' heartbeats changed and which left.
//   So the scheduler's liveness work grows with the number of relays, not of workers.
// - A worker is gone when its connection ends (the listening socket's monitor names the
//   descriptor; each message's ZMQ_SRCFD says which worker that was) or when it is silent for
//   the timeout the scheduler names in its RELAY_ACK. The scheduler then gives it the base
//   worker timeout to say hello another way before its tasks go back.
// - With --auth it is a CURVE server with the cluster's server key (workers need nothing new)
//   and accepts the `members` keys of workers and relays; upstream it connects with relay.key,
//   and tells the scheduler, per message, which member sent it.
// Not thread-safe: one loop owns it.
#pragma once

#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "protocol/messages.hpp"

namespace lrts::relay {

struct RelayOptions {
  std::string address = "127.0.0.1";  // where workers connect
  int port = 5558;
  // Upstream: the scheduler or another relay, tried in order (the next on silence or refusal).
  std::vector<std::string> upstream = {"127.0.0.1"};
  int upstream_port = 5555;
  std::string auth_dir;
  bool insecure = false;
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
  Duration stats_interval = seconds(30);
};

// Serves until SIGINT or SIGTERM; returns the process exit code (2: bad options).
int run_relay(const RelayOptions& options);

}  // namespace lrts::relay
