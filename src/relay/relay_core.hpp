// RelayCore: what a relay decides, with no I/O — which worker connection is which `sub`, which
// heartbeats stop here and which go up, the upstream batches and summaries, the fan-out of
// RELAY_DOWN, and when a worker is gone. The daemon (relay.cc) owns the sockets, --auth and
// the upstream failover; the deterministic simulation drives the same core.
//
// DESIGN (see relay.hpp for the whole relay)
// - A worker's heartbeats stop here only once the scheduler has welcomed it through this
//   relay's current upstream connection: until then they go up, so that the scheduler, which
//   does not know the worker on this path (it came from a relay that died, or this relay's
//   upstream changed), asks it for a hello. A new upstream connection or scheduler run forgets
//   every welcome.
// - Absorbed heartbeats are answered as the scheduler would (one in kHeartbeatAckEvery, or at
//   once with a new interval); the changes go up in one RELAY_SUMMARY per interval, with the
//   subs that left.
// - A sub is never reused, so a late message for a departed worker finds nobody.
// Not thread-safe: one loop owns it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "protocol/messages.hpp"

namespace lrts::relay {

// Where the core's messages go.
class RelayLink {
 public:
  virtual ~RelayLink() = default;
  // To one worker connection; false when it is gone.
  virtual bool to_worker(std::string_view routing_id, std::string_view bytes) = 0;
  virtual void to_upstream(std::string_view bytes) = 0;
};

// Who sent a message, as the daemon's authentication saw it.
struct Sender {
  std::string_view identity;  // its member name (--auth), or empty
  bool relay = false;         // it may relay: its key is a relay's (or there is no --auth)
};

struct RelayCoreOptions {
  uint64_t uid = 0;  // names this relay run in its summaries
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
};

struct RelayStats {
  uint64_t up_messages = 0;
  uint64_t up_batches = 0;
  uint64_t down_messages = 0;
  uint64_t heartbeats = 0;  // absorbed here
  uint64_t gone = 0;        // workers that left
};

class RelayCore {
 public:
  static constexpr size_t kMaxSubs = 1'000'000;
  static constexpr size_t kBatchBytes = 1u << 20;  // an upstream batch leaves at this size
  static constexpr size_t kBatchItems = 4096;

  RelayCore(RelayCoreOptions options, RelayLink& link);

  // A message from a worker (or a relay below) on connection `routing_id`.
  void from_worker(std::string_view routing_id, std::string_view bytes, const Sender& from,
                   TimePoint now);
  // The connection ended (the daemon learnt it from libzmq).
  void connection_ended(std::string_view routing_id);
  // An ERROR to a connection, logged at most once a minute per text.
  void refuse(std::string_view routing_id, std::string_view text, TimePoint now);
  void from_upstream(std::string_view bytes, TimePoint now);
  // The daemon connected upstream anew (or libzmq did): nobody there knows our workers; each
  // is asked for a hello.
  void new_upstream();
  // Summaries every interval, sweeps of silent workers every second.
  void on_tick(TimePoint now);
  // Sends the upstream batch that waits.
  void flush();
  TimePoint next_deadline() const { return std::min(next_summary_, next_sweep_); }

  // When upstream last said anything, and how long it may be silent before the daemon tries
  // the next address.
  TimePoint upstream_heard() const { return up_heard_; }
  Duration upstream_silence() const;
  uint64_t epoch() const { return epoch_; }
  size_t workers() const { return subs_.size(); }
  const RelayStats& stats() const { return stats_; }

 private:
  struct Sub {
    std::string routing_id;
    std::string identity;
    bool relay = false;
    bool welcomed = false;  // by the scheduler, through the current upstream
    bool has_beat = false;
    bool changed = false;  // listed in changed_
    TimePoint last_heard{};
    TimePoint last_ack{};
    TimePoint memory_sent{};
    uint32_t told_ms = 0;
    protocol::RelayBeat beat;  // its last heartbeat
    protocol::RelayBeat sent;  // as last summarised
  };
  struct UpItem {
    uint32_t sub;
    std::string identity;
    bool relay;
    std::string message;
  };

  void absorb(Sub& s, uint32_t sub, const protocol::WorkerHeartbeat& hb, TimePoint now);
  void ack_heartbeat(Sub& s, TimePoint now);
  void drop_sub(uint32_t sub);
  void sweep(TimePoint now);
  void send_summary(TimePoint now);

  RelayCoreOptions options_;
  RelayLink& link_;
  // What the scheduler said in its last RELAY_ACK.
  uint64_t epoch_ = 0;
  uint32_t summary_ms_ = 1000;
  uint32_t worker_hb_ms_ = 1000;
  Duration worker_timeout_ = seconds(10);
  TimePoint up_heard_{};
  TimePoint next_summary_{};
  TimePoint next_sweep_{};

  std::unordered_map<uint32_t, Sub> subs_;
  std::unordered_map<std::string, uint32_t> sub_by_id_;
  uint32_t next_sub_ = 1;
  std::vector<uint32_t> changed_;
  std::vector<uint32_t> gone_;
  std::vector<UpItem> up_batch_;
  size_t up_bytes_ = 0;
  std::string buf_;
  RelayStats stats_;
  LogLimiter log_limit_{seconds(60), 1, 64};
};

}  // namespace lrts::relay
