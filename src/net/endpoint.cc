#include "net/endpoint.hpp"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <cstdlib>
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

Result<std::vector<Endpoint>> connect_endpoints(const std::string& list, int port) {
  std::vector<Endpoint> out;
  size_t start = 0;
  while (start <= list.size()) {
    size_t end = list.find(',', start);
    if (end == std::string::npos) end = list.size();
    std::string item = list.substr(start, end - start);
    start = end + 1;
    if (item.empty()) return make_error("empty address in the list '" + list + "'");
    int item_port = port;
    // host:port, [v6]:port; a bare IPv6 literal (several colons) takes `port`.
    std::string host = item;
    if (item.front() == '[') {
      const size_t close = item.find(']');
      if (close == std::string::npos) return make_error("unclosed '[' in address '" + item + "'");
      host = item.substr(1, close - 1);
      if (close + 1 < item.size()) {
        if (item[close + 1] != ':') return make_error("bad address '" + item + "'");
        item = item.substr(close + 2);
        char* stop = nullptr;
        const long p = std::strtol(item.c_str(), &stop, 10);
        if (item.empty() || *stop || p < 1 || p > 65535) {
          return make_error("bad port in address '" + item + "'");
        }
        item_port = static_cast<int>(p);
      }
    } else if (const size_t colon = item.find(':');
               colon != std::string::npos && item.find(':', colon + 1) == std::string::npos) {
      host = item.substr(0, colon);
      const std::string ps = item.substr(colon + 1);
      char* stop = nullptr;
      const long p = std::strtol(ps.c_str(), &stop, 10);
      if (ps.empty() || *stop || p < 1 || p > 65535) {
        return make_error("bad port in address '" + item + "' (host:port, 1-65535)");
      }
      item_port = static_cast<int>(p);
    }
    auto ep = connect_endpoint(host, item_port);
    if (!ep) return Error{ep.error()};
    out.push_back(std::move(*ep));
    if (end == list.size()) break;
  }
  return out;
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
