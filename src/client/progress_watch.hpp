// ProgressWatch: a subscription to the progress server polled by its owner's loop — the bars of
// one application's tasks, or of every task — for `lrts tasks` and the dashboard. Renews the
// subscription every 2 s (a restarted server learns of it again), keeps the latest state of
// each bar, bounded. Not thread-safe: the owner locks around it when threads share it.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "net/auth.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/ids.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::client {

class ProgressWatch {
 public:
  static constexpr size_t kMaxTasks = 200'000;  // the oldest closed tasks' bars go first

  // `auth_dir` empty: no CURVE. `application_id` empty: every bar the key may see.
  static Result<std::unique_ptr<ProgressWatch>> open(const std::string& address, int port,
                                                     const std::string& auth_dir,
                                                     const std::string& application_id);
  void* socket() const { return sock_.get(); }
  void* monitor_socket() const { return handshakes_->monitor_socket(); }
  // Reads what arrived, renews the subscription when due.
  void pump(TimePoint now);
  TimePoint next_deadline() const;
  // A full snapshot arrived since open (or since the server restarted).
  bool answered() const { return answered_; }
  uint64_t updates() const { return updates_; }
  const std::vector<protocol::BarState>* bars_of(const protocol::TaskKey& key) const;

 private:
  ProgressWatch() = default;
  void store(const protocol::BarState& b);

  net::ZmqContext ctx_;
  net::ZmqSocket sock_{ctx_, ZMQ_DEALER};
  std::unique_ptr<net::HandshakeGuard> handshakes_;
  std::string application_id_;
  std::string buf_;
  TimePoint next_subscribe_{};
  bool answered_ = false;
  bool in_snapshot_ = false;
  uint64_t updates_ = 0;
  std::unordered_map<protocol::TaskKey, std::vector<protocol::BarState>, protocol::TaskKeyHash>
      bars_;
};

// A bar as the dashboard and `lrts tasks --json` show it.
std::string bar_json(const protocol::BarState& b);

}  // namespace lrts::client
