#include "worker/core.hpp"

#include "common/log.hpp"

namespace lrts::worker {

WorkerCore::WorkerCore(WorkerCoreOptions options, SlotControl& slots, WorkerLink& link)
    : options_(std::move(options)),
      link_(link),
      executor_(options_.executor, slots),
      session_(options_.max_message_bytes),
      limits_(protocol::send_limits_for(protocol::kMinMaxMessageBytes)),
      results_tx_(limits_.stream) {}

// ---- messages from the scheduler ------------------------------------------------------------

void WorkerCore::on_message(const protocol::ToWorker& message, TimePoint now) {
  if (session_.heard(now)) LRTS_INFO("scheduler answering again");
  std::visit([&](const auto& m) { handle(m, now); }, message);
}

void WorkerCore::on_bad_message(const protocol::DecodeError& error, TimePoint now) {
  uint64_t suppressed = 0;
  if (log_limiter_.allow(std::to_string(static_cast<int>(error.code)), now, &suppressed)) {
    LRTS_WARN("dropped a bad message from the scheduler: {}{}", error.text,
              suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
  }
}

void WorkerCore::handle(const protocol::WorkerWelcome& m, TimePoint now) {
  const bool first = !session_.ever_welcomed();
  if (session_.on_welcome(m.scheduler_epoch, m.heartbeat_ms, m.max_message, now)) {
    LRTS_INFO("scheduler restarted; re-registered with {} task(s) held", executor_.size());
  } else if (first) {
    std::string names;
    for (const auto& s : options_.services) names += (names.empty() ? "" : ", ") + s;
    LRTS_INFO("registered with the scheduler: {} slot(s), services: {}", executor_.slot_count(),
              names.empty() ? "none" : names);
  }
  limits_ = protocol::send_limits_for(session_.peer_max_message());
  results_tx_.set_options(limits_.stream);
  for (const auto& key : m.cancel) executor_.cancel(key, outcomes_);
  // A new connection: every unacknowledged result goes again, streams from their start.
  fields_rx_.reset();
  for (auto& [old_id, new_id] : results_tx_.restart()) {
    for (auto& [key, p] : pending_) {
      if (p.stream == old_id) p.stream = new_id;
    }
  }
  unsent_.clear();
  for (const auto& [key, p] : pending_) {
    if (p.stream == 0) unsent_.push_back(key);
  }
  stats_.resent += pending_.size();
}

void WorkerCore::handle(const protocol::Assign& m, TimePoint now) {
  idle_since_ = TimePoint::max();
  if (draining_) {  // sent before it heard we drain: straight back
    std::vector<protocol::TaskAttempt> back;
    for (const auto& t : m.tasks) {
      if (t.stream && fields_rx_.claim(t.stream)) fields_store_.take(t.stream);
      back.push_back({t.key, t.attempt});
    }
    hand_back(std::move(back));
    return;
  }
  for (const auto& t : m.tasks) {
    ++stats_.assigned;
    Bytes fields;
    if (t.stream) {
      std::optional<Bytes> got;
      if (fields_rx_.claim(t.stream)) got = fields_store_.take(t.stream);
      if (!got) {
        LRTS_WARN("task {} names fields that did not arrive; it is lost and retried",
                  protocol::format_service_id(t.key));
        outcomes_.push_back(Outcome{t.key,
                                    t.attempt,
                                    TaskStatus::kLost,
                                    Bytes(std::string("its fields did not reach the worker")),
                                    0,
                                    {}});
        continue;
      }
      fields = std::move(*got);
    } else {
      fields = Bytes(std::string(t.fields));
    }
    auto done = pending_.find(t.key);
    if (done != pending_.end()) {
      if (done->second.outcome.attempt >= t.attempt) {
        // Finished here already: answer the assignment with that result.
        if (done->second.stream == 0) unsent_.push_back(t.key);
        continue;
      }
      if (done->second.stream) results_tx_.finish(done->second.stream);
      pending_.erase(done);  // a retry of an attempt that was lost here
    }
    const std::string_view app = m.apps[t.app_index];
    link_.session_owner(t.key.session, app);
    executor_.add(LocalTask{t.key, t.attempt, std::string(m.names[t.name_index]), std::string(app),
                            std::move(fields), t.timeout_ms});
  }
  (void)now;
}

void WorkerCore::handle(const protocol::ResultAck& m, TimePoint) {
  for (const auto& t : m.acked) {
    auto it = pending_.find(t.key);
    if (it == pending_.end() || it->second.outcome.attempt > t.attempt) continue;
    if (it->second.stream) results_tx_.finish(it->second.stream);
    pending_.erase(it);
  }
}

void WorkerCore::handle(const protocol::CancelTasks& m, TimePoint) {
  for (const auto& key : m.keys) executor_.cancel(key, outcomes_);
}

void WorkerCore::handle(const protocol::Drain&, TimePoint now) {
  if (draining_) return;  // a second request is not a second signal: it never stops at once
  LRTS_INFO("the scheduler asks this worker to drain (lrts drain)");
  on_stop_signal(now);
}

void WorkerCore::handle(const protocol::HeartbeatAck& m, TimePoint now) {
  if (session_.on_heartbeat_ack(m.scheduler_epoch, m.heartbeat_ms, now)) send_hello(now);
}

void WorkerCore::handle(const protocol::ErrorMsg& m, TimePoint now) {
  if (m.code == protocol::ErrorCode::kHelloRequired) {
    if (session_.on_hello_required(now)) send_hello(now);
  } else {
    LRTS_ERROR("scheduler reports: {}", m.text);
  }
}

void WorkerCore::handle(const protocol::Chunk& m, TimePoint) {
  idle_since_ = TimePoint::max();  // a task's fields are on their way
  auto answer = fields_rx_.on_chunk(m);
  if (!answer.refused.empty()) {
    LRTS_ERROR("cannot take the fields of a task: {}", answer.refused);
    return;  // not acknowledged: the scheduler's stream waits, and the task with it
  }
  link_.send(answer.ack);
}

void WorkerCore::handle(const protocol::ChunkAck& m, TimePoint) {
  if (auto done = results_tx_.on_ack(m)) {
    for (const auto& [key, p] : pending_) {
      if (p.stream == *done) unsent_.push_back(key);
    }
  }
}

// ---- what the worker says ---------------------------------------------------------------------

void WorkerCore::send_hello(TimePoint now) {
  protocol::WorkerHello hello;
  hello.worker_uid = options_.uid;
  hello.name = options_.name;
  hello.slots = static_cast<uint32_t>(executor_.slot_count());
  hello.capacity = capacity(now);
  hello.max_message = options_.max_message_bytes;
  hello.host = options_.host;
  for (const auto& s : options_.services) hello.services.push_back(s);
  // What runs or waits here, and the results not acknowledged yet (they are sent again after
  // the welcome and settle themselves): everything this process has of its tasks, so that a
  // task it lists in neither is one it never received (its ASSIGN was lost with a connection)
  // and goes back without using an attempt.
  hello.held = executor_.held();
  for (const auto& [key, p] : pending_) hello.unacked.push_back({key, p.outcome.attempt});
  link_.send(hello);
  session_.hello_sent(now);
}

void WorkerCore::send_heartbeat(TimePoint now) {
  link_.send(protocol::WorkerHeartbeat{capacity(now),
                                       static_cast<uint32_t>(executor_.busy_slots().size()),
                                       memory_bytes_, draining_});
  session_.heartbeat_sent(now);
}

void WorkerCore::hand_back(std::vector<protocol::TaskAttempt> returned) {
  stats_.handed_back += returned.size();
  to_return_.insert(to_return_.end(), returned.begin(), returned.end());
}

void WorkerCore::take_outcomes() {
  for (Outcome& o : outcomes_) {
    if (!o.bars.empty()) link_.bars(o.bars);  // final states travel with the result
    ++stats_.results;
    const protocol::TaskKey key = o.key;
    auto [it, fresh] = pending_.try_emplace(key);
    if (!fresh) {
      if (it->second.outcome.attempt > o.attempt) continue;  // a newer attempt's result stays
      if (it->second.stream) results_tx_.finish(it->second.stream);
      it->second = Pending{};
    }
    it->second.outcome = std::move(o);
    queue_result(key);
  }
  outcomes_.clear();
}

void WorkerCore::queue_result(const protocol::TaskKey& key) {
  Pending& p = pending_[key];
  if (p.outcome.payload.size() > limits_.inline_max) {
    p.stream = results_tx_.start(p.outcome.payload);  // the item follows the last chunk
  } else {
    unsent_.push_back(key);
  }
}

void WorkerCore::send_results(TimePoint now) {
  if (!to_return_.empty()) {
    for (size_t i = 0; i < to_return_.size(); i += kMaxResultsPerMessage) {
      protocol::WorkerReturn ret;
      const size_t end = std::min(to_return_.size(), i + kMaxResultsPerMessage);
      ret.returned.assign(to_return_.begin() + static_cast<long>(i),
                          to_return_.begin() + static_cast<long>(end));
      link_.send(ret);
    }
    to_return_.clear();
    send_heartbeat(now);  // the smaller capacity, at once
  }
  results_tx_.pump(now, [&](const protocol::Chunk& c) { link_.send(c); });
  if (unsent_.empty()) return;
  protocol::WorkerResults msg;
  msg.capacity = capacity(now);
  size_t i = 0;
  while (i < unsent_.size()) {
    msg.items.clear();
    size_t bytes = 0;
    for (; i < unsent_.size() && msg.items.size() < kMaxResultsPerMessage &&
           bytes < limits_.batch_bytes;
         ++i) {
      auto it = pending_.find(unsent_[i]);
      if (it == pending_.end()) continue;
      const Pending& p = it->second;
      if (p.stream && !results_tx_.complete(p.stream)) continue;
      const Outcome& o = p.outcome;
      msg.items.push_back({o.key, o.attempt, o.status,
                           p.stream ? std::string_view() : o.payload.view(), p.stream, o.run_ns});
      bytes += (p.stream ? 0 : o.payload.size()) + 32;
    }
    if (!msg.items.empty()) link_.send(msg);
  }
  unsent_.clear();
}

// ---- stopping --------------------------------------------------------------------------------

void WorkerCore::on_stop_signal(TimePoint now) {
  if (draining_ || !options_.finish_on_stop) {
    LRTS_INFO("worker stopping now");
    stop_now(now);
    return;
  }
  draining_ = true;
  if (options_.drain_timeout.count() > 0) drain_deadline_ = now + options_.drain_timeout;
  auto queued = executor_.take_queued();
  LRTS_INFO(
      "draining: handing back {} queued task(s), finishing {} running (send the signal "
      "again to stop at once)",
      queued.size(), executor_.size());
  hand_back(std::move(queued));
}

void WorkerCore::stop_now(TimePoint now) {
  // Hand unfinished work back so the scheduler requeues it at once, without counting it as a
  // failed attempt. Results already sent stay valid.
  take_outcomes();
  send_results(now);
  protocol::WorkerBye bye;
  bye.returned = executor_.take_queued();
  for (const auto& t : executor_.held()) bye.returned.push_back(t);
  executor_.stop_all();
  link_.send(bye);
  LRTS_INFO("worker stopped; handed back {} task(s)", bye.returned.size());
  done_ = true;
}

// ---- time -------------------------------------------------------------------------------------

void WorkerCore::on_tick(TimePoint now) {
  if (done_) return;
  if (options_.idle_timeout.count() > 0 && !draining_) {
    if (holds_work()) {
      idle_since_ = TimePoint::max();
    } else if (idle_since_ == TimePoint::max()) {
      idle_since_ = now;
    } else if (now - idle_since_ >= options_.idle_timeout) {
      LRTS_INFO("held no task for {:.0f} s (--idle-timeout): leaving",
                to_seconds(now - idle_since_));
      draining_ = true;
    }
  }
  switch (session_.due(now)) {
    case protocol::PeerSession::Due::kHello:
      send_hello(now);
      break;
    case protocol::PeerSession::Due::kHeartbeat:
      if (session_.became_silent(now)) {
        LRTS_WARN("scheduler not answering; tasks keep running and results wait for it");
      }
      send_heartbeat(now);
      break;
    case protocol::PeerSession::Due::kNothing:
      break;
  }
  executor_.on_tick(now);
  if (!draining_ && now >= next_surplus_check_) {
    // Tasks this worker holds beyond its capacity (they turned out longer than thought) go back
    // to the scheduler, so idle workers can take them.
    next_surplus_check_ = now + kSurplusCheck;
    auto surplus = executor_.take_surplus(now);
    if (!surplus.empty()) hand_back(std::move(surplus));
  }
  if (draining_) {
    if (now >= drain_deadline_) {
      LRTS_WARN("drain timeout passed with {} task(s) unfinished", executor_.size());
      stop_now(now);
      return;
    }
    if (executor_.size() == 0 && outcomes_.empty() && pending_.empty() && to_return_.empty()) {
      link_.send(protocol::WorkerBye{});
      LRTS_INFO("drained: every task finished and delivered; worker stopped");
      done_ = true;
      return;
    }
    if (executor_.size() == 0 && session_.silent() && !warned_waiting_) {
      warned_waiting_ = true;
      LRTS_WARN(
          "drained, but {} result(s) wait for the scheduler to acknowledge them; send the "
          "signal again to exit now (their tasks then run again elsewhere)",
          pending_.size());
    }
  }
}

void WorkerCore::flush(TimePoint now) {
  if (done_) return;
  take_outcomes();
  send_results(now);
}

TimePoint WorkerCore::next_deadline() const {
  if (done_) return TimePoint::max();
  TimePoint next = std::min({session_.next_deadline(), executor_.next_deadline(), drain_deadline_,
                             results_tx_.next_deadline()});
  if (!draining_ && executor_.size() > 0) next = std::min(next, next_surplus_check_);
  if (options_.idle_timeout.count() > 0 && !draining_ && idle_since_ != TimePoint::max()) {
    next = std::min(next, idle_since_ + options_.idle_timeout);
  }
  return next;
}

}  // namespace lrts::worker
