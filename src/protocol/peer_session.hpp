// PeerSession: how a worker or an application keeps its session with the scheduler — the rules
// both follow, in one place, with the current time passed in (no clock, no socket).
//
// - A peer says hello first, and again when an unanswered hello is kHelloRetry old (the first
//   one may have gone to a scheduler that died since).
// - "hello required" (the scheduler does not know this connection: it restarted) and a
//   heartbeat acknowledgement carrying a new epoch both ask for a new hello, at most once per
//   kHelloDebounce: a burst of replies to messages sent before the hello must not make a burst
//   of hellos.
// - Heartbeats go every interval the scheduler's welcome (or latest acknowledgement) names. The
//   scheduler answers one in
//   protocol::kHeartbeatAckEvery (a sign of life only), so a peer counts the scheduler silent
//   after three such periods (and never sooner than kMinSilence) without hearing anything.
// Not thread-safe: one loop owns it.
#pragma once

#include <cstdint>

#include "common/clock.hpp"
#include "protocol/messages.hpp"

namespace lrts::protocol {

class PeerSession {
 public:
  static constexpr Duration kHelloRetry = seconds(2);
  static constexpr Duration kHelloDebounce = milliseconds(500);
  static constexpr Duration kMinSilence = seconds(30);
  static constexpr int kSilentAfterAckPeriods = 3;

  explicit PeerSession(size_t own_max_message = kDefaultMaxMessageBytes)
      : peer_max_message_(own_max_message) {}

  enum class Due { kNothing, kHello, kHeartbeat };
  // What the peer should send at `now` (call when next_deadline() has passed).
  Due due(TimePoint now) const;
  TimePoint next_deadline() const;

  // The peer sent a hello or a heartbeat.
  void hello_sent(TimePoint now);
  void heartbeat_sent(TimePoint now);

  // Anything arrived from the scheduler. Returns true when it had been silent (now answering).
  bool heard(TimePoint now);
  // A welcome. Returns true when it comes from another scheduler run than the last one.
  bool on_welcome(uint64_t epoch, uint32_t heartbeat_ms, uint64_t max_message, TimePoint now);
  // "hello required", or a heartbeat acknowledgement: true when a hello should go now.
  bool on_hello_required(TimePoint now);
  // `heartbeat_ms` non-zero: the interval to heartbeat at from now on.
  bool on_heartbeat_ack(uint64_t epoch, uint32_t heartbeat_ms, TimePoint now);
  // The link now leads to another address (a failover): a hello is due at once and silence
  // counts from now.
  void on_new_link(TimePoint now);
  // True once, when the scheduler has just become silent past the rule (checked by the caller
  // on each heartbeat); heard() then returns true when it answers again.
  bool became_silent(TimePoint now);
  bool silent() const { return silent_; }

  bool welcomed() const { return welcomed_; }
  bool ever_welcomed() const { return ever_welcomed_; }
  uint64_t epoch() const { return epoch_; }
  Duration heartbeat_interval() const { return heartbeat_; }
  // How large a message the scheduler takes (what it said, never below kMinMaxMessageBytes).
  size_t peer_max_message() const { return peer_max_message_; }

 private:
  Duration heartbeat_ = seconds(1);  // until the scheduler says otherwise
  TimePoint last_hello_ = TimePoint{};
  TimePoint next_heartbeat_ = TimePoint{};
  TimePoint last_heard_ = TimePoint{};
  uint64_t epoch_ = 0;
  size_t peer_max_message_;
  bool welcomed_ = false;
  bool ever_welcomed_ = false;
  bool silent_ = false;
};

}  // namespace lrts::protocol
