// ProgressLink: ships progress bar changes from a worker to the progress server.
//
// DESIGN (latency balancing)
// At most one batch is in flight. The next one leaves when the previous one is acknowledged and
// at least `floor` after it was sent; if no acknowledgement comes within `ceiling`, the batch
// counts as lost and its bars are sent again with the next one. Between batches, changes to the
// same bar coalesce (only the newest state is kept), so the message rate is set by this clock,
// not by how fast tasks advance: on a fast link batches flow every `floor`, on a slow one they
// grow and slow down by themselves. The round trip is measured from the acknowledgements (EWMA).
// After the server restarts (a new epoch in its acknowledgements) every open bar is sent again.
// Tasks never wait for any of this. Without a server, an unanswered batch is followed, once per
// `ceiling`, by the open bars' newest state only (closed bars of an unanswered batch are not kept),
// so memory stays bounded by the bars open now; at most two batches wait in the socket for a
// connection.
//
// Not thread-safe: the worker's event loop owns it.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "net/auth.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::worker {

struct ProgressLinkOptions {
  std::string endpoint;  // ZeroMQ endpoint of the progress server
  bool ipv6 = false;
  std::string worker_name;
  Duration floor = milliseconds(20);
  Duration ceiling = seconds(1);
  std::optional<net::ClientAuth> auth;  // --auth: CURVE with the worker's key
};

struct ProgressLinkStats {
  uint64_t batches = 0;
  uint64_t bars_sent = 0;
  uint64_t unanswered = 0;
  double rtt_ewma_ms = 0;
};

class ProgressLink {
 public:
  ProgressLink(net::ZmqContext& ctx, ProgressLinkOptions options);

  void* socket() const { return dealer_.get(); }
  // The handshake monitor to poll; on_monitor when readable.
  void* monitor_socket() const { return handshakes_ ? handshakes_->monitor_socket() : nullptr; }
  void on_monitor(TimePoint now) {
    if (handshakes_) handshakes_->on_readable(now);
  }
  static constexpr size_t kMaxBarsPerBatch = 8192;
  static constexpr size_t kMaxOwners = 4096;
  // While bars are open, a batch leaves at least this often (empty if nothing changed): the
  // server takes a worker silent for long as dead and shows its open bars lost.
  static constexpr Duration kKeepalive = seconds(2);

  // Newest state per bar wins.
  void add(std::vector<protocol::BarState>& updates);
  // Which application a session belongs to; the server learns it with the next batch.
  void owner(uint64_t session, std::string_view application_id);
  // True when a batch could leave now (nothing in flight, floor passed).
  bool can_send(TimePoint now) const { return now >= send_allowed_at(); }
  // When the next batch may leave at the earliest (an acknowledgement can make it sooner).
  TimePoint send_allowed_at() const {
    return in_flight_ ? sent_at_ + options_.ceiling : last_send_ + options_.floor;
  }
  // Sends a batch if one can leave and there is something to say; expires a lost batch.
  void pump(TimePoint now);
  // Reads acknowledgements.
  void on_readable(TimePoint now);
  // When pump next has something to do; TimePoint::max() if nothing is pending.
  TimePoint next_deadline() const;
  bool idle() const { return dirty_.empty() && unsent_owners_.empty() && !in_flight_; }
  const ProgressLinkStats& stats() const { return stats_; }

 private:
  struct Key {
    protocol::TaskKey task;
    uint32_t attempt;
    uint32_t bar_no;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const noexcept {
      return protocol::TaskKeyHash{}(k.task) ^ (size_t{k.attempt} << 20) ^ k.bar_no;
    }
  };
  using BarMap = std::unordered_map<Key, protocol::BarState, KeyHash>;
  static Key key_of(const protocol::BarState& b) { return {b.key, b.attempt, b.bar_no}; }

  ProgressLinkOptions options_;
  net::ZmqSocket dealer_;
  std::unique_ptr<net::HandshakeGuard> handshakes_;
  BarMap dirty_;  // changed since the last batch
  BarMap in_flight_bars_;
  BarMap live_;                                       // every open bar, for a restarted server
  std::unordered_map<uint64_t, std::string> owners_;  // session -> application id
  std::deque<uint64_t> owner_order_;                  // oldest first
  std::vector<uint64_t> unsent_owners_;
  std::vector<uint64_t> in_flight_owners_;  // named in the batch in flight
  bool in_flight_ = false;
  uint64_t batch_seq_ = 0;
  uint64_t server_epoch_ = 0;
  TimePoint sent_at_{};
  TimePoint last_send_{};
  ProgressLinkStats stats_;
  std::string buf_;
};

}  // namespace lrts::worker
