#include "protocol/peer_session.hpp"

#include <algorithm>

namespace lrts::protocol {

PeerSession::Due PeerSession::due(TimePoint now) const {
  if (!welcomed_ && now - last_hello_ >= kHelloRetry) return Due::kHello;
  if (now >= next_heartbeat_) return welcomed_ ? Due::kHeartbeat : Due::kHello;
  return Due::kNothing;
}

TimePoint PeerSession::next_deadline() const {
  TimePoint next = next_heartbeat_;
  if (!welcomed_) next = std::min(next, last_hello_ + kHelloRetry);
  return next;
}

void PeerSession::hello_sent(TimePoint now) {
  last_hello_ = now;
  welcomed_ = false;
  next_heartbeat_ = now + heartbeat_;
  if (last_heard_ == TimePoint{}) last_heard_ = now;  // silence counts from the first hello
}

void PeerSession::heartbeat_sent(TimePoint now) { next_heartbeat_ = now + heartbeat_; }

bool PeerSession::heard(TimePoint now) {
  last_heard_ = now;
  const bool was_silent = silent_;
  silent_ = false;
  return was_silent;
}

bool PeerSession::on_welcome(uint64_t epoch, uint32_t heartbeat_ms, uint64_t max_message,
                             TimePoint now) {
  const bool restarted = epoch_ != 0 && epoch_ != epoch;
  epoch_ = epoch;
  welcomed_ = true;
  ever_welcomed_ = true;
  if (heartbeat_ms > 0) {
    heartbeat_ = milliseconds(heartbeat_ms);
    next_heartbeat_ = std::min(next_heartbeat_, now + heartbeat_);
  }
  if (max_message > 0) {
    peer_max_message_ = std::max<size_t>(kMinMaxMessageBytes, static_cast<size_t>(max_message));
  }
  return restarted;
}

bool PeerSession::on_hello_required(TimePoint now) {
  return welcomed_ || now - last_hello_ > kHelloDebounce;
}

bool PeerSession::on_heartbeat_ack(uint64_t epoch, uint32_t heartbeat_ms, TimePoint now) {
  const bool restarted = epoch != epoch_;
  if (heartbeat_ms > 0 && !restarted) {
    // The scheduler lengthens (or shortens) the interval as peers come and go.
    heartbeat_ = milliseconds(heartbeat_ms);
    next_heartbeat_ = std::min(next_heartbeat_, now + heartbeat_);
  }
  return restarted && now - last_hello_ > kHelloDebounce;
}

void PeerSession::on_new_link(TimePoint now) {
  welcomed_ = false;
  last_hello_ = TimePoint{};
  next_heartbeat_ = now;
  last_heard_ = now;
}

bool PeerSession::became_silent(TimePoint now) {
  if (silent_ || last_heard_ == TimePoint{}) return false;
  const Duration limit =
      std::max<Duration>(kSilentAfterAckPeriods * kHeartbeatAckEvery * heartbeat_, kMinSilence);
  if (now - last_heard_ <= limit) return false;
  silent_ = true;
  return true;
}

}  // namespace lrts::protocol
