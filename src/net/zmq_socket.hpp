// Thin RAII over the libzmq C API. A ZmqSocket belongs to one thread (libzmq sockets are not
// thread-safe); the context may be shared.
#pragma once

#include <zmq.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "common/result.hpp"

namespace lrts::net {

class ZmqContext {
 public:
  ZmqContext();
  ~ZmqContext();
  ZmqContext(const ZmqContext&) = delete;
  ZmqContext& operator=(const ZmqContext&) = delete;
  void* get() const { return ctx_; }

 private:
  void* ctx_;
};

// One received frame. Owns its zmq_msg_t; the data stays valid while the object lives.
class ZmqFrame {
 public:
  ZmqFrame() { zmq_msg_init(&msg_); }
  ~ZmqFrame() { zmq_msg_close(&msg_); }
  ZmqFrame(const ZmqFrame&) = delete;
  ZmqFrame& operator=(const ZmqFrame&) = delete;

  const char* data() const { return static_cast<const char*>(zmq_msg_data(&msg_)); }
  size_t size() const { return zmq_msg_size(&msg_); }
  std::string_view view() const { return {data(), size()}; }
  bool more() const { return zmq_msg_more(&msg_) != 0; }
  zmq_msg_t* raw() { return &msg_; }

 private:
  mutable zmq_msg_t msg_;
};

enum class SendResult { kSent, kWouldBlock, kUnreachable, kError };

class ZmqSocket {
 public:
  ZmqSocket() = default;
  ZmqSocket(ZmqContext& ctx, int type);
  ZmqSocket(ZmqSocket&& o) noexcept : s_(std::exchange(o.s_, nullptr)) {}
  ZmqSocket& operator=(ZmqSocket&& o) noexcept;
  ZmqSocket(const ZmqSocket&) = delete;
  ZmqSocket& operator=(const ZmqSocket&) = delete;
  ~ZmqSocket() { close(); }

  void* get() const { return s_; }
  void close();
  void set_int(int option, int value);
  Status bind(const std::string& endpoint);
  Status connect(const std::string& endpoint);
  Status disconnect(const std::string& endpoint);
  std::string last_endpoint() const;

  // Non-blocking sends. `more` marks a frame that is followed by another one.
  SendResult send(std::string_view frame, bool more = false);
  // Sends [identity][payload] on a ROUTER.
  SendResult send_to(std::string_view identity, std::string_view payload);
  // Non-blocking receive of one frame; false when nothing is waiting.
  bool recv(ZmqFrame& frame);

 private:
  void* s_ = nullptr;
};

std::string zmq_error_text();

// Watches `socket`'s `events` (zmq_socket_monitor): a PAIR socket to poll, empty if libzmq
// refused. `socket` must outlive it.
ZmqSocket open_monitor(ZmqContext& ctx, ZmqSocket& socket, int events);
struct MonitorEvent {
  uint16_t kind = 0;  // ZMQ_EVENT_*
  int32_t value = 0;  // errno, status code, ... depending on the kind
};
// The next event waiting on a monitor socket, if any.
std::optional<MonitorEvent> read_monitor_event(ZmqSocket& monitor);

}  // namespace lrts::net
