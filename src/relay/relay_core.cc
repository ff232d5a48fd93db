#include "relay/relay_core.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "protocol/codec.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::relay {

namespace {

// Upstream silent this long (no RELAY_ACK): the daemon tries the next address.
constexpr Duration kMinUpstreamSilence = seconds(10);
// A worker's memory figure changes all the time: sent with its other changes, or this often.
constexpr Duration kMemoryEvery = seconds(10);

// The type of a message, read from its first elements without decoding the rest.
int peek_type(std::string_view bytes) {
  protocol::mp::Reader r(bytes);
  const uint32_t n = r.array();
  if (!r.ok() || n < 2) return -1;
  if (r.uint() != protocol::kVersion || !r.ok()) return -1;
  const uint64_t type = r.uint_max(255);
  return r.ok() ? static_cast<int>(type) : -1;
}

constexpr int type_of(protocol::MsgType t) { return static_cast<int>(t); }

}  // namespace

RelayCore::RelayCore(RelayCoreOptions options, RelayLink& link) : options_(options), link_(link) {}

Duration RelayCore::upstream_silence() const {
  return std::max<Duration>(kMinUpstreamSilence, 3 * milliseconds(summary_ms_));
}

void RelayCore::from_worker(std::string_view routing_id, std::string_view bytes, const Sender& from,
                            TimePoint now) {
  const std::string rid(routing_id);
  auto it = sub_by_id_.find(rid);
  uint32_t sub;
  if (it == sub_by_id_.end()) {
    if (subs_.size() >= kMaxSubs)
      return refuse(routing_id, "this relay holds the most workers", now);
    sub = next_sub_++;
    if (next_sub_ == 0) next_sub_ = 1;
    Sub& s = subs_[sub];
    s.routing_id = rid;
    s.identity.assign(from.identity);
    s.relay = from.relay;
    sub_by_id_.emplace(rid, sub);
  } else {
    sub = it->second;
  }
  Sub& s = subs_[sub];
  s.last_heard = now;  // anything a worker sends counts as a heartbeat
  const int type = peek_type(bytes);
  if (type == type_of(protocol::MsgType::kWorkerHeartbeat) && s.welcomed) {
    auto m = protocol::decode<protocol::ToScheduler>(bytes, options_.max_message_bytes);
    if (m && std::holds_alternative<protocol::WorkerHeartbeat>(*m)) {
      return absorb(s, sub, std::get<protocol::WorkerHeartbeat>(*m), now);
    }
    // Malformed: the scheduler answers it.
  }
  if ((type == type_of(protocol::MsgType::kRelayed) ||
       type == type_of(protocol::MsgType::kRelaySummary)) &&
      !s.relay) {
    return refuse(routing_id, "this key is not a relay key: it cannot relay workers", now);
  }
  up_batch_.push_back({sub, s.identity, s.relay, std::string(bytes)});
  up_bytes_ += bytes.size();
  ++stats_.up_messages;
  if (up_bytes_ >= kBatchBytes || up_batch_.size() >= kBatchItems) flush();
}

void RelayCore::absorb(Sub& s, uint32_t sub, const protocol::WorkerHeartbeat& hb, TimePoint now) {
  ++stats_.heartbeats;
  s.beat = {sub, hb.capacity, hb.running, hb.memory_bytes, hb.draining};
  s.has_beat = true;
  const bool differs = s.beat.capacity != s.sent.capacity || s.beat.running != s.sent.running ||
                       s.beat.draining != s.sent.draining;
  const bool memory =
      s.beat.memory_bytes != s.sent.memory_bytes && now - s.memory_sent >= kMemoryEvery;
  if ((differs || memory) && !s.changed) {
    s.changed = true;
    changed_.push_back(sub);
  }
  ack_heartbeat(s, now);
}

// Answered as the scheduler would: one in kHeartbeatAckEvery, or at once with a new interval.
void RelayCore::ack_heartbeat(Sub& s, TimePoint now) {
  if (epoch_ == 0) return;  // not heard from the scheduler yet
  if (s.told_ms == worker_hb_ms_ &&
      now - s.last_ack < protocol::kHeartbeatAckEvery * milliseconds(worker_hb_ms_)) {
    return;
  }
  s.told_ms = worker_hb_ms_;
  s.last_ack = now;
  buf_.clear();
  protocol::encode(protocol::HeartbeatAck{epoch_, worker_hb_ms_}, buf_);
  (void)link_.to_worker(s.routing_id, buf_);  // gone since: the sweep or the notify says so
}

void RelayCore::connection_ended(std::string_view routing_id) {
  if (auto it = sub_by_id_.find(std::string(routing_id)); it != sub_by_id_.end()) {
    drop_sub(it->second);
  }
}

void RelayCore::refuse(std::string_view routing_id, std::string_view text, TimePoint now) {
  uint64_t suppressed = 0;
  if (log_limit_.allow(std::string(text), now, &suppressed)) {
    LRTS_WARN("refused a peer: {}{}", text,
              suppressed ? " (" + std::to_string(suppressed) + " more not logged)" : "");
  }
  buf_.clear();
  protocol::encode(protocol::ErrorMsg{protocol::ErrorCode::kForbidden, text}, buf_);
  (void)link_.to_worker(routing_id, buf_);
}

void RelayCore::flush() {
  if (up_batch_.empty()) return;
  protocol::Relayed r;
  r.items.reserve(up_batch_.size());
  for (const auto& i : up_batch_) r.items.push_back({i.sub, i.identity, i.relay, i.message});
  buf_.clear();
  protocol::encode(r, buf_);
  link_.to_upstream(buf_);
  ++stats_.up_batches;
  up_batch_.clear();
  up_bytes_ = 0;
}

void RelayCore::from_upstream(std::string_view bytes, TimePoint now) {
  auto m = protocol::decode<protocol::ToRelay>(bytes, options_.max_message_bytes + (1u << 20));
  if (!m) {
    uint64_t suppressed = 0;
    if (log_limit_.allow("bad up", now, &suppressed)) {
      LRTS_WARN("dropped a bad message from upstream: {}", m.error().text);
    }
    return;
  }
  up_heard_ = now;
  if (const auto* down = std::get_if<protocol::RelayDown>(&*m)) {
    for (const auto& item : down->items) {
      auto it = subs_.find(item.sub);
      if (it == subs_.end()) continue;  // gone: the scheduler hears so in the summary
      ++stats_.down_messages;
      if (peek_type(item.message) == type_of(protocol::MsgType::kWorkerWelcome)) {
        it->second.welcomed = true;
      }
      if (!link_.to_worker(it->second.routing_id, item.message)) drop_sub(item.sub);
    }
  } else if (const auto* ack = std::get_if<protocol::RelayAck>(&*m)) {
    if (epoch_ != ack->scheduler_epoch && epoch_ != 0) {
      LRTS_INFO("the scheduler restarted (new epoch): its workers say hello again");
      new_upstream();
    }
    epoch_ = ack->scheduler_epoch;
    if (ack->heartbeat_ms) summary_ms_ = ack->heartbeat_ms;
    if (ack->worker_heartbeat_ms) worker_hb_ms_ = ack->worker_heartbeat_ms;
    if (ack->worker_timeout_ms) worker_timeout_ = milliseconds(ack->worker_timeout_ms);
  } else if (const auto* err = std::get_if<protocol::ErrorMsg>(&*m)) {
    if (err->code == protocol::ErrorCode::kHelloRequired) return new_upstream();  // from above
    uint64_t suppressed = 0;
    if (log_limit_.allow("error " + std::to_string(static_cast<int>(err->code)), now,
                         &suppressed)) {
      LRTS_ERROR("upstream: {}", err->text);
    }
  }
}

// Nobody upstream knows our workers on this connection any more: each is asked for a hello now
// (a relay below passes the request on to its own), not at its next heartbeat, which may be
// minutes away at a long interval.
void RelayCore::new_upstream() {
  buf_.clear();
  protocol::encode(protocol::ErrorMsg{protocol::ErrorCode::kHelloRequired,
                                      "the relay's upstream connection is new: send hello"},
                   buf_);
  for (auto& [sub, s] : subs_) {
    s.welcomed = false;
    (void)link_.to_worker(s.routing_id, buf_);
  }
}

void RelayCore::drop_sub(uint32_t sub) {
  auto it = subs_.find(sub);
  if (it == subs_.end()) return;
  sub_by_id_.erase(it->second.routing_id);
  subs_.erase(it);
  gone_.push_back(sub);
  ++stats_.gone;
}

// Workers silent past their timeout are gone (those whose connection ended are gone already).
void RelayCore::sweep(TimePoint now) {
  std::vector<uint32_t> silent;
  for (const auto& [sub, s] : subs_) {
    if (now - s.last_heard > worker_timeout_) silent.push_back(sub);
  }
  for (uint32_t sub : silent) drop_sub(sub);
}

void RelayCore::on_tick(TimePoint now) {
  if (now >= next_sweep_) {
    next_sweep_ = now + seconds(1);
    sweep(now);
  }
  if (now >= next_summary_) {
    next_summary_ = now + milliseconds(summary_ms_);
    flush();  // what workers said before the summary goes first
    send_summary(now);
  }
}

void RelayCore::send_summary(TimePoint now) {
  protocol::RelaySummary m;
  m.relay_uid = options_.uid;
  m.workers = static_cast<uint32_t>(subs_.size());
  size_t taken = 0;
  for (; taken < changed_.size() && m.beats.size() < protocol::kMaxRelayItems; ++taken) {
    auto it = subs_.find(changed_[taken]);
    if (it == subs_.end()) continue;
    Sub& s = it->second;
    s.changed = false;
    if (s.beat.memory_bytes != s.sent.memory_bytes) s.memory_sent = now;
    s.sent = s.beat;
    m.beats.push_back(s.beat);
  }
  changed_.erase(changed_.begin(), changed_.begin() + static_cast<std::ptrdiff_t>(taken));
  const size_t n_gone = std::min<size_t>(gone_.size(), protocol::kMaxRelayItems);
  m.gone.assign(gone_.begin(), gone_.begin() + static_cast<std::ptrdiff_t>(n_gone));
  gone_.erase(gone_.begin(), gone_.begin() + static_cast<std::ptrdiff_t>(n_gone));
  buf_.clear();
  protocol::encode(m, buf_);
  link_.to_upstream(buf_);
}

}  // namespace lrts::relay
