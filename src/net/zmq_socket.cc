#include "net/zmq_socket.hpp"

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace lrts::net {

std::string zmq_error_text() { return zmq_strerror(zmq_errno()); }

ZmqSocket open_monitor(ZmqContext& ctx, ZmqSocket& socket, int events) {
  static std::atomic<int> counter{0};
  const std::string address = "inproc://lrts-monitor-" + std::to_string(counter++);
  if (zmq_socket_monitor(socket.get(), address.c_str(), events) != 0) return {};
  ZmqSocket monitor(ctx, ZMQ_PAIR);
  if (!monitor.connect(address)) return {};
  return monitor;
}

std::optional<MonitorEvent> read_monitor_event(ZmqSocket& monitor) {
  ZmqFrame event, address;
  while (monitor.get() && monitor.recv(event)) {
    if (event.more()) monitor.recv(address);
    if (event.size() < 6) continue;
    MonitorEvent e;
    std::memcpy(&e.kind, event.data(), 2);
    std::memcpy(&e.value, event.data() + 2, 4);
    return e;
  }
  return std::nullopt;
}

ZmqContext::ZmqContext() : ctx_(zmq_ctx_new()) {
  if (!ctx_) std::abort();
  zmq_ctx_set(ctx_, ZMQ_IO_THREADS, 1);
  zmq_ctx_set(ctx_, ZMQ_BLOCKY, 0);  // sockets close without waiting unless they set LINGER
}

ZmqContext::~ZmqContext() { zmq_ctx_term(ctx_); }

ZmqSocket::ZmqSocket(ZmqContext& ctx, int type) : s_(zmq_socket(ctx.get(), type)) {
  if (!s_) std::abort();
  set_int(ZMQ_LINGER, 0);
}

ZmqSocket& ZmqSocket::operator=(ZmqSocket&& o) noexcept {
  if (this != &o) {
    close();
    s_ = std::exchange(o.s_, nullptr);
  }
  return *this;
}

void ZmqSocket::close() {
  if (s_) zmq_close(s_);
  s_ = nullptr;
}

void ZmqSocket::set_int(int option, int value) { zmq_setsockopt(s_, option, &value, sizeof value); }

Status ZmqSocket::bind(const std::string& endpoint) {
  if (zmq_bind(s_, endpoint.c_str()) != 0) {
    return make_error("cannot listen on " + endpoint + ": " + zmq_error_text());
  }
  return {};
}

Status ZmqSocket::connect(const std::string& endpoint) {
  if (zmq_connect(s_, endpoint.c_str()) != 0) {
    return make_error("cannot connect to " + endpoint + ": " + zmq_error_text());
  }
  return {};
}

Status ZmqSocket::disconnect(const std::string& endpoint) {
  if (zmq_disconnect(s_, endpoint.c_str()) != 0) {
    return make_error("cannot disconnect from " + endpoint + ": " + zmq_error_text());
  }
  return {};
}

std::string ZmqSocket::last_endpoint() const {
  char buf[256];
  size_t len = sizeof buf;
  if (zmq_getsockopt(s_, ZMQ_LAST_ENDPOINT, buf, &len) != 0 || len == 0) return {};
  return std::string(buf, len - 1);
}

SendResult ZmqSocket::send(std::string_view frame, bool more) {
  const int flags = ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0);
  for (;;) {
    if (zmq_send(s_, frame.data(), frame.size(), flags) >= 0) return SendResult::kSent;
    const int e = zmq_errno();
    if (e == EINTR) continue;
    if (e == EAGAIN) return SendResult::kWouldBlock;
    if (e == EHOSTUNREACH) return SendResult::kUnreachable;
    return SendResult::kError;
  }
}

SendResult ZmqSocket::send_to(std::string_view identity, std::string_view payload) {
  SendResult r = send(identity, true);
  if (r != SendResult::kSent) return r;
  return send(payload, false);
}

bool ZmqSocket::recv(ZmqFrame& frame) {
  for (;;) {
    if (zmq_msg_recv(frame.raw(), s_, ZMQ_DONTWAIT) >= 0) return true;
    if (zmq_errno() == EINTR) continue;
    return false;
  }
}

}  // namespace lrts::net
