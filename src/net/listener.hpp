// ListenerGuard: keeps a listening socket from spinning when the process runs out of file
// descriptors. libzmq retries a failed accept at once, for as long as a connection waits in the
// backlog, burning a core. The guard watches the socket's accept failures (a socket monitor) and,
// on EMFILE/ENFILE, stops listening: new peers are refused and retry. libzmq ties the connections
// made through an endpoint to it, so they are closed too — which frees their descriptors (a flood
// of idle connections is gone at once) — and their peers reconnect when it listens again, which
// it does with a growing delay (1 s to 30 s) once fewer than 90 % of descriptors are in use.
// Freeing a spare descriptor to accept and close the waiting connections ourselves does not work:
// libzmq's spinning accept takes the freed descriptor first. Warns once, then at most once a
// minute. Not thread-safe: the owning loop polls it.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "net/zmq_socket.hpp"

namespace lrts::net {

// Descriptors this process has open, and its limit.
std::pair<size_t, size_t> descriptor_use();
// Raises the soft descriptor limit to the hard one (each connection takes one).
void raise_descriptor_limit();

class ListenerGuard {
 public:
  // `socket` is bound to the TCP `endpoint` already. With `track_disconnects`, the descriptors
  // of connections that ended are kept for take_disconnected() (a message's ZMQ_SRCFD says
  // which connection it came on).
  ListenerGuard(ZmqContext& ctx, ZmqSocket& socket, std::string endpoint,
                bool track_disconnects = false);
  ListenerGuard(const ListenerGuard&) = delete;
  ListenerGuard& operator=(const ListenerGuard&) = delete;

  // A zmq socket to poll for reading, or null when the guard could not be set up (warned).
  void* monitor_socket() const { return monitor_.get(); }
  // Reads the monitor's events and sheds waiting connections if accepting failed for want of
  // descriptors (call when monitor_socket() is readable).
  void on_readable(TimePoint now);
  // Listens again when it is time and descriptors are free.
  void on_tick(TimePoint now);
  TimePoint next_deadline() const { return listening_ ? TimePoint::max() : retry_at_; }
  bool listening() const { return listening_; }
  // Times it stopped listening.
  uint64_t pauses() const { return pauses_; }
  // Descriptors of the connections that ended since the last call (with track_disconnects).
  std::vector<int> take_disconnected() { return std::exchange(disconnected_, {}); }

 private:
  void stop_listening(TimePoint now);

  ZmqSocket& socket_;
  std::string endpoint_;
  ZmqSocket monitor_;
  uint64_t pauses_ = 0;
  uint64_t failed_handshakes_ = 0;  // a plain peer on a CURVE socket, say
  std::vector<int> disconnected_;
  bool listening_ = true;
  Duration backoff_ = seconds(1);
  TimePoint retry_at_ = TimePoint::max();
  LogLimiter log_limit_{seconds(60), 1, 3};
};

}  // namespace lrts::net
