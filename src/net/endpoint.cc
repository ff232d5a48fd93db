#include "net/endpoint.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstring>

namespace lrts::net {
namespace {

Result<std::string> resolve(const std::string& host, bool* ipv6) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    return make_error("cannot resolve address '" + host + "': " + ::gai_strerror(rc));
  }
  char buf[INET6_ADDRSTRLEN] = {};
  // Prefer IPv4 when a name has both.
  const addrinfo* pick = res;
  for (const addrinfo* p = res; p; p = p->ai_next) {
    if (p->ai_family == AF_INET) {
      pick = p;
      break;
    }
  }
  if (pick->ai_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(pick->ai_addr)->sin_addr, buf, sizeof buf);
    *ipv6 = false;
  } else {
    ::inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(pick->ai_addr)->sin6_addr, buf,
                sizeof buf);
    *ipv6 = true;
  }
  ::freeaddrinfo(res);
  return std::string(buf);
}

std::string format(const std::string& host, bool ipv6, int port) {
  if (ipv6) return "tcp://[" + host + "]:" + std::to_string(port);
  return "tcp://" + host + ":" + std::to_string(port);
}

}  // namespace

Status check_port(int port, const char* what) {
  if (port < 1 || port > 65535) {
    return make_error(std::string(what) + " " + std::to_string(port) +
                      " is not a valid TCP port (1-65535)");
  }
  return {};
}

Result<Endpoint> connect_endpoint(const std::string& host, int port) {
  if (auto s = check_port(port, "port"); !s) return Error{s.error()};
  if (host.empty()) return make_error("empty address");
  bool ipv6 = false;
  auto ip = resolve(host, &ipv6);
  if (!ip) return Error{ip.error()};
  const bool literal_v6 = host.find(':') != std::string::npos;
  return Endpoint{format(literal_v6 ? host : (ipv6 ? *ip : host), ipv6, port), ipv6};
}

Result<Endpoint> bind_endpoint(const std::string& host, int port) {
  if (auto s = check_port(port, "port"); !s) return Error{s.error()};
  if (host == "*" || host == "0.0.0.0") return Endpoint{format("*", false, port), false};
  if (host == "::") return Endpoint{"tcp://[::]:" + std::to_string(port), true};
  bool ipv6 = false;
  auto ip = resolve(host, &ipv6);
  if (!ip) return Error{ip.error()};
  return Endpoint{format(*ip, ipv6, port), ipv6};
}

}  // namespace lrts::net
