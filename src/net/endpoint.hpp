// Addresses as users type them ("127.0.0.1", "::1", "scheduler.local") turned into ZeroMQ
// endpoints, with checks that give a one-line reason when they cannot work.
#pragma once

#include <string>
#include <vector>

#include "common/result.hpp"

namespace lrts::net {

struct Endpoint {
  std::string zmq;    // "tcp://127.0.0.1:5555" or "tcp://[::1]:5555"
  bool ipv6 = false;  // the socket needs ZMQ_IPV6
};

// For connecting: the host must resolve now (the name, not the address, goes to ZeroMQ, so a
// peer that moves is found again on reconnect).
Result<Endpoint> connect_endpoint(const std::string& host, int port);
// A list "a,b:5556,[::1]:5557" for failover: each a host, with its own port or `port`. Every
// host must resolve now.
Result<std::vector<Endpoint>> connect_endpoints(const std::string& list, int port);
// For binding: "*" or "0.0.0.0" means every interface; a name is resolved to one address.
Result<Endpoint> bind_endpoint(const std::string& host, int port);

Status check_port(int port, const char* what);

}  // namespace lrts::net
