// SchedulerCore: what each message does. Task and peer life cycles are in core_tasks.cc, what
// goes out in core_output.cc.
#include "scheduler/core.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "protocol/relay_ids.hpp"

namespace lrts::scheduler {

using protocol::ErrorCode;
using protocol::TaskStatus;

namespace {

// Whether `attempt` of the task went to the worker `uid` (an owner not recorded, from a journal
// of an older lrts, is anyone's).
bool assigned_to(const Task& t, uint64_t uid, uint32_t attempt) {
  const auto match = [&](const AttemptOwner& o) {
    return o.attempt == attempt && attempt != 0 && (o.worker_uid == uid || o.worker_uid == 0);
  };
  return match(t.last_owner) || match(t.prev_owner);
}

}  // namespace

SchedulerCore::SchedulerCore(CoreOptions options, Transport& transport, BlobStore& blobs,
                             JournalSink* journal)
    : options_(options), transport_(transport), blobs_(blobs), journal_(journal) {
  service_names_.set_max(options_.max_service_names);
  worker_names_.set_max(options_.max_worker_names);
  proof_state_ ^= options_.epoch * 0xBF58476D1CE4E5B9ULL;
  if (proof_state_ == 0) proof_state_ = 1;
}

SchedulerCore::~SchedulerCore() = default;

void SchedulerCore::on_journal_committed(uint64_t records) {
  journal_committed_ = std::max(journal_committed_, records);
}

// ---- dispatch ---------------------------------------------------------------------------------

void SchedulerCore::on_message(const PeerId& peer, const protocol::ToScheduler& msg, TimePoint now,
                               const Caller& caller) {
  now_ = now;
  if (started_ == TimePoint{}) started_ = now;
  caller_ = caller;
  std::visit([&](const auto& m) { dispatch(peer, m, now); }, msg);
  caller_ = {};
}

// A connection's role is settled by its hello: what follows on it goes to that worker or
// application, so only hellos need the key's say.
void SchedulerCore::dispatch(const PeerId& peer, const protocol::AppHello& m, TimePoint now) {
  if (!caller_.may_apply) {
    return refuse(peer, "role",
                  "this key is not an application key: it cannot submit or collect results");
  }
  on_app_hello(peer, m, now);
}

// A relay's batch, taken apart into its workers' messages, each from the relayed peer the relay
// names (relays within relays too: an item may itself be a batch).
void SchedulerCore::dispatch(const PeerId& peer, const protocol::Relayed& m, TimePoint now) {
  if (!caller_.may_relay) {
    return refuse(peer, "role", "this key is not a relay key: it cannot relay workers");
  }
  for (const auto& item : m.items) {
    const auto id = protocol::relayed_peer(peer, item.sub);
    if (!id) {
      return on_bad_message(peer, {protocol::DecodeCode::kMalformed, "relays chain too deep"}, now);
    }
    // The relay vouches for the key it accepted the sender with: a worker's (or a relay's).
    Caller inner;
    if (options_.authenticated) {
      inner.identity = item.identity;
      inner.may_apply = false;
      inner.may_view_all = false;
      inner.may_operate = false;
      inner.may_relay = item.relay;
      inner.may_work = !item.relay;
    }
    auto msg = protocol::decode<protocol::ToScheduler>(item.message, options_.max_message_bytes);
    if (!msg) {
      on_bad_message(*id, msg.error(), now);
      continue;
    }
    caller_ = inner;
    std::visit([&](const auto& x) { dispatch(*id, x, now); }, *msg);
  }
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::RelaySummary& m, TimePoint now) {
  if (!caller_.may_relay) {
    return refuse(peer, "role", "this key is not a relay key: it cannot relay workers");
  }
  if (peers_.count(peer)) {
    ++stats_.bad_messages;
    return send_error(peer, ErrorCode::kBadMessage, "a worker or application cannot relay");
  }
  const uint32_t ri = relay_for(peer, now);
  if (ri == kNone) {
    ++stats_.refused;
    return send_error(peer, ErrorCode::kRefused, "relays may chain at most 4 deep");
  }
  Relay& r = relays_[ri];
  ++stats_.relay_summaries;
  if (r.uid != m.relay_uid) {
    if (r.uid != 0) {
      LRTS_INFO("relay {:016x} now speaks on the connection of relay {:016x}", m.relay_uid, r.uid);
    }
    r.uid = m.relay_uid;
  }
  r.last_seen = now;
  arm_relay_timer(ri, now + timeout_for_relay(r));
  // Summaries may come twice or late (a duplicate, a relay the worker has left since): each
  // names workers by the relay's connection, so what no longer matches is ignored.
  for (const auto& beat : m.beats) {
    const auto id = protocol::relayed_peer(peer, beat.sub);
    if (!id) continue;
    auto it = peers_.find(*id);
    if (it == peers_.end()) {
      // A worker we do not know on this relay (we lost it, or it came from a relay that died):
      // it says hello, as a direct one would after its next heartbeat.
      send_error(*id, ErrorCode::kHelloRequired, "unknown peer: send hello first");
      continue;
    }
    if (!it->second.is_worker) continue;
    const uint32_t wi = it->second.index;
    Worker& w = workers_[wi];
    if (w.relay != ri) continue;
    ++stats_.heartbeats;
    w.last_seen = now;
    w.capacity = capped_capacity(w, beat.capacity);
    w.running = beat.running;
    w.memory_bytes = beat.memory_bytes;
    w.draining = beat.draining;
    check_hoarding(wi, beat.running, now);
    placement_.mark_ready(wi);
  }
  for (uint32_t sub : m.gone) {
    const auto id = protocol::relayed_peer(peer, sub);
    if (!id) continue;
    auto it = peers_.find(*id);
    if (it == peers_.end() || !it->second.is_worker) continue;
    if (workers_[it->second.index].relay != ri) continue;
    orphan_worker(it->second.index, now);
  }
  protocol::RelayAck ack;
  ack.scheduler_epoch = options_.epoch;
  ack.heartbeat_ms = rate_limited_ms(direct_workers_ + relay_by_peer_.size());
  r.told_ms = ack.heartbeat_ms;
  ack.worker_heartbeat_ms = rate_limited_ms(std::max<size_t>(r.workers, m.workers));
  const uint32_t base_ms =
      static_cast<uint32_t>(std::max<int64_t>(1, to_ms(options_.heartbeat_interval)));
  ack.worker_timeout_ms = static_cast<uint32_t>(std::min<int64_t>(
      UINT32_MAX, to_ms(options_.worker_timeout) * (ack.worker_heartbeat_ms / base_ms)));
  transport_.send_relay(peer, ack);
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now) {
  if (!caller_.may_work) {
    return refuse(peer, "role", "this key is not a worker key: it cannot register as a worker");
  }
  on_worker_hello(peer, m, now);
}

void SchedulerCore::refuse(const PeerId& peer, std::string_view kind, std::string_view text) {
  ++stats_.refused;
  uint64_t suppressed = 0;
  const std::string who =
      caller_.identity.empty() ? "a peer" : "'" + std::string(caller_.identity) + "'";
  if (log_limiter_.allow(std::string(kind) + ":" + who, now_, &suppressed)) {
    LRTS_WARN("refused {}: {}{}", who, text,
              suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
  }
  send_error(peer, ErrorCode::kForbidden, text);
}

bool SchedulerCore::may_report(const Task& t, uint64_t uid, uint32_t attempt) const {
  if (assigned_to(t, uid, attempt)) return true;
  // After a restart the journal may lack a task's last assignment (an ASSIGN leaves before its
  // record is committed): for the reclaim grace, the next attempt of a reloaded task is taken
  // from the worker that reports it.
  return t.restored && now_ < restored_until_ && attempt == t.attempt + 1;
}

bool SchedulerCore::peer_log(std::string_view kind, std::string_view identity, std::string* note) {
  uint64_t suppressed = 0;
  if (!peer_log_.allow(std::string(kind) + ":" + std::string(identity), now_, &suppressed)) {
    return false;
  }
  *note = suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "";
  return true;
}

uint32_t SchedulerCore::capped_capacity(const Worker& w, uint32_t asked) const {
  if (w.hoarding) return 0;
  // What a worker may hold is bounded by what it runs (a few rounds of short tasks per slot)
  // and by the scheduler's own limit.
  return std::min({asked, std::max<uint32_t>(1, w.slots) * 256, options_.max_worker_capacity});
}

template <class M>
void SchedulerCore::dispatch(const PeerId& peer, const M& m, TimePoint now) {
  auto it = peers_.find(peer);
  if (it == peers_.end()) {
    // Typically a peer of an earlier scheduler run: ask it to introduce itself again. It then
    // re-sends whatever we have not acknowledged, so nothing is lost.
    return send_error(peer, ErrorCode::kHelloRequired, "unknown peer: send hello first");
  }
  const PeerRef ref = it->second;
  if (ref.is_worker) {
    workers_[ref.index].last_seen = now;
    if constexpr (requires { on_worker(ref.index, m, now); }) {
      on_worker(ref.index, m, now);
    } else {
      ++stats_.bad_messages;
      send_error(peer, ErrorCode::kBadMessage, "message type not allowed from a worker");
    }
  } else {
    apps_[ref.index].last_seen = now;
    if constexpr (requires { on_app(ref.index, m, now); }) {
      on_app(ref.index, m, now);
    } else {
      ++stats_.bad_messages;
      send_error(peer, ErrorCode::kBadMessage, "message type not allowed from an application");
    }
  }
}

void SchedulerCore::on_bad_message(const PeerId& peer, const protocol::DecodeError& error,
                                   TimePoint now) {
  ++stats_.bad_messages;
  // One line per peer and kind of fault now and then, not one per message: a flood of garbage
  // must not fill the disk.
  auto ref = peers_.find(peer);
  const std::string who = ref == peers_.end() ? "an unknown peer"
                          : ref->second.is_worker
                              ? "worker '" + worker_names_[workers_[ref->second.index].name] + "'"
                              : "application '" + apps_[ref->second.index].app_id + "'";
  uint64_t suppressed = 0;
  if (log_limiter_.allow(who + std::to_string(static_cast<int>(error.code)), now, &suppressed)) {
    LRTS_WARN("dropped a bad message from {}: {}{}", who, error.text,
              suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
  }
  send_error(peer,
             error.code == protocol::DecodeCode::kVersion ? ErrorCode::kVersionMismatch
                                                          : ErrorCode::kBadMessage,
             error.text);
}

void SchedulerCore::send_error(const PeerId& peer, ErrorCode code, std::string_view text) {
  transport_.send_app(peer, protocol::ErrorMsg{code, text});
}

void SchedulerCore::send_heartbeat_ack(const PeerId& peer, bool app) {
  if (app) {
    transport_.send_app(
        peer, protocol::HeartbeatAck{options_.epoch,
                                     static_cast<uint32_t>(to_ms(options_.heartbeat_interval))});
  } else {
    transport_.send_worker(peer, protocol::HeartbeatAck{options_.epoch, 0});
  }
}

bool SchedulerCore::take_stream(PeerStreams& streams, uint64_t stream, Payload& out) {
  if (!streams.rx.claim(stream)) return false;
  const uint64_t blob = streams.storage.take(stream);
  if (!blob) return false;
  out.bytes.clear();
  out.blob = blob;
  out.blob_size = blobs_.size(blob);
  return true;
}

// ---- applications ---------------------------------------------------------------------------

void SchedulerCore::on_app_hello(const PeerId& peer, const protocol::AppHello& m, TimePoint now) {
  auto pit = peers_.find(peer);
  if (pit != peers_.end() && pit->second.is_worker) {
    ++stats_.bad_messages;
    return send_error(peer, ErrorCode::kBadMessage, "a worker cannot say application hello");
  }
  if (protocol::is_relayed(peer)) {
    ++stats_.refused;
    return send_error(peer, ErrorCode::kRefused,
                      "applications connect to the scheduler itself, not through a relay");
  }
  const std::string app_id(m.application_id);
  const auto existing = app_by_id_.find(app_id);
  const bool known = existing != app_by_id_.end();
  if (known && !caller_.identity.empty() && !apps_[existing->second].owner.empty() &&
      apps_[existing->second].owner != caller_.identity) {
    // Another key's application: no hello, so no results, no cancel, no goodbye for its tasks.
    return refuse(peer, "owner:" + app_id,
                  "application id '" + app_id + "' belongs to another key");
  }
  if (!known && apps_.live() >= options_.max_apps) {
    ++stats_.refused;
    return send_error(peer, ErrorCode::kRefused,
                      "the scheduler holds the most applications it may (" +
                          std::to_string(options_.max_apps) + ")");
  }
  const uint32_t ai = ensure_app(app_id);
  App& a = apps_[ai];
  // Bound to the key that creates it (or, made before --auth was on, the first that claims it).
  const bool claimed = a.owner.empty() && !caller_.identity.empty();
  if (claimed) a.owner.assign(caller_.identity);
  std::string note;
  if (!known || !a.connected) {
    if (peer_log("app", caller_.identity, &note)) {
      LRTS_INFO("application '{}' {}{}", app_id,
                a.detached ? "came back for its results" : "connected", note);
    }
  } else if (a.session != m.session && peer_log("app", caller_.identity, &note)) {
    LRTS_INFO("application '{}' reconnected with a new session{}", app_id, note);
  }
  if (!a.peer.empty() && a.peer != peer) peers_.erase(a.peer);
  a.peer = peer;
  peers_[peer] = PeerRef{false, ai};
  a.session = m.session;
  const Duration grace =
      m.grace_ms ? std::min<Duration>(milliseconds(std::min<uint64_t>(m.grace_ms, INT32_MAX)),
                                      options_.app_grace)
                 : options_.app_grace;
  // A plain hello attaches a detached application again; a collector's leaves it detached.
  const bool detached = a.detached && m.keep_detached;
  const bool changed = !known || claimed || grace != a.grace || a.detached != detached;
  a.grace = grace;
  a.detached = detached;
  if (changed) journal_app(a);
  a.connected = true;
  a.sent_unfinished = a.sent_running = UINT64_MAX;  // the new session hears them at once
  a.counts_sent = TimePoint{};
  count_app(ai, 0, 0);
  a.last_seen = now;
  arm_app_timer(ai, now + options_.app_timeout);

  // A new connection: its streams start afresh, and every result waiting goes again.
  a.streams = new_streams(m.max_message, &a.limits);
  protocol::AppWelcome welcome;
  welcome.scheduler_epoch = options_.epoch;
  welcome.known = known;
  welcome.heartbeat_ms = static_cast<uint32_t>(to_ms(options_.heartbeat_interval));
  welcome.max_message = options_.max_message_bytes;
  a.to_send.clear();
  a.outstanding.clear();
  AppList::for_each(tasks_, a.tasks, [&](uint32_t t) {
    Task& task = tasks_[t];
    if (task.key.session != m.session) a.outstanding.push_back(task.key);
    if (task.state == TaskState::kDone) {
      task.received = false;
      task.stream = 0;
      a.to_send.push_back(tasks_.handle(t));
    }
  });
  welcome.outstanding = a.outstanding.size();
  welcome.ready = a.to_send.size();
  if (!a.outstanding.empty()) apps_with_outstanding_.push_back(ai);
  if (!a.to_send.empty()) apps_with_results_.push_back(ai);
  transport_.send_app(peer, welcome);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Submit& m, TimePoint) {
  App& a = apps_[ai];
  if (m.session != a.session) {
    ++stats_.bad_messages;
    return send_error(a.peer, ErrorCode::kBadMessage,
                      "submit for a session other than the one in hello");
  }
  std::vector<uint32_t> names;
  names.reserve(m.names.size());
  for (auto n : m.names) names.push_back(service_names_.acquire(n));
  if (a.submit_acks.empty()) apps_with_acks_.push_back(ai);
  for (const auto& st : m.tasks) {
    const TaskKey key{m.session, st.seq};
    if (find_task(key) != kNone) {  // a re-sent submission we already hold
      a.submit_acks.emplace_back(journal_seq_, key);
      continue;
    }
    Payload fields;
    if (st.stream) {
      if (!take_stream(*a.streams, st.stream, fields)) continue;  // sent again after a welcome
    } else {
      fields.bytes.assign(st.fields);
    }
    const uint32_t service = names[st.name_index];
    const uint32_t t = new_task(key, ai, service);
    Task& task = tasks_[t];
    task.max_retries = st.max_retries;
    task.timeout_ms = st.timeout_ms;
    task.data = std::move(fields);
    ++stats_.submitted;
    if (journal_) {
      journal_->task_submitted(key, a.app_id, m.names[st.name_index], task.data.bytes,
                               task.data.blob, st.max_retries, st.timeout_ms);
      ++journal_seq_;
    }
    if (service == NameTable::kNone) {
      ++stats_.refused;
      finish_task(t, TaskStatus::kFailed,
                  Payload{"refused: the scheduler holds the most service names it may (" +
                              std::to_string(options_.max_service_names) + ")",
                          0, 0},
                  0, NameTable::kNone, 0);
    } else {
      if (service_names_.refs(service) == 2) new_service_name(service);
      enqueue(t);
    }
    a.submit_acks.emplace_back(journal_seq_, key);  // once its record is durable
  }
  for (uint32_t n : names) service_names_.release(n);  // the tasks hold their own references
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Received& m, TimePoint) {
  App& a = apps_[ai];
  for (const TaskKey& key : m.keys) {
    const uint32_t t = find_task(key);
    if (t == kNone || tasks_[t].app != ai || tasks_[t].state != TaskState::kDone) continue;
    Task& task = tasks_[t];
    task.received = true;
    if (task.stream && a.streams) a.streams->tx.finish(task.stream);
    task.stream = 0;
  }
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Collected& m, TimePoint) {
  App& a = apps_[ai];
  if (a.collected_acks.empty() && !m.keys.empty()) apps_with_acks_.push_back(ai);
  for (const TaskKey& key : m.keys) {
    const uint32_t t = find_task(key);
    if (t != kNone && tasks_[t].app == ai) {
      // The application has a result for this task. If we hold none, we lost it in a restart
      // (results go out before they are durable): the task is still over for the application,
      // and running it again would hand it a second one.
      if (tasks_[t].state == TaskState::kAssigned) cancel_on_worker(t);
      ++stats_.delivered;
      if (journal_) {
        journal_->task_removed(key);
        ++journal_seq_;
      }
      erase_task(t);
    }
    // Confirmed once the journal holds everything so far (an earlier removal included).
    a.collected_acks.emplace_back(journal_seq_, key);
  }
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Cancel& m, TimePoint) {
  for (const TaskKey& key : m.keys) {
    const uint32_t t = find_task(key);
    if (t == kNone || tasks_[t].app != ai || tasks_[t].state == TaskState::kDone) continue;
    if (tasks_[t].state == TaskState::kAssigned) cancel_on_worker(t);
    finish_task(t, TaskStatus::kCancelled, Payload{"cancelled by the application", 0, 0},
                tasks_[t].attempt, NameTable::kNone, 0);
  }
}

void SchedulerCore::on_app(uint32_t ai, const protocol::AppHeartbeat&, TimePoint now) {
  App& a = apps_[ai];
  ++stats_.heartbeats;
  // Answering is only a sign of life (a restarted scheduler answers "hello required"), so
  // not every heartbeat: replies would cost more than the heartbeats themselves.
  if (now - a.last_ack >= protocol::kHeartbeatAckEvery * options_.heartbeat_interval) {
    a.last_ack = now;
    send_heartbeat_ack(a.peer, true);
  }
}

void SchedulerCore::on_app(uint32_t ai, const protocol::AppBye&, TimePoint) {
  LRTS_INFO("application '{}' said goodbye; dropping its {} task(s)", apps_[ai].app_id,
            apps_[ai].tasks.size);
  drop_app(ai);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Detach&, TimePoint now) {
  App& a = apps_[ai];
  a.detached = true;
  journal_app(a);
  LRTS_INFO(
      "application '{}' detached; its {} task(s) run on and their results wait for it "
      "(at most {} each)",
      a.app_id, a.tasks.size, format_duration(options_.keep_results));
  disconnect_app(ai);
  arm_app_timer(ai, now);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Chunk& m, TimePoint) {
  App& a = apps_[ai];
  auto answer = a.streams->rx.on_chunk(m);
  if (!answer.refused.empty()) {
    ++stats_.refused;
    return send_error(a.peer, ErrorCode::kRefused, answer.refused);
  }
  transport_.send_app(a.peer, answer.ack);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::ChunkAck& m, TimePoint) {
  App& a = apps_[ai];
  if (auto done = a.streams->tx.on_ack(m)) {
    AppList::for_each(tasks_, a.tasks, [&](uint32_t t) {
      if (tasks_[t].stream == *done && tasks_[t].state == TaskState::kDone) {
        if (a.to_send.empty()) apps_with_results_.push_back(ai);
        a.to_send.push_back(tasks_.handle(t));
      }
    });
  }
}

// ---- workers --------------------------------------------------------------------------------

void SchedulerCore::on_worker_hello(const PeerId& peer, const protocol::WorkerHello& m,
                                    TimePoint now) {
  auto pit = peers_.find(peer);
  if (pit != peers_.end() && !pit->second.is_worker) {
    ++stats_.bad_messages;
    return send_error(peer, ErrorCode::kBadMessage, "an application cannot say worker hello");
  }
  // One worker per connection: a connection that registers another worker ends the first.
  if (pit != peers_.end() && workers_.used(pit->second.index) &&
      workers_[pit->second.index].uid != m.worker_uid) {
    lose_worker(pit->second.index, "its connection registered another worker");
  }
  uint32_t wi;
  auto it = worker_by_uid_.find(m.worker_uid);
  const bool known = it != worker_by_uid_.end();
  if (known && workers_[it->second].identity != caller_.identity) {
    return refuse(peer, "worker uid", "this worker id is registered with another key");
  }
  if (known) {
    wi = it->second;
  } else {
    const uint32_t name = worker_names_.acquire(m.name);
    if (name == NameTable::kNone) {
      ++stats_.refused;
      return send_error(peer, ErrorCode::kRefused,
                        "the scheduler holds the most worker names it may");
    }
    wi = workers_.alloc();
    Worker& fresh = workers_[wi];
    fresh.uid = m.worker_uid;
    fresh.identity.assign(caller_.identity);
    fresh.name = name;
    fresh.relay = kNone;
    ++direct_workers_;
    worker_by_uid_.emplace(m.worker_uid, wi);
  }
  Worker& w = workers_[wi];
  if (!w.peer.empty() && w.peer != peer) peers_.erase(w.peer);
  w.peer = peer;
  peers_[peer] = PeerRef{true, wi};
  // Directly or through a relay: a worker that moved (its relay died, say) keeps what it holds.
  set_relay(wi, protocol::is_relayed(peer) ? relay_for(protocol::relay_of(peer), now) : kNone);
  std::vector<uint32_t> services;
  for (auto name : m.services) {
    const uint32_t n = service_names_.acquire(name);
    if (n == NameTable::kNone) continue;
    if (std::find(services.begin(), services.end(), n) != services.end()) {
      service_names_.release(n);
      continue;
    }
    if (service_names_.refs(n) == 1) new_service_name(n);
    services.push_back(n);
  }
  const std::vector<uint32_t> old = w.services;
  placement_.set_services(wi, std::move(services));
  for (uint32_t n : old) service_names_.release(n);
  w.slots = m.slots;
  w.host.assign(m.host);
  if (!known) w.connected_at = now;
  w.draining = false;
  w.running = 0;
  w.hoarding = false;  // a new session starts clear
  w.capacity = capped_capacity(w, m.capacity);
  w.last_seen = now;
  w.last_progress = now;
  w.told_ms = heartbeat_ms_for(w);
  ++w.timer_gen;
  timers_.push({now + timeout_for(w), workers_.handle(wi), w.timer_gen, TimerOf::kWorker});

  // A new connection: its streams start afresh; tasks whose ASSIGN never left go back.
  w.streams = new_streams(m.max_message, &w.limits);
  std::vector<protocol::TaskAttempt> unsent;
  for (SlabHandle h : w.assign) {
    if (tasks_.valid(h) && tasks_[h.index].worker == wi) {
      unsent.push_back({tasks_[h.index].key, tasks_[h.index].attempt});
    }
  }
  w.assign.clear();
  hand_back(wi, unsent);

  // Reconcile what the worker holds with what we think it holds.
  protocol::WorkerWelcome welcome;
  welcome.scheduler_epoch = options_.epoch;
  welcome.heartbeat_ms = w.told_ms;
  welcome.max_message = options_.max_message_bytes;
  // What it holds, one entry per task (a task can be listed twice, say a newer attempt it runs
  // and the unacknowledged result of an older one): the newest attempt counts.
  std::unordered_map<TaskKey, uint32_t, protocol::TaskKeyHash> reported;
  reported.reserve(m.held.size());
  for (const auto& rt : m.held) {
    auto [r, fresh] = reported.emplace(rt.key, rt.attempt);
    if (!fresh) r->second = std::max(r->second, rt.attempt);
  }
  if (known) {
    // Ours but not reported. The same process lists everything it has of its tasks (running or
    // queued in `held`, results in `unacked`): one in neither never reached it (the ASSIGN was
    // lost with its connection, or it handed the task back on a link that broke) and goes back
    // without using an attempt. One whose result it holds is settled by that result, sent
    // after the welcome. Another attempt running there: ours is gone.
    std::unordered_map<TaskKey, uint32_t, protocol::TaskKeyHash> unacked;
    unacked.reserve(m.unacked.size());
    for (const auto& u : m.unacked) {
      auto [it, fresh] = unacked.emplace(u.key, u.attempt);
      if (!fresh) it->second = std::max(it->second, u.attempt);
    }
    std::vector<protocol::TaskAttempt> never_got;
    std::vector<uint32_t> lost;
    WorkerList::for_each(tasks_, w.tasks, [&](uint32_t t) {
      const Task& task = tasks_[t];
      auto r = reported.find(task.key);
      if (r != reported.end()) {
        if (r->second != task.attempt) lost.push_back(t);
        return;
      }
      auto u = unacked.find(task.key);
      if (u != unacked.end() && u->second == task.attempt) return;
      never_got.push_back({task.key, task.attempt});
    });
    hand_back(wi, never_got);
    for (uint32_t t : lost) {
      unassign(t);
      retry_or_fail(t, "the worker no longer had the task after reconnecting");
    }
  }
  for (const auto& [key, attempt] : reported) {
    const uint32_t t = find_task(key);
    if (t != kNone) {
      Task& task = tasks_[t];
      if (task.state == TaskState::kAssigned && task.worker == wi && task.attempt == attempt) {
        continue;  // as we thought
      }
      if ((task.state == TaskState::kQueued || task.state == TaskState::kLimbo) &&
          may_report(task, w.uid, attempt)) {
        // Requeued while the worker was away (or reloaded after a restart): adopt the attempt
        // it runs, under that attempt's number, so that its result (or loss) matches. A queue
        // entry left behind goes stale (the state is no longer kQueued).
        --stats_.queued;
        task.state = TaskState::kAssigned;
        task.attempt = attempt;  // the attempt it runs (the journal may count a handed-back one)
        task.worker = wi;
        if (task.last_owner.attempt != attempt) std::swap(task.last_owner, task.prev_owner);
        task.last_owner = {w.uid, attempt};
        task.restored = false;
        WorkerList::push_front(tasks_, w.tasks, t);
        ++w.assigned;
        ++stats_.assigned;
        count_app(task.app, 0, 1);
        continue;
      }
    }
    welcome.cancel.push_back(key);
  }
  if (std::string note; peer_log("worker", caller_.identity, &note)) {
    LRTS_INFO("worker '{}' {} ({} slots, holds {} task(s), {} to drop){}", m.name,
              known ? "reconnected" : "registered", m.slots, m.held.size(), welcome.cancel.size(),
              note);
  }
  transport_.send_worker(peer, welcome);
  placement_.mark_ready(wi);
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerResults& m, TimePoint now) {
  Worker& w = workers_[wi];
  w.capacity = capped_capacity(w, m.capacity);
  for (const auto& item : m.items) {
    Payload payload;
    if (item.stream) {
      if (!take_stream(*w.streams, item.stream, payload)) continue;  // not acknowledged: again
    } else {
      payload.bytes.assign(item.payload);
    }
    // The worker may forget this result once the journal holds what it changed.
    if (w.acks.empty()) workers_with_output_.push_back(wi);
    const uint32_t t = find_task(item.key);
    if (t == kNone) {
      ++stats_.duplicates;
      release_payload(payload);
      w.acks.emplace_back(journal_seq_, protocol::TaskAttempt{item.key, item.attempt});
      continue;
    }
    Task& task = tasks_[t];
    const bool current =
        task.state == TaskState::kAssigned && task.worker == wi && task.attempt == item.attempt;
    if (!current && item.status != TaskStatus::kLost && !may_report(task, w.uid, item.attempt)) {
      // Never given to this worker: a forged or confused report, never applied. Not
      // acknowledged either: the same attempt may yet be given to this worker (a task the
      // journal had not seen assigned), and an acknowledgement would make it forget its answer.
      // (A loss that is not current changes nothing anyway: it is dropped below.)
      ++stats_.forged;
      release_payload(payload);
      uint64_t suppressed = 0;
      if (forged_log_.allow(std::to_string(w.uid), now, &suppressed)) {
        LRTS_WARN(
            "worker '{}' reported a result for {} attempt {}, which was never assigned to it: "
            "refused{}",
            worker_names_[w.name], protocol::format_service_id(item.key), item.attempt,
            suppressed ? " (" + std::to_string(suppressed) + " more like it not logged)" : "");
      }
      continue;
    }
    if (item.status == TaskStatus::kLost) {
      release_payload(payload);
      if (current) {
        w.last_progress = now;  // only what settles an attempt of its own is progress
        unassign(t);
        retry_or_fail(t, item.payload);
      } else {
        ++stats_.duplicates;
      }
    } else if (task.state == TaskState::kDone) {
      ++stats_.duplicates;
      release_payload(payload);
    } else {
      // First terminal result wins, even from an attempt we had given up on.
      w.last_progress = now;
      if (task.state == TaskState::kAssigned && task.worker != wi) cancel_on_worker(t);
      finish_task(t, item.status, std::move(payload), item.attempt, w.name, item.run_ns);
    }
    w.acks.emplace_back(journal_seq_, protocol::TaskAttempt{item.key, item.attempt});
  }
  placement_.mark_ready(wi);
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerHeartbeat& m, TimePoint now) {
  Worker& w = workers_[wi];
  ++stats_.heartbeats;
  w.capacity = capped_capacity(w, m.capacity);
  w.running = m.running;
  w.memory_bytes = m.memory_bytes;
  w.draining = m.draining;
  check_hoarding(wi, m.running, now);
  placement_.mark_ready(wi);
  // Answered now and then (a sign of life), and at once when its interval has changed: as
  // workers come and go the interval follows their number, so heartbeats stay under the rate.
  const uint32_t interval = heartbeat_ms_for(w);
  if (interval != w.told_ms ||
      now - w.last_ack >= protocol::kHeartbeatAckEvery * milliseconds(w.told_ms)) {
    w.last_ack = now;
    if (interval > w.told_ms) {
      // Longer from now on: the timer follows (a shorter one catches up at the next check).
      w.told_ms = interval;
      ++w.timer_gen;
      timers_.push(
          {w.last_seen + timeout_for(w), workers_.handle(wi), w.timer_gen, TimerOf::kWorker});
    }
    w.told_ms = interval;
    transport_.send_worker(w.peer, protocol::HeartbeatAck{options_.epoch, interval});
  }
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerBye& m, TimePoint) {
  hand_back(wi, m.returned);
  lose_worker(wi, "the worker left");
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerReturn& m, TimePoint) {
  if (const size_t n = hand_back(wi, m.returned)) {
    LRTS_INFO("worker '{}' handed back {} task(s)", worker_names_[workers_[wi].name], n);
  }
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::Chunk& m, TimePoint) {
  Worker& w = workers_[wi];
  auto answer = w.streams->rx.on_chunk(m);
  if (!answer.refused.empty()) {
    ++stats_.refused;
    LRTS_WARN("worker '{}': a result stream is refused: {}", worker_names_[w.name], answer.refused);
    return;
  }
  transport_.send_worker(w.peer, answer.ack);
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::ChunkAck& m, TimePoint) {
  Worker& w = workers_[wi];
  if (w.streams->tx.on_ack(m)) {
    if (std::find(workers_with_output_.begin(), workers_with_output_.end(), wi) ==
        workers_with_output_.end()) {
      workers_with_output_.push_back(wi);  // an ASSIGN item may go now
    }
  }
}

// A worker that holds tasks and runs none of them while it heartbeats: after hoard_timeout its
// tasks go to other workers (their attempts do not count) and it gets none until it says hello
// again. One whose slots run a task, however long, is never flagged.
void SchedulerCore::check_hoarding(uint32_t wi, uint32_t running, TimePoint now) {
  Worker& w = workers_[wi];
  if (w.assigned == 0 || running > 0) {
    w.last_progress = now;
    return;
  }
  if (w.hoarding || now - w.last_progress < options_.hoard_timeout) return;
  w.hoarding = true;
  w.capacity = 0;
  ++stats_.hoarders;
  std::vector<protocol::TaskAttempt> held;
  WorkerList::for_each(tasks_, w.tasks, [&](uint32_t t) {
    held.push_back({tasks_[t].key, tasks_[t].attempt});
  });
  LRTS_WARN(
      "worker '{}' has held {} task(s) for {} without running or finishing any: flagged as "
      "hoarding; its tasks go to other workers and it gets none until it reconnects "
      "(--hoard-timeout)",
      worker_names_[w.name], held.size(), format_duration(options_.hoard_timeout));
  if (w.cancels.empty() && !held.empty()) workers_with_output_.push_back(wi);
  for (const auto& h : held) w.cancels.push_back(h.key);  // it must drop them
  hand_back(wi, held);
}

// Tasks handed back unfinished: queued again, the attempt does not count.
size_t SchedulerCore::hand_back(uint32_t wi, const std::vector<protocol::TaskAttempt>& returned) {
  size_t n = 0;
  for (const auto& rt : returned) {
    const uint32_t t = find_task(rt.key);
    if (t == kNone) continue;
    Task& task = tasks_[t];
    if (task.state != TaskState::kAssigned || task.worker != wi || task.attempt != rt.attempt) {
      continue;
    }
    unassign(t);
    --task.attempt;
    task.last_owner = std::exchange(task.prev_owner, {});  // the handed-back attempt is void
    if (journal_) {
      journal_->task_assigned(task.key, task.attempt, task.last_owner.worker_uid);
      ++journal_seq_;
    }
    enqueue(t);
    ++stats_.requeued;
    ++n;
  }
  return n;
}

}  // namespace lrts::scheduler
