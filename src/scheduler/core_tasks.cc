// SchedulerCore: the life of tasks, workers and applications — states, lists, timers, the
// journal's records of them — and restore/verify.
#include <algorithm>
#include <unordered_set>

#include "common/log.hpp"
#include "protocol/relay_ids.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {

using protocol::TaskStatus;

// ---- tasks ----------------------------------------------------------------------------------

uint32_t SchedulerCore::find_task(const TaskKey& key) const {
  return task_index_.find(key, [this](uint32_t t) -> const TaskKey& { return tasks_[t].key; });
}

uint32_t SchedulerCore::new_task(const TaskKey& key, uint32_t ai, uint32_t service) {
  const uint32_t t = tasks_.alloc();
  Task& task = tasks_[t];
  task.key = key;
  task.app = ai;
  task.service = service;
  service_names_.retain(service);
  task.state = TaskState::kQueued;  // counted by the caller's enqueue()/finish
  task_index_.insert(key, t, [this](uint32_t i) -> const TaskKey& { return tasks_[i].key; });
  AppList::push_front(tasks_, apps_[ai].tasks, t);
  ++stats_.queued;
  count_app(ai, 1, 0);
  return t;
}

void SchedulerCore::release_payload(Payload& p) {
  if (p.blob) blobs_to_remove_.emplace_back(journal_seq_, p.blob);  // once no record names it
  p = Payload{};
}

void SchedulerCore::erase_task(uint32_t t) {
  Task& task = tasks_[t];
  switch (task.state) {
    case TaskState::kQueued:
    case TaskState::kLimbo:
      --stats_.queued;
      break;
    case TaskState::kAssigned:
      unassign(t);
      --stats_.queued;  // unassign counted it as waiting again
      break;
    case TaskState::kDone:
      --stats_.done;
      break;
  }
  if (task.state != TaskState::kDone) count_app(task.app, -1, 0);
  if (task.stream && task.app != kNone && apps_[task.app].streams) {
    apps_[task.app].streams->tx.finish(task.stream);
  }
  AppList::erase(tasks_, apps_[task.app].tasks, t);
  task_index_.erase(task.key, [this](uint32_t i) -> const TaskKey& { return tasks_[i].key; });
  service_names_.release(task.service);
  worker_names_.release(task.result_worker);
  release_payload(task.data);
  tasks_.free(t);
}

void SchedulerCore::enqueue(uint32_t t) {
  tasks_[t].state = TaskState::kQueued;
  tasks_[t].queued_at = now_;
  placement_.enqueue(t);
}

void SchedulerCore::assign(uint32_t wi, uint32_t t) {
  Task& task = tasks_[t];
  Worker& w = workers_[wi];
  task.state = TaskState::kAssigned;
  ++task.attempt;
  --stats_.queued;
  ++stats_.assigned;
  task.worker = wi;
  task.started_at = now_;
  if (task.queued_at != TimePoint{})
    activity_.queue_wait.observe(to_seconds(now_ - task.queued_at));
  task.prev_owner = task.last_owner;
  task.last_owner = {w.uid, task.attempt};
  task.restored = false;
  WorkerList::push_front(tasks_, w.tasks, t);
  ++w.assigned;
  count_app(task.app, 0, 1);
  if (journal_) {
    journal_->task_assigned(task.key, task.attempt, w.uid);
    ++journal_seq_;
  }
  // Fields larger than a batch may carry go first as a stream; the item waits for it.
  if (task.data.size() > w.limits.inline_max) {
    std::unique_ptr<protocol::PayloadSource> src =
        task.data.blob ? blobs_.open(task.data.blob)
                       : std::make_unique<protocol::BytesSource>(Bytes(task.data.bytes));
    if (src) {
      if (w.streams->tx.active() == 0) streaming_workers_.push_back(wi);
      task.stream = w.streams->tx.start(std::move(src));
    }
  }
  if (w.assign.empty()) workers_with_output_.push_back(wi);
  w.assign.push_back(tasks_.handle(t));
}

void SchedulerCore::unassign(uint32_t t) {
  Task& task = tasks_[t];
  const uint32_t wi = task.worker;
  Worker& w = workers_[wi];
  WorkerList::erase(tasks_, w.tasks, t);
  --w.assigned;
  count_app(task.app, 0, -1);
  --stats_.assigned;
  ++stats_.queued;  // the caller decides what comes next (enqueue, finish, erase)
  if (task.stream && w.streams) w.streams->tx.finish(task.stream);
  task.stream = 0;
  task.worker = kNone;
  task.state = TaskState::kQueued;
  placement_.mark_ready(wi);
}

void SchedulerCore::cancel_on_worker(uint32_t t) {
  Task& task = tasks_[t];
  Worker& w = workers_[task.worker];
  if (w.cancels.empty()) workers_with_output_.push_back(task.worker);
  w.cancels.push_back(task.key);
}

void SchedulerCore::journal_finished(const Task& task) {
  if (!journal_) return;
  journal_->task_finished(task.key, task.status, task.data.bytes, task.data.blob, task.attempt,
                          task.result_worker == NameTable::kNone
                              ? std::string_view()
                              : std::string_view(worker_names_[task.result_worker]),
                          task.run_ns);
  ++journal_seq_;
}

void SchedulerCore::finish_task(uint32_t t, TaskStatus status, Payload payload, uint32_t attempt,
                                uint32_t worker_name, uint64_t run_ns) {
  Task& task = tasks_[t];
  if (task.state == TaskState::kAssigned) unassign(t);
  --stats_.queued;  // waiting (or just unassigned): its queue entry goes stale
  count_app(task.app, -1, 0);
  task.state = TaskState::kDone;
  release_payload(task.data);  // the fields are no longer needed
  task.status = status;
  task.data = std::move(payload);
  task.attempt = attempt;  // a result is labelled with the attempt that produced it
  task.result_worker = worker_name;
  worker_names_.retain(worker_name);
  task.run_ns = run_ns;
  task.received = false;
  task.stream = 0;
  task.done_at = now_;
  ++stats_.done;
  ++stats_.completed;
  note_completed(t);
  journal_finished(task);
  note_result_for_delivery(t);
}

void SchedulerCore::retry_or_fail(uint32_t t, std::string_view reason) {
  Task& task = tasks_[t];
  if (task.attempt > task.max_retries) {
    std::string why = "gave up after " + std::to_string(task.attempt) + " attempt" +
                      (task.attempt == 1 ? "" : "s") + ": " + std::string(reason);
    finish_task(t, TaskStatus::kFailed, Payload{std::move(why), 0, 0}, task.attempt,
                NameTable::kNone, 0);
    return;
  }
  ++stats_.requeued;
  enqueue(t);
}

void SchedulerCore::note_result_for_delivery(uint32_t t) {
  Task& task = tasks_[t];
  App& a = apps_[task.app];
  if (!a.connected) return;  // delivered when it says hello again
  if (a.to_send.empty()) apps_with_results_.push_back(task.app);
  a.to_send.push_back(tasks_.handle(t));
}

// ---- workers and applications -----------------------------------------------------------------

std::unique_ptr<PeerStreams> SchedulerCore::new_streams(size_t peer_max_message,
                                                        protocol::SendLimits* limits) {
  *limits = protocol::send_limits_for(peer_max_message ? peer_max_message
                                                       : protocol::kMinMaxMessageBytes);
  return std::make_unique<PeerStreams>(blobs_, limits->stream);
}

uint32_t SchedulerCore::ensure_app(std::string_view app_id) {
  auto it = app_by_id_.find(std::string(app_id));
  if (it != app_by_id_.end()) return it->second;
  const uint32_t ai = apps_.alloc();
  App& a = apps_[ai];
  a.app_id.assign(app_id);
  a.grace = options_.app_grace;
  app_by_id_.emplace(a.app_id, ai);
  return ai;
}

void SchedulerCore::journal_app(const App& a) {
  if (!journal_) return;
  journal_->app_registered(a.app_id, static_cast<uint64_t>(to_ms(a.grace)), a.detached, a.owner);
  ++journal_seq_;
}

void SchedulerCore::arm_app_timer(uint32_t ai, TimePoint when) {
  App& a = apps_[ai];
  ++a.timer_gen;
  timers_.push({when, apps_.handle(ai), a.timer_gen, TimerOf::kApp});
}

// ---- heartbeat intervals and relays ----------------------------------------------------------

uint32_t SchedulerCore::rate_limited_ms(size_t peers) const {
  // The base interval, doubled until `peers` heartbeats an interval stay under the rate (a
  // power of two, so the interval changes only when the count doubles or halves).
  const uint64_t base =
      static_cast<uint64_t>(std::max<int64_t>(1, to_ms(options_.heartbeat_interval)));
  const uint64_t rate = std::max<uint32_t>(1, options_.max_heartbeat_rate);
  uint64_t ms = base;
  while (peers * 1000 > rate * ms && ms < (uint64_t{1} << 30)) ms *= 2;
  return static_cast<uint32_t>(ms);
}

uint32_t SchedulerCore::heartbeat_ms_for(const Worker& w) const {
  if (w.relay != kNone) return rate_limited_ms(relays_[w.relay].workers);
  return rate_limited_ms(direct_workers_ + relay_by_peer_.size());
}

Duration SchedulerCore::timeout_for(const Worker& w) const {
  const int64_t base = std::max<int64_t>(1, to_ms(options_.heartbeat_interval));
  const int64_t told = std::max<int64_t>(w.told_ms, base);
  return options_.worker_timeout * (told / base);
}

Duration SchedulerCore::timeout_for_relay(const Relay& r) const {
  const int64_t base = std::max<int64_t>(1, to_ms(options_.heartbeat_interval));
  const int64_t told = std::max<int64_t>(r.told_ms, base);
  return options_.worker_timeout * (told / base);
}

uint32_t SchedulerCore::relay_for(const PeerId& relay, TimePoint now) {
  if (relay.empty()) return kNone;
  if (auto it = relay_by_peer_.find(relay); it != relay_by_peer_.end()) return it->second;
  // A path one hop longer must still be nameable (relays chain at most kMaxRelayDepth deep).
  if (!protocol::relayed_peer(relay, 0) || relay_by_peer_.size() >= kMaxRelays) return kNone;
  const uint32_t ri = relays_.alloc();
  Relay& r = relays_[ri];
  r = Relay{};
  r.peer = relay;
  r.last_seen = now;
  relay_by_peer_.emplace(relay, ri);
  arm_relay_timer(ri, now + timeout_for_relay(r));
  return ri;
}

void SchedulerCore::set_relay(uint32_t wi, uint32_t ri) {
  Worker& w = workers_[wi];
  if (w.relay == ri) return;
  if (w.relay != kNone) {
    --relays_[w.relay].workers;
  } else {
    --direct_workers_;
  }
  w.relay = ri;
  if (ri != kNone) {
    ++relays_[ri].workers;
  } else {
    ++direct_workers_;
  }
}

void SchedulerCore::arm_relay_timer(uint32_t ri, TimePoint when) {
  Relay& r = relays_[ri];
  ++r.timer_gen;
  timers_.push({when, relays_.handle(ri), r.timer_gen, TimerOf::kRelay});
}

void SchedulerCore::check_relay(uint32_t ri, TimePoint now) {
  const Relay& r = relays_[ri];
  const TimePoint deadline = r.last_seen + timeout_for_relay(r);
  if (deadline > now) return arm_relay_timer(ri, deadline);
  lose_relay(ri, "no summary for " + std::to_string(to_ms(now - r.last_seen)) + " ms");
}

void SchedulerCore::lose_relay(uint32_t ri, std::string_view reason) {
  // Its workers keep their tasks for their own timeout from now: they say hello again through
  // another relay (or directly) and carry on, or time out as any silent worker does.
  size_t n = 0;
  for (uint32_t wi = 0; wi < workers_.capacity(); ++wi) {
    if (!workers_.used(wi) || workers_[wi].relay != ri) continue;
    orphan_worker(wi, now_);
    ++n;
  }
  Relay& r = relays_[ri];
  LRTS_WARN("relay {:016x} lost ({}); its {} worker(s) keep their tasks for {} s to reconnect",
            r.uid, reason, n, to_ms(options_.worker_timeout) / 1000);
  relay_by_peer_.erase(r.peer);
  relays_.free(ri);
}

// A relayed worker whose connection ended (its relay says so, or the relay is gone): it keeps
// its tasks for worker_timeout from now, the time a direct worker at the base interval has, to
// say hello again another way; then it is lost as any silent worker is.
void SchedulerCore::orphan_worker(uint32_t wi, TimePoint now) {
  set_relay(wi, kNone);
  Worker& w = workers_[wi];
  w.last_seen = now;
  w.told_ms = static_cast<uint32_t>(std::max<int64_t>(1, to_ms(options_.heartbeat_interval)));
  ++w.timer_gen;
  timers_.push({now + timeout_for(w), workers_.handle(wi), w.timer_gen, TimerOf::kWorker});
}

void SchedulerCore::lose_worker(uint32_t wi, std::string_view reason) {
  Worker& w = workers_[wi];
  size_t n = 0;
  while (w.tasks.first != kNone) {
    const uint32_t t = w.tasks.first;
    const bool sent = tasks_[t].stream == 0;  // an ASSIGN still waiting for its fields never left
    unassign(t);
    if (sent) {
      retry_or_fail(t, reason);
    } else {
      --tasks_[t].attempt;
      enqueue(t);
    }
    ++n;
  }
  const std::string name = worker_names_[w.name];
  if (n) {
    LRTS_WARN("worker '{}' lost ({}); {} task(s) go back to the queue", name, reason, n);
  } else if (std::string note; peer_log("worker", w.identity, &note)) {
    LRTS_INFO("worker '{}' removed ({}){}", name, reason, note);
  }
  const std::vector<uint32_t> services = w.services;  // forget_worker clears them
  placement_.forget_worker(wi);
  for (uint32_t s : services) service_names_.release(s);
  if (!w.peer.empty()) peers_.erase(w.peer);
  set_relay(wi, kNone);
  --direct_workers_;
  worker_by_uid_.erase(w.uid);
  worker_names_.release(w.name);
  workers_.free(wi);
}

void SchedulerCore::disconnect_app(uint32_t ai) {
  App& a = apps_[ai];
  a.connected = false;
  a.to_send.clear();
  a.outstanding.clear();
  a.streams.reset();
  AppList::for_each(tasks_, a.tasks, [&](uint32_t t) { tasks_[t].stream = 0; });
  if (!a.peer.empty()) peers_.erase(a.peer);
  a.peer.clear();
}

void SchedulerCore::drop_app(uint32_t ai) {
  App& a = apps_[ai];
  while (a.tasks.first != kNone) {
    const uint32_t t = a.tasks.first;
    if (journal_) {
      journal_->task_removed(tasks_[t].key);
      ++journal_seq_;
    }
    if (tasks_[t].state == TaskState::kAssigned) cancel_on_worker(t);
    erase_task(t);
  }
  if (!a.peer.empty()) peers_.erase(a.peer);
  if (journal_) {
    journal_->app_removed(a.app_id);
    ++journal_seq_;
  }
  app_by_id_.erase(a.app_id);
  apps_.free(ai);
}

void SchedulerCore::check_worker(uint32_t wi, TimePoint now) {
  Worker& w = workers_[wi];
  TimePoint deadline = w.last_seen + timeout_for(w);
  if (w.relay != kNone) {
    // Alive while its relay is (the relay lists those that leave); its last heartbeat still
    // counts for hoarding. A relay that falls silent is lost first, and its workers then have
    // their own timeout to come back another way: never before that.
    const Relay& r = relays_[w.relay];
    w.last_seen = std::max(w.last_seen, r.last_seen);
    check_hoarding(wi, w.running, now);
    deadline = std::max(w.last_seen, r.last_seen + timeout_for_relay(r)) + timeout_for(w);
  }
  if (deadline > now) {
    timers_.push({deadline, workers_.handle(wi), w.timer_gen, TimerOf::kWorker});
    return;
  }
  lose_worker(wi, "no heartbeat for " + std::to_string(to_ms(now - w.last_seen)) + " ms");
}

void SchedulerCore::check_app(uint32_t ai, TimePoint now) {
  App& a = apps_[ai];
  const TimePoint silent_at = a.last_seen + options_.app_timeout;
  if (a.detached) {
    if (a.connected && silent_at <= now) {
      LRTS_INFO("the collector of detached application '{}' went silent; its tasks run on",
                a.app_id);
      disconnect_app(ai);
    }
    return expire_results(ai, now);
  }
  if (a.connected) {
    if (silent_at > now) return arm_app_timer(ai, silent_at);
    if (a.tasks.size == 0 && a.submit_acks.empty()) {
      // Nothing to keep for it: forgotten now rather than after the grace (a member saying
      // hello with one new id after another holds nothing for long).
      LRTS_DEBUG("application '{}' silent with no tasks; forgotten", a.app_id);
      return drop_app(ai);
    }
    if (std::string note; peer_log("app", a.owner, &note)) {
      LRTS_WARN("application '{}' silent for {} ms; keeping its {} task(s) for {} s{}", a.app_id,
                to_ms(now - a.last_seen), a.tasks.size, to_ms(a.grace) / 1000, note);
    }
    disconnect_app(ai);
  }
  if (silent_at + a.grace > now) return arm_app_timer(ai, silent_at + a.grace);
  LRTS_WARN("application '{}' did not come back; dropping its {} task(s)", a.app_id, a.tasks.size);
  drop_app(ai);
}

// A detached application's results wait keep_results each; the application is forgotten once
// nothing of it is left.
void SchedulerCore::expire_results(uint32_t ai, TimePoint now) {
  App& a = apps_[ai];
  std::vector<uint32_t> expired;
  TimePoint next = TimePoint::max();
  AppList::for_each(tasks_, a.tasks, [&](uint32_t t) {
    const Task& task = tasks_[t];
    if (task.state != TaskState::kDone) return;
    const TimePoint until = task.done_at + options_.keep_results;
    if (until <= now) {
      expired.push_back(t);
    } else {
      next = std::min(next, until);
    }
  });
  for (uint32_t t : expired) {
    if (journal_) {
      journal_->task_removed(tasks_[t].key);
      ++journal_seq_;
    }
    erase_task(t);
  }
  if (!expired.empty()) {
    LRTS_WARN("application '{}': {} result(s) were not collected within {} and are dropped",
              a.app_id, expired.size(), format_duration(options_.keep_results));
  }
  if (a.tasks.size == 0) {
    LRTS_INFO("detached application '{}' has nothing left; forgotten", a.app_id);
    return drop_app(ai);
  }
  // Check again when the next result is due, now and then while tasks still run, and when a
  // connected collector would count as silent.
  TimePoint when =
      std::min(next, now + std::min<Duration>(options_.keep_results, std::chrono::hours(1)));
  if (a.connected) when = std::min(when, a.last_seen + options_.app_timeout);
  arm_app_timer(ai, when);
}

// ---- time -----------------------------------------------------------------------------------

void SchedulerCore::on_tick(TimePoint now) {
  now_ = now;
  if (started_ == TimePoint{}) started_ = now;
  if (now >= reclaim_at_) {
    reclaim_at_ = TimePoint::max();
    size_t n = 0;
    for (const SlabHandle h : limbo_) {
      if (!tasks_.valid(h) || tasks_[h.index].state != TaskState::kLimbo) continue;  // claimed
      retry_or_fail(h.index, "its worker did not come back after the scheduler restarted");
      ++n;
    }
    limbo_.clear();
    if (n) LRTS_INFO("{} task(s) not claimed by a returning worker go back to the queue", n);
  }
  while (!timers_.empty() && timers_.top().when <= now) {
    const Timer timer = timers_.top();
    timers_.pop();
    switch (timer.of) {
      case TimerOf::kWorker:
        if (workers_.valid(timer.owner) &&
            workers_[timer.owner.index].timer_gen == timer.timer_gen) {
          check_worker(timer.owner.index, now);
        }
        break;
      case TimerOf::kApp:
        if (apps_.valid(timer.owner) && apps_[timer.owner.index].timer_gen == timer.timer_gen) {
          check_app(timer.owner.index, now);
        }
        break;
      case TimerOf::kRelay:
        if (relays_.valid(timer.owner) && relays_[timer.owner.index].timer_gen == timer.timer_gen) {
          check_relay(timer.owner.index, now);
        }
        break;
    }
  }
  while (!resends_.empty()) {
    const Resend e = resends_.front();
    if (e.sent + options_.result_resend > now) break;
    resends_.pop_front();
    if (!tasks_.valid(e.task)) continue;
    const Task& task = tasks_[e.task.index];
    if (task.state != TaskState::kDone || task.received) continue;
    note_result_for_delivery(e.task.index);
  }
}

TimePoint SchedulerCore::next_deadline() const {
  TimePoint next = std::min(reclaim_at_, counts_due_);
  if (!timers_.empty()) next = std::min(next, timers_.top().when);
  if (!resends_.empty()) next = std::min(next, resends_.front().sent + options_.result_resend);
  // Only workers that were given a stream (a scan of every worker each round would cost more
  // than the round at 100,000 workers); those with none left are dropped from the list.
  std::erase_if(streaming_workers_, [&](uint32_t w) {
    if (!workers_.used(w) || !workers_[w].streams || workers_[w].streams->tx.active() == 0) {
      return true;
    }
    next = std::min(next, workers_[w].streams->tx.next_deadline());
    return false;
  });
  for (uint32_t a = 0; a < apps_.capacity(); ++a) {
    if (apps_.used(a) && apps_[a].streams)
      next = std::min(next, apps_[a].streams->tx.next_deadline());
  }
  return next;
}

// ---- restore --------------------------------------------------------------------------------

void SchedulerCore::restore(RecoveredState state, TimePoint now) {
  now_ = now;
  for (const auto& ra : state.apps) {
    const uint32_t ai = ensure_app(ra.app_id);
    apps_[ai].grace = std::min<Duration>(milliseconds(ra.grace_ms), options_.app_grace);
    apps_[ai].detached = ra.detached;
    apps_[ai].owner = ra.owner;
  }
  size_t waiting = 0, reclaim = 0, done = 0;
  std::unordered_set<uint64_t> blobs;
  tasks_.reserve(state.tasks.size());
  for (auto& rt : state.tasks) {
    if (find_task(rt.key) != kNone) continue;
    const uint32_t ai = ensure_app(rt.app_id);
    const uint32_t t = new_task(rt.key, ai, service_names_.acquire(rt.name));
    service_names_.release(tasks_[t].service);  // new_task took its own reference
    Task& task = tasks_[t];
    task.attempt = rt.attempts;
    task.last_owner = {rt.worker_uid, rt.attempts};
    task.restored = !rt.done;
    task.max_retries = rt.max_retries;
    task.timeout_ms = rt.timeout_ms;
    if (rt.done) {
      --stats_.queued;
      count_app(ai, -1, 0);
      task.state = TaskState::kDone;
      task.status = rt.status;
      task.data = Payload{std::move(rt.result), rt.result_blob,
                          rt.result_blob ? blobs_.size(rt.result_blob) : 0};
      task.result_worker = rt.worker.empty() ? NameTable::kNone : worker_names_.acquire(rt.worker);
      task.run_ns = rt.run_ns;
      task.done_at = now - std::min<Duration>(milliseconds(rt.done_ms_ago), options_.keep_results);
      ++stats_.done;
      ++done;
    } else {
      task.data = Payload{std::move(rt.fields), rt.fields_blob,
                          rt.fields_blob ? blobs_.size(rt.fields_blob) : 0};
      if (rt.attempts > 0) {
        task.state = TaskState::kLimbo;  // its worker may still run it: wait for a claim
        limbo_.push_back(tasks_.handle(t));
        ++reclaim;
      } else {
        enqueue(t);  // never assigned: served at once
        ++waiting;
      }
    }
    if (task.data.blob) blobs.insert(task.data.blob);
  }
  blobs_.retain_only(blobs);
  // Every application counts as just disconnected: it has its grace to come back; a detached
  // one's results wait as after a detach.
  for (uint32_t ai = 0; ai < apps_.capacity(); ++ai) {
    if (!apps_.used(ai)) continue;
    App& a = apps_[ai];
    a.connected = false;
    a.last_seen = now;
    arm_app_timer(ai, a.detached ? now : now + options_.app_timeout);
  }
  if (!limbo_.empty()) reclaim_at_ = now + options_.reclaim_grace;
  restored_until_ = now + options_.reclaim_grace;
  LRTS_INFO(
      "restored {} application(s); {} task(s) queued, {} waiting {} ms for their workers to "
      "claim them, {} result(s) awaiting collection",
      app_by_id_.size(), waiting, reclaim, to_ms(options_.reclaim_grace), done);
}

// ---- checks ---------------------------------------------------------------------------------

Status SchedulerCore::verify() const {
  size_t queued = 0, assigned = 0, done = 0;
  for (uint32_t t = 0; t < tasks_.capacity(); ++t) {
    if (!tasks_.used(t)) continue;
    const Task& task = tasks_[t];
    if (find_task(task.key) != t) return make_error("task missing from index");
    if (task.app == kNone || !apps_.used(task.app)) return make_error("task without application");
    if (task.attempt > task.max_retries + 1) return make_error("task over its attempt limit");
    switch (task.state) {
      case TaskState::kQueued:
      case TaskState::kLimbo:
        ++queued;
        break;
      case TaskState::kAssigned: {
        ++assigned;
        if (task.worker == kNone || !workers_.used(task.worker)) {
          return make_error("assigned task without a live worker");
        }
        if (task.attempt == 0) return make_error("assigned task with attempt 0");
        break;
      }
      case TaskState::kDone:
        ++done;
        break;
    }
    if (task.state != TaskState::kAssigned && task.worker != kNone) {
      return make_error("unassigned task linked to a worker");
    }
  }
  if (queued != stats_.queued || assigned != stats_.assigned || done != stats_.done) {
    return make_error("state counters disagree with the tasks");
  }
  if (task_index_.size() != queued + assigned + done) return make_error("index size mismatch");
  if (auto why = placement_.check(); !why.empty()) return make_error(why);
  for (uint32_t wi = 0; wi < workers_.capacity(); ++wi) {
    if (!workers_.used(wi)) continue;
    const Worker& w = workers_[wi];
    uint32_t n = 0;
    for (uint32_t t = w.tasks.first; t != kNone; t = tasks_[t].worker_links.next) {
      if (tasks_[t].worker != wi || tasks_[t].state != TaskState::kAssigned) {
        return make_error("worker list holds a task that is not assigned to it");
      }
      ++n;
    }
    if (n != w.assigned || n != w.tasks.size) return make_error("worker assigned count is wrong");
  }
  for (uint32_t ai = 0; ai < apps_.capacity(); ++ai) {
    if (!apps_.used(ai)) continue;
    const App& a = apps_[ai];
    size_t n = 0;
    for (uint32_t t = a.tasks.first; t != kNone; t = tasks_[t].app_links.next) {
      if (tasks_[t].app != ai) return make_error("application list holds a foreign task");
      ++n;
    }
    if (n != a.tasks.size) return make_error("application task count is wrong");
  }
  return {};
}

std::optional<TaskInfo> SchedulerCore::task(const TaskKey& key) const {
  const uint32_t t = find_task(key);
  if (t == kNone) return std::nullopt;
  const Task& task = tasks_[t];
  TaskInfo info;
  info.key = key;
  switch (task.state) {
    case TaskState::kQueued:
      info.state = "queued";
      break;
    case TaskState::kLimbo:
      info.state = "reclaiming";
      break;
    case TaskState::kAssigned:
      info.state = "running";
      break;
    case TaskState::kDone:
      info.state = "done";
      break;
  }
  info.application_id = apps_[task.app].app_id;
  info.service = service_label(task);
  if (task.state == TaskState::kAssigned) {
    info.worker = worker_names_[workers_[task.worker].name];
  } else if (task.result_worker != NameTable::kNone) {
    info.worker = worker_names_[task.result_worker];
  }
  info.attempt = task.attempt;
  info.max_retries = task.max_retries;
  if (task.state == TaskState::kDone) {
    info.status = task.status;
    if (task.status != protocol::TaskStatus::kFinished) info.error = task.data.bytes;
  }
  info.streaming = task.stream != 0;
  return info;
}

CoreStats SchedulerCore::stats() const {
  CoreStats s = stats_;
  s.workers = worker_by_uid_.size();
  s.relays = relay_by_peer_.size();
  s.relayed_workers = s.workers - direct_workers_;
  s.heartbeat_ms = rate_limited_ms(direct_workers_ + relay_by_peer_.size());
  s.apps = app_by_id_.size();
  for (const SlabHandle h : limbo_) {
    if (tasks_.valid(h) && tasks_[h.index].state == TaskState::kLimbo) ++s.waiting;
  }
  for (const auto& [uid, wi] : worker_by_uid_) {
    s.slots += workers_[wi].slots;
    s.busy_slots += std::min(workers_[wi].assigned, workers_[wi].slots);
  }
  s.blob_bytes = blobs_.bytes();
  return s;
}

}  // namespace lrts::scheduler
