#include "client/session.hpp"

#include <algorithm>

#include "common/log.hpp"

namespace lrts::client {

namespace {

ServiceResult to_result(const protocol::AppResult& item, std::string payload) {
  const auto status = static_cast<uint8_t>(item.status) <= 3
                          ? static_cast<ServiceStatus>(item.status)
                          : ServiceStatus::failed;
  return ServiceResult(protocol::format_service_id(item.key), status, std::move(payload),
                       item.attempt, std::string(item.worker),
                       std::chrono::nanoseconds(static_cast<int64_t>(item.run_ns)));
}

}  // namespace

SessionCore::SessionCore(SessionOptions options, SessionLink& link)
    : options_(std::move(options)),
      link_(link),
      session_(options_.max_message_bytes),
      limits_(protocol::send_limits_for(protocol::kMinMaxMessageBytes)),
      fields_tx_(limits_.stream) {}

// ---- from the user --------------------------------------------------------------------------

void SessionCore::submit(Submission s) {
  const TaskKey key{options_.session, s.seq};
  if (unacked_.empty()) {
    base_seq_ = s.seq;
    next_unsent_ = std::max(next_unsent_, s.seq);
  }
  unacked_.push_back(Entry{std::move(s), false, 0});
  ++unacked_count_;
  awaiting_.insert(key);
}

void SessionCore::cancel(const std::vector<TaskKey>& keys) {
  for (const TaskKey& k : keys) {
    if (!awaiting_.count(k)) continue;  // its result is in already
    cancels_.insert(k);
    to_cancel_.push_back(k);
  }
}

void SessionCore::collected(const std::vector<TaskKey>& keys) {
  for (const TaskKey& k : keys) {
    received_.erase(k);
    to_collect_.push_back(k);
    unconfirmed_collected_.insert(k);
    // Collected is the end of a task: its submission need not go again, acknowledged or not.
    if (k.session == options_.session) mark_acked(k.seq);
    // Until the scheduler's journal holds it, an earlier run's task may be listed again by a
    // welcome (say, after the scheduler restarts): it must not be adopted (and handed out) twice.
    if (k.session != options_.session) collected_earlier_.insert(k);
  }
  if (!keys.empty()) link_.acknowledged(acked_total_);
}

void SessionCore::bye() {
  leaving_ = true;
  link_.send(protocol::AppBye{});
}

void SessionCore::detach() {
  leaving_ = true;
  std::vector<TaskKey> keys = std::move(to_collect_);
  send_keys<protocol::Collected>(keys);  // what the user has must not come back
  link_.send(protocol::Detach{});
}

// ---- from the scheduler ---------------------------------------------------------------------

void SessionCore::on_message(const protocol::ToApp& message, TimePoint now) {
  session_.heard(now);
  std::visit([&](const auto& m) { handle(m, now); }, message);
}

void SessionCore::on_bad_message(const protocol::DecodeError& error, TimePoint now) {
  uint64_t suppressed = 0;
  if (log_limiter_.allow(std::to_string(static_cast<int>(error.code)), now, &suppressed)) {
    LRTS_WARN("dropped a bad message from the scheduler: {}{}", error.text,
              suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
  }
}

void SessionCore::handle(const protocol::AppWelcome& m, TimePoint now) {
  if (!m.known && session_.ever_welcomed()) fail_forgotten();
  session_.on_welcome(m.scheduler_epoch, m.heartbeat_ms, m.max_message, now);
  limits_ = protocol::send_limits_for(session_.peer_max_message());
  fields_tx_.set_options(limits_.stream);
  outstanding_left_ = m.outstanding;
  ready_left_ = m.ready;
  for (const TaskKey& k : collected_earlier_) to_collect_.push_back(k);  // unconfirmed: again
  ready_reported_ = false;
  if (m.outstanding)
    LRTS_INFO("scheduler holds {} task(s) from an earlier run of this application", m.outstanding);
  // A new connection: everything unacknowledged goes again (the scheduler ignores what it
  // has), streams from their start.
  results_rx_.reset();
  for (auto& [old_id, new_id] : fields_tx_.restart()) {
    for (Entry& e : unacked_) {
      if (e.stream == old_id) e.stream = new_id;
    }
  }
  next_unsent_ = base_seq_;
  ready_to_send_.clear();
  for (const TaskKey& k : cancels_) to_cancel_.push_back(k);
  check_ready();
}

void SessionCore::handle(const protocol::AppOutstanding& m, TimePoint) {
  std::vector<TaskKey> adopted;
  for (const TaskKey& k : m.keys) {
    if (collected_earlier_.count(k) || received_.count(k) || !awaiting_.insert(k).second) continue;
    adopted.push_back(k);
  }
  if (!adopted.empty()) link_.adopt(adopted);
  outstanding_left_ -= std::min<uint64_t>(outstanding_left_, m.keys.size());
  check_ready();
}

void SessionCore::handle(const protocol::CollectedAck& m, TimePoint) {
  for (const TaskKey& k : m.keys) {
    collected_earlier_.erase(k);
    unconfirmed_collected_.erase(k);
  }
}

void SessionCore::check_ready() {
  if (ready_reported_ || !session_.welcomed() || outstanding_left_ || ready_left_) return;
  ready_reported_ = true;
  connected_ = true;
  link_.connected(true);
}

void SessionCore::handle(const protocol::SubmitAck& m, TimePoint) {
  if (m.session != options_.session) return;  // an earlier session's acknowledgement
  for (uint64_t seq : m.seqs) mark_acked(seq);
  link_.acknowledged(acked_total_);
}

void SessionCore::mark_acked(uint64_t seq) {
  if (seq < base_seq_ || seq - base_seq_ >= unacked_.size()) return;
  Entry& e = unacked_[seq - base_seq_];
  if (e.acked) return;
  e.acked = true;
  e.s.fields = Bytes();
  if (e.stream) fields_tx_.finish(e.stream);
  --unacked_count_;
  ++acked_total_;
  while (!unacked_.empty() && unacked_.front().acked) {
    unacked_.pop_front();
    ++base_seq_;
  }
  next_unsent_ = std::max(next_unsent_, base_seq_);
}

void SessionCore::handle(const protocol::AppResults& m, TimePoint) {
  for (const auto& item : m.items) {
    std::string payload;
    if (item.stream) {
      std::optional<std::string> got;
      if (results_rx_.claim(item.stream)) got = results_store_.take_string(item.stream);
      if (!got) continue;  // its bytes were lost with a connection: it comes again
      payload = std::move(*got);
    } else {
      payload.assign(item.payload);
    }
    if (ready_left_) --ready_left_;
    to_receive_.push_back(item.key);
    cancels_.erase(item.key);
    // A result is not an acknowledgement: it may come from a scheduler that dies before its
    // journal holds the task, and the submission must then go again (its second result is a
    // duplicate; collecting the first ends the task).
    if (awaiting_.erase(item.key)) {
      received_.insert(item.key);
      link_.deliver(item.key, to_result(item, std::move(payload)));
    } else if (!received_.count(item.key)) {
      to_collect_.push_back(item.key);  // collected before; the scheduler did not hear it
    }
  }
  check_ready();
}

void SessionCore::handle(const protocol::HeartbeatAck& m, TimePoint now) {
  if (session_.on_heartbeat_ack(m.scheduler_epoch, m.heartbeat_ms, now)) {
    send_hello(now);
  } else if (!connected_ && ready_reported_) {
    connected_ = true;
    link_.connected(true);
  }
}

void SessionCore::handle(const protocol::ErrorMsg& m, TimePoint now) {
  if (m.code == protocol::ErrorCode::kHelloRequired) {
    if (session_.on_hello_required(now)) send_hello(now);
  } else if (m.code == protocol::ErrorCode::kVersionMismatch ||
             m.code == protocol::ErrorCode::kForbidden) {
    link_.fatal("scheduler rejected this application: " + std::string(m.text));
  } else {
    LRTS_ERROR("scheduler reports: {}", m.text);
  }
}

void SessionCore::handle(const protocol::Chunk& m, TimePoint) {
  auto answer = results_rx_.on_chunk(m);
  if (!answer.refused.empty()) {
    LRTS_ERROR("cannot take a result: {}", answer.refused);
    return;
  }
  link_.send(answer.ack);
}

void SessionCore::handle(const protocol::ChunkAck& m, TimePoint) {
  if (auto done = fields_tx_.on_ack(m)) {
    for (const Entry& e : unacked_) {
      if (e.stream == *done && !e.acked && e.s.seq < next_unsent_)
        ready_to_send_.push_back(e.s.seq);
    }
  }
}

// The scheduler lost what it had accepted from us: those tasks end as failed rather than
// leaving waiters hanging. Submissions it never acknowledged are simply sent again.
void SessionCore::fail_forgotten() {
  std::unordered_set<uint64_t> resent;
  for (const Entry& e : unacked_) {
    if (!e.acked) resent.insert(e.s.seq);
  }
  size_t n = 0;
  for (auto it = awaiting_.begin(); it != awaiting_.end();) {
    const TaskKey key = *it;
    if (key.session == options_.session && resent.count(key.seq)) {
      ++it;
      continue;
    }
    it = awaiting_.erase(it);
    received_.insert(key);
    link_.deliver(key, ServiceResult(protocol::format_service_id(key), ServiceStatus::failed,
                                     "lost: the scheduler no longer knows this task (it restarted "
                                     "without a journal, or this application was away longer "
                                     "than its grace period)",
                                     0, "", std::chrono::nanoseconds(0)));
    ++n;
  }
  if (n) LRTS_ERROR("the scheduler has forgotten {} task(s) of this application", n);
}

// ---- what the session says ------------------------------------------------------------------

void SessionCore::send_hello(TimePoint now) {
  protocol::AppHello hello;
  hello.application_id = options_.application_id;
  hello.session = options_.session;
  hello.grace_ms = options_.grace_ms;
  hello.max_message = options_.max_message_bytes;
  hello.keep_detached = options_.keep_detached;
  link_.send(hello);
  session_.hello_sent(now);
  if (connected_) {
    connected_ = false;
    link_.connected(false);
  }
  ready_reported_ = false;
}

void SessionCore::on_tick(TimePoint now) {
  if (leaving_) return;
  switch (session_.due(now)) {
    case protocol::PeerSession::Due::kHello:
      send_hello(now);
      break;
    case protocol::PeerSession::Due::kHeartbeat:
      if (session_.became_silent(now) && connected_) {
        connected_ = false;
        link_.connected(false);
        LRTS_WARN("scheduler not answering; work stays queued here until it does");
      }
      link_.send(protocol::AppHeartbeat{});
      session_.heartbeat_sent(now);
      break;
    case protocol::PeerSession::Due::kNothing:
      break;
  }
}

template <class M>
void SessionCore::send_keys(std::vector<TaskKey>& keys) {
  for (size_t i = 0; i < keys.size(); i += kMaxKeysPerMessage) {
    M msg;
    msg.keys.assign(
        keys.begin() + static_cast<long>(i),
        keys.begin() + static_cast<long>(std::min(keys.size(), i + kMaxKeysPerMessage)));
    link_.send(msg);
  }
  keys.clear();
}

void SessionCore::send_submissions() {
  // Submissions never sent, and those whose fields stream just completed, in batches cut by
  // count and bytes. Fields too large for a batch go first as a stream.
  std::vector<uint64_t> order;
  order.swap(ready_to_send_);
  const uint64_t end = base_seq_ + unacked_.size();
  for (uint64_t seq = next_unsent_; seq < end; ++seq) order.push_back(seq);
  next_unsent_ = end;
  protocol::Submit msg;
  msg.session = options_.session;
  size_t bytes = 0;
  auto send = [&] {
    if (msg.tasks.empty()) return;
    link_.send(msg);
    msg.names.clear();
    msg.tasks.clear();
    bytes = 0;
  };
  for (uint64_t seq : order) {
    if (seq < base_seq_ || seq >= end) continue;
    Entry& e = unacked_[seq - base_seq_];
    if (e.acked) continue;
    if (e.s.fields.size() > limits_.inline_max && !e.stream)
      e.stream = fields_tx_.start(e.s.fields);
    if (e.stream && !fields_tx_.complete(e.stream)) continue;  // sent when its stream is whole
    uint32_t name = 0;
    while (name < msg.names.size() && msg.names[name] != e.s.name) ++name;
    if (name == msg.names.size()) msg.names.push_back(e.s.name);
    const std::string_view fields = e.stream ? std::string_view() : e.s.fields.view();
    msg.tasks.push_back({e.s.seq, name, fields, e.stream, e.s.max_retries, e.s.timeout_ms});
    bytes += fields.size() + e.s.name.size() + 32;
    if (msg.tasks.size() >= kMaxTasksPerSubmit || bytes >= limits_.batch_bytes) send();
  }
  send();
}

void SessionCore::flush(TimePoint now) {
  if (!session_.welcomed()) return;  // everything waits for the welcome
  send_submissions();
  fields_tx_.pump(now, [&](const protocol::Chunk& c) { link_.send(c); });
  send_keys<protocol::Received>(to_receive_);
  send_keys<protocol::Collected>(to_collect_);
  send_keys<protocol::Cancel>(to_cancel_);
}

}  // namespace lrts::client
