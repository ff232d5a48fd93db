#include "scheduler/core.hpp"

#include <algorithm>
#include <cassert>
#include <vector>

#include "common/log.hpp"

namespace lrts::scheduler {

using protocol::ErrorCode;
using protocol::MsgType;
using protocol::TaskStatus;

namespace {

// kLimbo: restored from the journal unfinished, waiting for its worker to claim it.
enum class TaskState : uint8_t { kFree, kQueued, kLimbo, kAssigned, kDone };


}  // namespace

struct SchedulerCore::Task {
  TaskKey key;
  uint32_t gen = 0;  // bumped when the record is reused, so stale queue entries are detected
  uint32_t app = kNone;
  uint32_t app_prev = kNone;
  uint32_t app_next = kNone;
  uint32_t worker = kNone;
  uint32_t worker_prev = kNone;
  uint32_t worker_next = kNone;
  uint32_t name = 0;
  uint32_t attempt = 0;  // number of times assigned
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  uint32_t result_worker = kNone;
  uint64_t run_ns = 0;
  TaskState state = TaskState::kFree;
  TaskStatus status = TaskStatus::kFinished;
  // Service fields while queued or assigned; the result payload once done.
  std::string data;
};

struct SchedulerCore::Worker {
  PeerId peer;
  uint64_t uid = 0;
  uint32_t name = 0;
  uint32_t slots = 0;
  uint32_t capacity = 0;
  uint32_t assigned = 0;
  uint32_t timer_gen = 0;
  uint32_t task_head = kNone;
  TimePoint last_seen{};
  bool live = false;
  bool in_ready = false;
  uint32_t ready_stamp = 0;
  std::vector<uint32_t> services;  // name indexes it offers
  TimePoint last_ack{};            // last heartbeat acknowledgement sent
  // Results to acknowledge, each once the journal holds everything up to `first`.
  std::deque<std::pair<uint64_t, protocol::TaskAttempt>> acks;
  std::vector<TaskKey> cancels;  // tasks it must drop
};

struct SchedulerCore::App {
  std::string app_id;
  PeerId peer;
  uint64_t session = 0;
  uint32_t timer_gen = 0;
  uint32_t task_head = kNone;
  size_t tasks = 0;
  Duration grace{};
  TimePoint last_seen{};
  TimePoint last_ack{};  // last heartbeat acknowledgement sent
  bool live = false;
  bool connected = false;
  std::vector<QueueEntry> to_send;  // done tasks whose result must go out
  // Submissions to acknowledge, each once the journal holds everything up to `first`. The key
  // keeps its session: an application may say hello with a new session before they leave.
  std::deque<std::pair<uint64_t, TaskKey>> submit_acks;
};

SchedulerCore::SchedulerCore(CoreOptions options, Transport& transport, JournalSink* journal)
    : options_(options), transport_(transport), journal_(journal) {}

void SchedulerCore::on_journal_committed(uint64_t records) {
  journal_committed_ = std::max(journal_committed_, records);
}

SchedulerCore::~SchedulerCore() = default;

// ---- dispatch ---------------------------------------------------------------------------------

void SchedulerCore::on_message(const PeerId& peer, const protocol::ToScheduler& msg,
                               TimePoint now) {
  std::visit([&](const auto& m) { dispatch(peer, m, now); }, msg);
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::AppHello& m, TimePoint now) {
  on_app_hello(peer, m, now);
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::WorkerHello& m, TimePoint now) {
  on_worker_hello(peer, m, now);
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

// ---- worker messages ----------------------------------------------------------------------

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerResults& m, TimePoint now) {
  workers_[wi].capacity = m.capacity;
  on_worker_results(wi, m, now);
  mark_ready(wi);
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerHeartbeat& m, TimePoint now) {
  Worker& w = workers_[wi];
  w.capacity = m.capacity;
  mark_ready(wi);
  // Answering is only a sign of life (a restarted scheduler answers "hello required"), so
  // not every heartbeat: replies would cost more than the heartbeats themselves.
  if (now - w.last_ack >= protocol::kHeartbeatAckEvery * options_.heartbeat_interval) {
    w.last_ack = now;
    send_heartbeat_ack(w.peer);
  }
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerBye& m, TimePoint) {
  on_worker_bye(wi, m.returned, /*leaving=*/true);
}

void SchedulerCore::on_worker(uint32_t wi, const protocol::WorkerReturn& m, TimePoint) {
  on_worker_bye(wi, m.returned, /*leaving=*/false);
}

// ---- application messages -------------------------------------------------------------------

void SchedulerCore::on_app(uint32_t ai, const protocol::Submit& m, TimePoint now) {
  on_submit(ai, m, now);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Received& m, TimePoint) {
  forget_results(ai, m.keys);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Collected& m, TimePoint) {
  forget_results(ai, m.keys);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::Cancel& m, TimePoint) {
  cancel_tasks(ai, m.keys);
}

void SchedulerCore::on_app(uint32_t ai, const protocol::AppHeartbeat&, TimePoint now) {
  App& a = apps_[ai];
  if (now - a.last_ack >= protocol::kHeartbeatAckEvery * options_.heartbeat_interval) {
    a.last_ack = now;
    send_heartbeat_ack(a.peer);
  }
}

void SchedulerCore::on_app(uint32_t ai, const protocol::AppBye&, TimePoint) {
  LRTS_INFO("application '{}' said goodbye; dropping its {} task(s)", apps_[ai].app_id,
            apps_[ai].tasks);
  drop_app(ai);
}

void SchedulerCore::on_app(uint32_t, const protocol::Detach&, TimePoint) {}

void SchedulerCore::on_bad_message(const PeerId& peer, const protocol::DecodeError& error,
                                   TimePoint now) {
  ++stats_.bad_messages;
  LRTS_WARN("dropped a bad message from peer {}: {}", peers_.count(peer) ? "known" : "unknown",
            error.text);
  send_error(peer,
             error.code == protocol::DecodeCode::kVersion ? ErrorCode::kVersionMismatch
                                                          : ErrorCode::kBadMessage,
             error.text);
}

void SchedulerCore::send_error(const PeerId& peer, ErrorCode code, std::string_view text) {
  transport_.send_app(peer, protocol::ErrorMsg{code, text});
}

void SchedulerCore::send_heartbeat_ack(const PeerId& peer) {
  transport_.send_app(peer, protocol::HeartbeatAck{options_.epoch});
}

// ---- applications ---------------------------------------------------------------------------

void SchedulerCore::on_app_hello(const PeerId& peer, const protocol::AppHello& m, TimePoint now) {
  auto pit = peers_.find(peer);
  if (pit != peers_.end() && pit->second.is_worker) {
    ++stats_.bad_messages;
    return send_error(peer, ErrorCode::kBadMessage, "a worker cannot say application hello");
  }
  const std::string app_id(m.application_id);
  const bool known = app_by_id_.count(app_id) != 0;
  uint32_t ai;
  App& a = ensure_app(app_id, &ai);
  if (!known || !a.connected) LRTS_INFO("application '{}' connected", app_id);
  if (!a.peer.empty() && a.peer != peer) peers_.erase(a.peer);
  if (a.connected && a.session != m.session) {
    LRTS_INFO("application '{}' reconnected with a new session", app_id);
  }
  a.peer = peer;
  peers_[peer] = PeerRef{false, ai};
  a.session = m.session;
  constexpr uint64_t kMaxGraceMs = 30ull * 24 * 3600 * 1000;  // keeps time arithmetic in range
  const Duration grace = m.grace_ms ? Duration(milliseconds(std::min(m.grace_ms, kMaxGraceMs)))
                                    : options_.app_grace;
  if (journal_ && (!known || grace != a.grace)) {
    journal_->app_registered(a.app_id, static_cast<uint64_t>(to_ms(grace)));
    ++journal_seq_;
  }
  a.grace = grace;
  a.connected = true;
  a.last_seen = now;
  ++a.timer_gen;
  timers_.push({now + options_.app_timeout, ai, a.timer_gen, false});

  protocol::AppWelcome welcome;
  welcome.scheduler_epoch = options_.epoch;
  welcome.known = known;
  welcome.heartbeat_ms = static_cast<uint32_t>(to_ms(options_.heartbeat_interval));
  welcome.max_message = options_.max_message_bytes;
  a.to_send.clear();
  for (uint32_t t = a.task_head; t != kNone; t = tasks_[t].app_next) {
    const Task& task = tasks_[t];
    if (task.key.session != m.session) welcome.outstanding.push_back(task.key);
    if (task.state == TaskState::kDone) a.to_send.push_back({t, task.gen});
  }
  if (!a.to_send.empty()) apps_with_results_.push_back(ai);
  transport_.send_app(peer, std::move(welcome));
}

void SchedulerCore::on_submit(uint32_t ai, const protocol::Submit& m, TimePoint now) {
  App& a = apps_[ai];
  if (m.session != a.session) {
    ++stats_.bad_messages;
    return send_error(a.peer, ErrorCode::kBadMessage,
                      "submit for a session other than the one in hello");
  }
  std::vector<uint32_t> names;
  names.reserve(m.names.size());
  for (auto n : m.names) names.push_back(service_index(n));
  if (a.submit_acks.empty()) apps_with_acks_.push_back(ai);
  for (const auto& st : m.tasks) {
    const TaskKey key{m.session, st.seq};
    if (find_task(key) != kNone) {  // a re-sent submission we already hold
      a.submit_acks.emplace_back(journal_seq_, key);
      continue;
    }
    const uint32_t t = alloc_task();
    Task& task = tasks_[t];
    task.key = key;
    task.app = ai;
    task.name = names[st.name_index];
    task.attempt = 0;
    task.max_retries = st.max_retries;
    task.timeout_ms = st.timeout_ms;
    task.data.assign(st.fields);
    task_index_.insert(key, t, key_of());
    link_app(t);
    enqueue(t);
    ++stats_.submitted;
    if (journal_) {
      journal_->task_submitted(key, a.app_id, m.names[st.name_index], st.fields, st.max_retries,
                               st.timeout_ms);
      ++journal_seq_;
    }
    a.submit_acks.emplace_back(journal_seq_, key);  // once its record is durable
  }
}

void SchedulerCore::forget_results(uint32_t ai, const std::vector<TaskKey>& keys) {
  for (const TaskKey& key : keys) {
    const uint32_t t = find_task(key);
    if (t == kNone || tasks_[t].app != ai || tasks_[t].state != TaskState::kDone) continue;
    ++stats_.delivered;
    if (journal_) {
      journal_->task_removed(key);
      ++journal_seq_;
    }
    unlink_app(t);
    free_task(t);
  }
}

void SchedulerCore::cancel_tasks(uint32_t ai, const std::vector<TaskKey>& keys) {
  for (const TaskKey& key : keys) {
    const uint32_t t = find_task(key);
    if (t == kNone || tasks_[t].app != ai) continue;
    Task& task = tasks_[t];
    if (task.state == TaskState::kDone) continue;
    if (task.state == TaskState::kAssigned) {
      Worker& w = workers_[task.worker];
      if (w.cancels.empty()) workers_with_cancels_.push_back(task.worker);
      w.cancels.push_back(task.key);
    }
    finish_task(t, TaskStatus::kCancelled, "cancelled by the application", kNone, 0);
  }
}

void SchedulerCore::drop_app(uint32_t ai) {
  App& a = apps_[ai];
  while (a.task_head != kNone) {
    const uint32_t t = a.task_head;
    if (journal_) {
      journal_->task_removed(tasks_[t].key);
      ++journal_seq_;
    }
    if (tasks_[t].state == TaskState::kAssigned) {
      Worker& w = workers_[tasks_[t].worker];
      if (w.cancels.empty()) workers_with_cancels_.push_back(tasks_[t].worker);
      w.cancels.push_back(tasks_[t].key);
      unassign(t);
    }
    unlink_app(t);
    free_task(t);
  }
  if (!a.peer.empty()) peers_.erase(a.peer);
  if (journal_) {
    journal_->app_removed(a.app_id);
    ++journal_seq_;
  }
  app_by_id_.erase(a.app_id);
  const uint32_t timer_gen = a.timer_gen + 1;
  a = App{};
  a.timer_gen = timer_gen;
  free_apps_.push_back(ai);
}

// ---- workers --------------------------------------------------------------------------------

void SchedulerCore::on_worker_hello(const PeerId& peer, const protocol::WorkerHello& m,
                                    TimePoint now) {
  auto pit = peers_.find(peer);
  if (pit != peers_.end() && !pit->second.is_worker) {
    ++stats_.bad_messages;
    return send_error(peer, ErrorCode::kBadMessage, "an application cannot say worker hello");
  }
  uint32_t wi;
  auto it = worker_by_uid_.find(m.worker_uid);
  const bool known = it != worker_by_uid_.end();
  if (known) {
    wi = it->second;
  } else {
    if (free_workers_.empty()) {
      wi = static_cast<uint32_t>(workers_.size());
      workers_.emplace_back();
    } else {
      wi = free_workers_.back();
      free_workers_.pop_back();
    }
    Worker& fresh = workers_[wi];
    fresh.uid = m.worker_uid;
    fresh.live = true;
    worker_by_uid_.emplace(m.worker_uid, wi);
  }
  Worker& w = workers_[wi];
  if (!w.peer.empty() && w.peer != peer) peers_.erase(w.peer);
  w.peer = peer;
  peers_[peer] = PeerRef{true, wi};
  w.name = intern(m.name, worker_names_, worker_name_index_);
  set_services(wi, m.services);
  w.slots = m.slots;
  w.capacity = m.capacity;
  w.last_seen = now;
  ++w.timer_gen;
  timers_.push({now + options_.worker_timeout, wi, w.timer_gen, true});

  // Reconcile what the worker holds with what we think it holds.
  protocol::WorkerWelcome welcome;
  welcome.scheduler_epoch = options_.epoch;
  welcome.heartbeat_ms = static_cast<uint32_t>(to_ms(options_.heartbeat_interval));
  welcome.max_message = options_.max_message_bytes;
  // What it holds, one entry per task (a task can be listed twice, say a newer attempt it runs
  // and the unacknowledged result of an older one): the newest attempt counts.
  std::unordered_map<TaskKey, uint32_t, protocol::TaskKeyHash> reported;
  reported.reserve(m.held.size());
  for (const auto& rt : m.held) {
    auto [it, fresh] = reported.emplace(rt.key, rt.attempt);
    if (!fresh) it->second = std::max(it->second, rt.attempt);
  }
  if (known) {
    // Ours but not reported: the attempt is gone.
    std::vector<uint32_t> lost;
    for (uint32_t t = w.task_head; t != kNone; t = tasks_[t].worker_next) {
      auto r = reported.find(tasks_[t].key);
      if (r == reported.end() || r->second != tasks_[t].attempt) lost.push_back(t);
    }
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
      if (task.state == TaskState::kQueued || task.state == TaskState::kLimbo) {
        // Requeued while the worker was away (or reloaded after a restart): adopt the attempt
        // it runs, under that attempt's number, so that its result (or loss) matches. A queue
        // entry left behind goes stale (the state is no longer kQueued).
        task.state = TaskState::kAssigned;
        task.attempt = attempt;
        link_worker(t, wi);
        --stats_.queued;
        ++stats_.assigned;
        continue;
      }
    }
    welcome.cancel.push_back(key);
  }
  LRTS_INFO("worker '{}' {} ({} slots, holds {} task(s), {} to drop)", m.name,
            known ? "reconnected" : "registered", m.slots, m.held.size(),
            welcome.cancel.size());
  transport_.send_worker(peer, std::move(welcome));
  mark_ready(wi);
}

void SchedulerCore::on_worker_results(uint32_t wi, const protocol::WorkerResults& m,
                                      TimePoint now) {
  Worker& w = workers_[wi];
  if (w.acks.empty() && !m.items.empty()) workers_with_acks_.push_back(wi);
  for (const auto& item : m.items) {
    const uint32_t t = find_task(item.key);
    if (t == kNone) {
      ++stats_.duplicates;
      continue;
    }
    Task& task = tasks_[t];
    const bool current = task.state == TaskState::kAssigned && task.worker == wi &&
                         task.attempt == item.attempt;
    if (item.status == TaskStatus::kLost) {
      if (current) {
        unassign(t);
        retry_or_fail(t, item.payload);
      } else {
        ++stats_.duplicates;
      }
      continue;
    }
    if (task.state == TaskState::kDone) {
      ++stats_.duplicates;
      continue;
    }
    // First terminal result wins, even from an attempt we had given up on.
    if (task.state == TaskState::kAssigned && task.worker != wi) {
      Worker& other = workers_[task.worker];
      if (other.cancels.empty()) workers_with_cancels_.push_back(task.worker);
      other.cancels.push_back(task.key);
    }
    finish_task(t, item.status, item.payload, w.name, item.run_ns);
  }
  // The worker may forget these results once the journal holds what they changed.
  for (const auto& item : m.items) {
    w.acks.emplace_back(journal_seq_, protocol::TaskAttempt{item.key, item.attempt});
  }
}

void SchedulerCore::on_worker_bye(uint32_t wi, const std::vector<protocol::TaskAttempt>& returned,
                                  bool leaving) {
  for (const auto& rt : returned) {
    const uint32_t t = find_task(rt.key);
    if (t == kNone) continue;
    Task& task = tasks_[t];
    if (task.state != TaskState::kAssigned || task.worker != wi || task.attempt != rt.attempt) {
      continue;
    }
    unassign(t);
    --task.attempt;  // handed back, not failed: the attempt does not count
    enqueue(t);
    ++stats_.requeued;
  }
  if (leaving) {
    lose_worker(wi, "the worker left");
  } else if (!returned.empty()) {
    LRTS_INFO("worker '{}' handed back {} task(s)", worker_names_[workers_[wi].name],
              returned.size());
  }
}

void SchedulerCore::lose_worker(uint32_t wi, std::string_view reason) {
  Worker& w = workers_[wi];
  size_t n = 0;
  while (w.task_head != kNone) {
    const uint32_t t = w.task_head;
    unassign(t);
    retry_or_fail(t, reason);
    ++n;
  }
  const std::string& name = worker_names_[w.name];
  if (n) {
    LRTS_WARN("worker '{}' lost ({}); {} task(s) go back to the queue", name, reason, n);
  } else {
    LRTS_INFO("worker '{}' removed ({})", name, reason);
  }
  w.in_ready = false;
  set_services(wi, {});
  if (!w.peer.empty()) peers_.erase(w.peer);
  worker_by_uid_.erase(w.uid);
  // Stamps survive the record's reuse, so entries of this worker left in ready lists never
  // match the next worker that takes its place.
  const uint32_t timer_gen = w.timer_gen + 1;
  const uint32_t ready_stamp = w.ready_stamp + 1;
  w = Worker{};
  w.timer_gen = timer_gen;
  w.ready_stamp = ready_stamp;
  free_workers_.push_back(wi);
}

void SchedulerCore::mark_ready(uint32_t wi) {
  Worker& w = workers_[wi];
  if (w.live && !w.in_ready && free_capacity(w) > 0) {
    w.in_ready = true;
    ++w.ready_stamp;
    for (uint32_t n : w.services) push_ready(services_[n].ready, wi);
    push_ready(ready_any_, wi);
  }
}

void SchedulerCore::push_ready(std::deque<std::pair<uint32_t, uint32_t>>& list, uint32_t wi) {
  list.emplace_back(wi, workers_[wi].ready_stamp);
  // Entries go stale as workers fill up; keep lists that are rarely drained small.
  if (list.size() > 2 * worker_by_uid_.size() + 16) {
    std::erase_if(list, [&](const auto& e) {
      const Worker& x = workers_[e.first];
      return !x.live || !x.in_ready || x.ready_stamp != e.second;
    });
  }
}

uint32_t SchedulerCore::service_index(std::string_view name) {
  const uint32_t n = intern(name, service_names_, service_name_index_);
  if (services_.size() <= n) services_.resize(n + 1);
  return n;
}

void SchedulerCore::set_services(uint32_t wi, const std::vector<std::string_view>& names) {
  Worker& w = workers_[wi];
  for (uint32_t n : w.services) --services_[n].offered_by;
  w.services.clear();
  for (auto name : names) {
    const uint32_t n = service_index(name);
    if (std::find(w.services.begin(), w.services.end(), n) != w.services.end()) continue;
    w.services.push_back(n);
    if (services_[n].offered_by++ == 0) services_[n].unoffered_since = TimePoint::max();
  }
  if (w.in_ready) {  // it may offer other services now: list it again
    w.in_ready = false;
    mark_ready(wi);
  }
}

uint32_t SchedulerCore::free_capacity(const Worker& w) const {
  return w.capacity > w.assigned ? w.capacity - w.assigned : 0;
}

// ---- tasks ----------------------------------------------------------------------------------

uint32_t SchedulerCore::alloc_task() {
  uint32_t t;
  if (free_tasks_.empty()) {
    t = static_cast<uint32_t>(tasks_.size());
    tasks_.emplace_back();
  } else {
    t = free_tasks_.back();
    free_tasks_.pop_back();
  }
  ++tasks_[t].gen;
  return t;
}

void SchedulerCore::free_task(uint32_t t) {
  Task& task = tasks_[t];
  assert(task.app == kNone && task.worker == kNone);
  switch (task.state) {
    case TaskState::kQueued:
    case TaskState::kLimbo: --stats_.queued; break;
    case TaskState::kAssigned: --stats_.assigned; break;
    case TaskState::kDone: --stats_.done; break;
    case TaskState::kFree: break;
  }
  task_index_.erase(task.key, key_of());
  const uint32_t gen = task.gen;
  task = Task{};
  task.gen = gen;
  free_tasks_.push_back(t);
}

uint32_t SchedulerCore::find_task(const TaskKey& key) const {
  return task_index_.find(key, key_of());
}

const TaskKey& SchedulerCore::task_key(uint32_t t) const { return tasks_[t].key; }

void SchedulerCore::enqueue(uint32_t t) {
  Task& task = tasks_[t];
  task.state = TaskState::kQueued;
  ++stats_.queued;
  auto& q = services_[task.name].queue;
  if (task.attempt > 0) {
    q.push_front({next_front_order_--, t, task.gen});  // a retry goes ahead of newer work
  } else {
    q.push_back({next_back_order_++, t, task.gen});
  }
  ++queue_entries_;
}

void SchedulerCore::unassign(uint32_t t) {
  Task& task = tasks_[t];
  assert(task.state == TaskState::kAssigned);
  const uint32_t wi = task.worker;
  unlink_worker(t);
  Worker& w = workers_[wi];
  --w.assigned;
  --stats_.assigned;
  task.state = TaskState::kFree;  // the caller decides what comes next
  mark_ready(wi);
}

void SchedulerCore::finish_task(uint32_t t, TaskStatus status, std::string_view payload,
                                uint32_t worker_name, uint64_t run_ns) {
  Task& task = tasks_[t];
  if (task.state == TaskState::kAssigned) {
    unassign(t);
  } else if (task.state == TaskState::kQueued || task.state == TaskState::kLimbo) {
    --stats_.queued;  // its queue entry goes stale
  }
  task.state = TaskState::kDone;
  ++task.gen;  // invalidates any queue entry
  task.status = status;
  task.data.assign(payload);
  task.result_worker = worker_name;
  task.run_ns = run_ns;
  ++stats_.done;
  ++stats_.completed;
  if (journal_) {
    journal_->task_finished(task.key, status, task.data, task.attempt,
                            worker_name == kNone ? std::string_view() : worker_names_[worker_name],
                            run_ns);
    ++journal_seq_;
  }
  note_result_for_delivery(t);
}

void SchedulerCore::retry_or_fail(uint32_t t, std::string_view reason) {
  Task& task = tasks_[t];
  if (task.attempt > task.max_retries) {
    std::string why = "gave up after " + std::to_string(task.attempt) + " attempt" +
                      (task.attempt == 1 ? "" : "s") + ": " + std::string(reason);
    task.state = TaskState::kFree;
    finish_task(t, TaskStatus::kFailed, why, kNone, 0);
    return;
  }
  ++stats_.requeued;
  if (journal_) {
    journal_->task_attempts(task.key, task.attempt);
    ++journal_seq_;
  }
  enqueue(t);
}

void SchedulerCore::note_result_for_delivery(uint32_t t) {
  Task& task = tasks_[t];
  App& a = apps_[task.app];
  if (!a.connected) return;  // delivered when it says hello again
  if (a.to_send.empty()) apps_with_results_.push_back(task.app);
  a.to_send.push_back({t, task.gen});
}

void SchedulerCore::link_app(uint32_t t) {
  Task& task = tasks_[t];
  App& a = apps_[task.app];
  task.app_prev = kNone;
  task.app_next = a.task_head;
  if (a.task_head != kNone) tasks_[a.task_head].app_prev = t;
  a.task_head = t;
  ++a.tasks;
}

void SchedulerCore::unlink_app(uint32_t t) {
  Task& task = tasks_[t];
  App& a = apps_[task.app];
  if (task.app_prev != kNone) {
    tasks_[task.app_prev].app_next = task.app_next;
  } else {
    a.task_head = task.app_next;
  }
  if (task.app_next != kNone) tasks_[task.app_next].app_prev = task.app_prev;
  task.app = task.app_prev = task.app_next = kNone;
  --a.tasks;
}

void SchedulerCore::link_worker(uint32_t t, uint32_t wi) {
  Task& task = tasks_[t];
  Worker& w = workers_[wi];
  task.worker = wi;
  task.worker_prev = kNone;
  task.worker_next = w.task_head;
  if (w.task_head != kNone) tasks_[w.task_head].worker_prev = t;
  w.task_head = t;
  ++w.assigned;
}

void SchedulerCore::unlink_worker(uint32_t t) {
  Task& task = tasks_[t];
  Worker& w = workers_[task.worker];
  if (task.worker_prev != kNone) {
    tasks_[task.worker_prev].worker_next = task.worker_next;
  } else {
    w.task_head = task.worker_next;
  }
  if (task.worker_next != kNone) tasks_[task.worker_next].worker_prev = task.worker_prev;
  task.worker = task.worker_prev = task.worker_next = kNone;
}

uint32_t SchedulerCore::intern(std::string_view s, std::vector<std::string>& table,
                               std::unordered_map<std::string, uint32_t>& index) {
  std::string key(s);
  auto it = index.find(key);
  if (it != index.end()) return it->second;
  const auto id = static_cast<uint32_t>(table.size());
  table.push_back(key);
  index.emplace(std::move(key), id);
  return id;
}

// ---- time -----------------------------------------------------------------------------------

void SchedulerCore::on_tick(TimePoint now) {
  if (now >= reclaim_at_) {
    reclaim_at_ = TimePoint::max();
    size_t n = 0;
    for (const QueueEntry& e : limbo_) {
      Task& task = tasks_[e.task];
      if (task.gen != e.gen || task.state != TaskState::kLimbo) continue;  // claimed meanwhile
      --stats_.queued;  // enqueue counts it again
      enqueue(e.task);
      ++n;
    }
    limbo_.clear();
    if (n) LRTS_INFO("{} task(s) not claimed by a returning worker go back to the queue", n);
  }
  while (!timers_.empty() && timers_.top().when <= now) {
    const Timer timer = timers_.top();
    timers_.pop();
    if (timer.is_worker) {
      const Worker& w = workers_[timer.index];
      if (w.live && w.timer_gen == timer.gen) check_worker(timer.index, now);
    } else {
      const App& a = apps_[timer.index];
      if (a.live && a.timer_gen == timer.gen) check_app(timer.index, now);
    }
  }
  while (!resends_.empty()) {
    const Resend e = resends_.front();
    if (e.sent + options_.result_resend > now) break;
    resends_.pop_front();
    if (tasks_[e.task].gen != e.gen || tasks_[e.task].state != TaskState::kDone) continue;
    note_result_for_delivery(e.task);
  }
}

void SchedulerCore::check_worker(uint32_t wi, TimePoint now) {
  Worker& w = workers_[wi];
  const TimePoint deadline = w.last_seen + options_.worker_timeout;
  if (deadline > now) {
    timers_.push({deadline, wi, w.timer_gen, true});
    return;
  }
  lose_worker(wi, "no heartbeat for " + std::to_string(to_ms(now - w.last_seen)) + " ms");
}

void SchedulerCore::check_app(uint32_t ai, TimePoint now) {
  App& a = apps_[ai];
  const TimePoint silent_at = a.last_seen + options_.app_timeout;
  if (a.connected) {
    if (silent_at > now) {
      timers_.push({silent_at, ai, a.timer_gen, false});
      return;
    }
    a.connected = false;
    a.to_send.clear();
    if (!a.peer.empty()) peers_.erase(a.peer);
    a.peer.clear();
    LRTS_WARN("application '{}' silent for {} ms; keeping its {} task(s) for {} s", a.app_id,
              to_ms(now - a.last_seen), a.tasks, to_ms(a.grace) / 1000);
  }
  if (silent_at + a.grace > now) {
    timers_.push({silent_at + a.grace, ai, a.timer_gen, false});
    return;
  }
  LRTS_WARN("application '{}' did not come back; dropping its {} task(s)", a.app_id, a.tasks);
  drop_app(ai);
}

TimePoint SchedulerCore::next_deadline() const {
  TimePoint next = reclaim_at_;
  if (!timers_.empty()) next = std::min(next, timers_.top().when);
  if (!resends_.empty()) next = std::min(next, resends_.front().sent + options_.result_resend);
  return next;
}

// ---- output ---------------------------------------------------------------------------------

void SchedulerCore::flush(TimePoint now) {
  // Results first: an application waiting for one should not wait for bookkeeping. Then, for
  // each worker, acknowledgements and cancellations before new assignments (a worker must hear
  // that its result — say, a lost attempt — arrived before it is given the task's next attempt),
  // and submit acknowledgements last.
  flush_results(now);
  const uint64_t durable = journal_ ? journal_committed_ : journal_seq_;
  size_t keep = 0;
  for (uint32_t wi : workers_with_acks_) {
    Worker& w = workers_[wi];
    protocol::ResultAck msg;
    while (!w.acks.empty() && w.acks.front().first <= durable) {
      msg.acked.push_back(w.acks.front().second);
      w.acks.pop_front();
    }
    if (!msg.acked.empty() && w.live) transport_.send_worker(w.peer, std::move(msg));
    if (!w.acks.empty()) workers_with_acks_[keep++] = wi;  // the rest after the next commit
  }
  workers_with_acks_.resize(keep);

  for (uint32_t wi : workers_with_cancels_) {
    Worker& w = workers_[wi];
    if (w.cancels.empty()) continue;
    if (w.live) transport_.send_worker(w.peer, protocol::CancelTasks{std::move(w.cancels)});
    w.cancels.clear();
  }
  workers_with_cancels_.clear();

  pump(now);

  size_t keep_apps = 0;
  for (uint32_t ai : apps_with_acks_) {
    App& a = apps_[ai];
    protocol::SubmitAck msg;
    auto send_acks = [&] {
      if (!msg.seqs.empty() && a.connected) transport_.send_app(a.peer, msg);
      msg.seqs.clear();
    };
    while (!a.submit_acks.empty() && a.submit_acks.front().first <= durable) {
      const TaskKey& key = a.submit_acks.front().second;
      if (key.session != msg.session) {
        send_acks();  // one message per session
        msg.session = key.session;
      }
      msg.seqs.push_back(key.seq);
      a.submit_acks.pop_front();
    }
    send_acks();
    if (!a.submit_acks.empty()) apps_with_acks_[keep_apps++] = ai;
  }
  apps_with_acks_.resize(keep_apps);

}

void SchedulerCore::pump(TimePoint now) {
  if (queue_entries_ == 0) return;
  // Services with work, the one waiting longest first; each goes to workers that offer it.
  std::vector<std::pair<uint64_t, uint32_t>> work;
  for (uint32_t n = 0; n < services_.size(); ++n) {
    ServiceState& sv = services_[n];
    while (!sv.queue.empty()) {
      const Queued& e = sv.queue.front();
      if (tasks_[e.task].gen == e.gen && tasks_[e.task].state == TaskState::kQueued) break;
      sv.queue.pop_front();  // stale: cancelled, finished or adopted meanwhile
      --queue_entries_;
    }
    if (sv.queue.empty()) continue;
    if (sv.offered_by == 0 && sv.unoffered_since == TimePoint::max() && !worker_by_uid_.empty()) {
      sv.unoffered_since = now;
      LRTS_WARN("no connected worker offers service '{}'; its tasks go to any worker in {} ms "
                "(where they fail with the reason) unless one that offers it connects",
                service_names_[n], to_ms(options_.unoffered_service_wait));
    }
    work.emplace_back(sv.queue.front().order, n);
  }
  std::sort(work.begin(), work.end());

  protocol::Assign msg;
  for (const auto& [order, n] : work) {
    ServiceState& sv = services_[n];
    const bool orphan = sv.offered_by == 0 && sv.unoffered_since != TimePoint::max() &&
                        now - sv.unoffered_since >= options_.unoffered_service_wait;
    auto& ready = orphan ? ready_any_ : sv.ready;
    while (!sv.queue.empty() && !ready.empty()) {
      const auto [wi, stamp] = ready.front();
      ready.pop_front();
      Worker& w = workers_[wi];
      if (!w.live || !w.in_ready || w.ready_stamp != stamp) continue;  // stale entry
      uint32_t want = std::min(free_capacity(w), options_.max_assign_batch);
      msg.names.assign(1, service_names_[n]);
      msg.apps.clear();
      msg.tasks.clear();
      while (want > 0 && !sv.queue.empty()) {
        const Queued e = sv.queue.front();
        sv.queue.pop_front();
        --queue_entries_;
        Task& task = tasks_[e.task];
        if (task.gen != e.gen || task.state != TaskState::kQueued) continue;  // stale entry
        task.state = TaskState::kAssigned;
        ++task.attempt;
        --stats_.queued;
        ++stats_.assigned;
        link_worker(e.task, wi);
        msg.tasks.push_back(
            {task.key, task.attempt, 0, app_index(msg, task.app), task.data, 0, task.timeout_ms});
        --want;
      }
      if (!msg.tasks.empty()) transport_.send_worker(w.peer, msg);
      if (free_capacity(w) > 0) {
        ready.emplace_back(wi, stamp);  // round robin: back of the line while it has room
      } else {
        w.in_ready = false;  // its entries elsewhere go stale; mark_ready lists it again
      }
    }
  }
}

void SchedulerCore::flush_results(TimePoint now) {
  protocol::AppResults msg;
  for (uint32_t ai : apps_with_results_) {
    App& a = apps_[ai];
    if (!a.connected) {
      a.to_send.clear();
      continue;
    }
    size_t i = 0;
    while (i < a.to_send.size()) {
      msg.items.clear();
      for (; i < a.to_send.size() && msg.items.size() < options_.max_result_batch; ++i) {
        const QueueEntry e = a.to_send[i];
        Task& task = tasks_[e.task];
        if (task.gen != e.gen || task.state != TaskState::kDone || task.app != ai) continue;
        protocol::AppResult item;
        item.key = task.key;
        item.attempt = task.attempt;
        item.status = task.status;
        item.payload = task.data;
        item.worker = task.result_worker == kNone ? std::string_view()
                                                  : std::string_view(worker_names_[task.result_worker]);
        item.run_ns = task.run_ns;
        msg.items.push_back(item);
        resends_.push_back({e.task, e.gen, now});
      }
      if (msg.items.empty()) continue;
      transport_.send_app(a.peer, msg);
    }
    a.to_send.clear();
  }
  apps_with_results_.clear();
}

uint32_t SchedulerCore::app_index(protocol::Assign& msg, uint32_t ai) const {
  const std::string_view id = apps_[ai].app_id;
  for (uint32_t i = 0; i < msg.apps.size(); ++i) {
    if (msg.apps[i] == id) return i;
  }
  msg.apps.push_back(id);
  return static_cast<uint32_t>(msg.apps.size() - 1);
}

SchedulerCore::App& SchedulerCore::ensure_app(std::string_view app_id, uint32_t* index) {
  auto it = app_by_id_.find(std::string(app_id));
  if (it != app_by_id_.end()) {
    *index = it->second;
    return apps_[it->second];
  }
  uint32_t ai;
  if (free_apps_.empty()) {
    ai = static_cast<uint32_t>(apps_.size());
    apps_.emplace_back();
  } else {
    ai = free_apps_.back();
    free_apps_.pop_back();
  }
  App& a = apps_[ai];
  a.app_id.assign(app_id);
  a.live = true;
  a.grace = options_.app_grace;
  app_by_id_.emplace(a.app_id, ai);
  *index = ai;
  return a;
}

void SchedulerCore::restore(RecoveredState state, TimePoint now) {
  for (const auto& ra : state.apps) {
    uint32_t ai;
    ensure_app(ra.app_id, &ai).grace = milliseconds(ra.grace_ms);
  }
  size_t unfinished = 0, done = 0;
  tasks_.reserve(state.tasks.size());
  for (auto& rt : state.tasks) {
    if (find_task(rt.key) != kNone) continue;
    uint32_t ai;
    ensure_app(rt.app_id, &ai);
    const uint32_t t = alloc_task();
    Task& task = tasks_[t];
    task.key = rt.key;
    task.app = ai;
    task.name = service_index(rt.name);
    task.attempt = rt.attempts;
    task.max_retries = rt.max_retries;
    task.timeout_ms = rt.timeout_ms;
    task_index_.insert(rt.key, t, key_of());
    link_app(t);
    if (rt.done) {
      task.state = TaskState::kDone;
      task.status = rt.status;
      task.data = std::move(rt.result);
      task.result_worker =
          rt.worker.empty() ? kNone : intern(rt.worker, worker_names_, worker_name_index_);
      task.run_ns = rt.run_ns;
      ++stats_.done;
      ++done;
    } else {
      task.state = TaskState::kLimbo;
      task.data = std::move(rt.fields);
      ++stats_.queued;
      limbo_.push_back({t, task.gen});
      ++unfinished;
    }
  }
  // Every application counts as just disconnected: it has its grace to come back.
  for (uint32_t ai = 0; ai < apps_.size(); ++ai) {
    App& a = apps_[ai];
    if (!a.live) continue;
    a.connected = false;
    a.last_seen = now;
    ++a.timer_gen;
    timers_.push({now + options_.app_timeout, ai, a.timer_gen, false});
  }
  if (!limbo_.empty()) reclaim_at_ = now + options_.reclaim_grace;
  LRTS_INFO("restored {} application(s), {} unfinished task(s) (waiting {} ms for their workers), "
            "{} result(s) awaiting delivery",
            app_by_id_.size(), unfinished, to_ms(options_.reclaim_grace), done);
}

Status SchedulerCore::verify() const {
  size_t queued = 0, assigned = 0, done = 0;
  for (uint32_t t = 0; t < tasks_.size(); ++t) {
    const Task& task = tasks_[t];
    if (task.state == TaskState::kFree) continue;
    if (find_task(task.key) != t) return make_error("task missing from index");
    if (task.app == kNone || !apps_[task.app].live) return make_error("task without application");
    if (task.attempt > task.max_retries + 1) return make_error("task over its attempt limit");
    switch (task.state) {
      case TaskState::kQueued:
      case TaskState::kLimbo: ++queued; break;
      case TaskState::kAssigned: {
        ++assigned;
        if (task.worker == kNone || !workers_[task.worker].live) {
          return make_error("assigned task without a live worker");
        }
        if (task.attempt == 0) return make_error("assigned task with attempt 0");
        break;
      }
      case TaskState::kDone: ++done; break;
      case TaskState::kFree: break;
    }
    if (task.state != TaskState::kAssigned && task.worker != kNone) {
      return make_error("unassigned task linked to a worker");
    }
  }
  if (queued != stats_.queued || assigned != stats_.assigned || done != stats_.done) {
    return make_error("state counters disagree with the tasks");
  }
  if (task_index_.size() != queued + assigned + done) return make_error("index size mismatch");
  size_t in_queue = 0, entries = 0;
  for (const ServiceState& sv : services_) {
    entries += sv.queue.size();
    for (const Queued& e : sv.queue) {
      if (tasks_[e.task].gen == e.gen && tasks_[e.task].state == TaskState::kQueued) ++in_queue;
    }
  }
  if (entries != queue_entries_) return make_error("queue entry count is wrong");
  size_t plain_queued = 0;
  for (const Task& task : tasks_) plain_queued += task.state == TaskState::kQueued;
  if (in_queue < plain_queued) return make_error("a queued task is not in the queue");
  std::vector<uint32_t> offered(services_.size(), 0);
  for (const Worker& w : workers_) {
    if (!w.live) continue;
    for (uint32_t sn : w.services) ++offered[sn];
  }
  for (size_t n = 0; n < services_.size(); ++n) {
    if (offered[n] != services_[n].offered_by) return make_error("offered_by count is wrong");
  }
  for (uint32_t wi = 0; wi < workers_.size(); ++wi) {
    const Worker& w = workers_[wi];
    if (!w.live) continue;
    uint32_t n = 0;
    for (uint32_t t = w.task_head; t != kNone; t = tasks_[t].worker_next) {
      if (tasks_[t].worker != wi || tasks_[t].state != TaskState::kAssigned) {
        return make_error("worker list holds a task that is not assigned to it");
      }
      ++n;
    }
    if (n != w.assigned) return make_error("worker assigned count is wrong");
    for (uint32_t sn : w.services) {
      if (sn >= services_.size()) return make_error("worker offers an unknown service index");
    }
  }
  for (uint32_t ai = 0; ai < apps_.size(); ++ai) {
    const App& a = apps_[ai];
    if (!a.live) continue;
    size_t n = 0;
    for (uint32_t t = a.task_head; t != kNone; t = tasks_[t].app_next) {
      if (tasks_[t].app != ai) return make_error("application list holds a foreign task");
      ++n;
    }
    if (n != a.tasks) return make_error("application task count is wrong");
  }
  return {};
}

CoreStats SchedulerCore::stats() const {
  CoreStats s = stats_;
  s.workers = worker_by_uid_.size();
  s.apps = app_by_id_.size();
  return s;
}

}  // namespace lrts::scheduler
