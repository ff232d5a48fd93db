#include "net/listener.hpp"

#include <dirent.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstring>

#include "common/log.hpp"

namespace lrts::net {

std::pair<size_t, size_t> descriptor_use() {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  const auto limit = static_cast<size_t>(rl.rlim_cur);
  size_t open = 0;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return {limit, limit};  // not even one descriptor left to look
  while (::readdir(d)) ++open;
  ::closedir(d);
  return {open > 3 ? open - 3 : 0, limit};  // ".", ".." and the directory itself
}

void raise_descriptor_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

ListenerGuard::ListenerGuard(ZmqContext& ctx, ZmqSocket& socket, std::string endpoint,
                             bool track_disconnects)
    : socket_(socket), endpoint_(std::move(endpoint)) {
  // Failed handshakes too: with --auth, a peer that does not speak CURVE is refused during the
  // handshake, before any authentication request, and would otherwise go unnoticed.
  monitor_ = open_monitor(ctx, socket,
                          ZMQ_EVENT_ACCEPT_FAILED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                              ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                              (track_disconnects ? ZMQ_EVENT_DISCONNECTED : 0));
  if (!monitor_.get()) {
    LRTS_WARN("cannot watch {} for accept failures: {}", endpoint_, zmq_error_text());
  }
}

void ListenerGuard::on_readable(TimePoint now) {
  bool exhausted = false;
  while (const auto e = read_monitor_event(monitor_)) {
    const uint16_t kind = e->kind;
    exhausted |= kind == ZMQ_EVENT_ACCEPT_FAILED && (e->value == EMFILE || e->value == ENFILE);
    if (kind == ZMQ_EVENT_DISCONNECTED) {
      if (disconnected_.size() < 1'000'000) disconnected_.push_back(e->value);
      continue;
    }
    if (kind == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ||
        kind == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) {
      ++failed_handshakes_;
      uint64_t suppressed = 0;
      if (log_limit_.allow("handshake", now, &suppressed)) {
        LRTS_WARN(
            "a peer on {} failed the handshake (without --auth keys, or with another cluster's "
            "scheduler.pub?): no connection; {} so far",
            endpoint_, failed_handshakes_);
      }
    }
  }
  if (exhausted && listening_) stop_listening(now);
}

void ListenerGuard::stop_listening(TimePoint now) {
  const auto [open, limit] = descriptor_use();
  if (zmq_unbind(socket_.get(), endpoint_.c_str()) != 0) return;
  listening_ = false;
  ++pauses_;
  retry_at_ = now + backoff_;
  uint64_t suppressed = 0;
  LRTS_DEBUG("out of file descriptors ({} open, limit {}): stopped listening on {}", open, limit,
             endpoint_);
  if (log_limit_.allow("stop", now, &suppressed)) {
    LRTS_WARN(
        "out of file descriptors ({} open, limit {}): stopped listening on {} for a while; "
        "its peers reconnect when it listens again (stopped {} time(s); raise the limit "
        "with ulimit -n)",
        open, limit, endpoint_, pauses_);
  }
}

void ListenerGuard::on_tick(TimePoint now) {
  if (listening_ || now < retry_at_) return;
  const auto [open, limit] = descriptor_use();
  if (open * 10 >= limit * 9 || !socket_.bind(endpoint_)) {
    backoff_ = std::min<Duration>(backoff_ * 2, seconds(30));
    retry_at_ = now + backoff_;
    return;
  }
  listening_ = true;
  backoff_ = seconds(1);
  uint64_t suppressed = 0;
  LRTS_DEBUG("listening on {} again ({} of {} file descriptors in use)", endpoint_, open, limit);
  if (log_limit_.allow("again", now, &suppressed)) {
    LRTS_INFO("listening on {} again ({} of {} file descriptors in use)", endpoint_, open, limit);
  }
}

}  // namespace lrts::net
