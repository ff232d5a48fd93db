#include "worker/executor.hpp"

#include <algorithm>

#include "common/log.hpp"
#include "worker/result_limit.hpp"

namespace lrts::worker {

namespace {

constexpr const char* kCancelled = "cancelled by the scheduler";

// Bars the task left open take the task's end; bars it closed itself are done.
void settle_bars(std::vector<protocol::BarState>& bars, const TaskKey& key, uint32_t attempt,
                 protocol::BarPhase end) {
  for (auto& b : bars) {
    b.key = key;
    b.attempt = attempt;
    if (b.phase == protocol::BarPhase::kOpen) b.phase = end;
  }
}

}  // namespace

Executor::Executor(ExecutorOptions options, SlotControl& control)
    : options_(options),
      control_(control),
      dispatch_(options.slots),
      slots_(static_cast<size_t>(std::max(1, options.slots))) {}

uint32_t Executor::alloc(LocalTask task) {
  const uint32_t ref = entries_.alloc();
  entries_[ref].task = std::move(task);
  return ref;
}

void Executor::free_entry(uint32_t ref) {
  Entry& e = entries_[ref];
  auto it = by_key_.find(e.task.key);
  if (it != by_key_.end() && it->second == ref) by_key_.erase(it);  // cancelled ones are detached
  entries_.free(ref);
}

const LocalTask* Executor::task(uint32_t ref) const {
  return entries_.used(ref) ? &entries_[ref].task : nullptr;
}

bool Executor::add(LocalTask task) {
  if (auto it = by_key_.find(task.key); it != by_key_.end()) {
    // Held already under an older attempt (the scheduler gave up on it while the assignment
    // was on its way, and gave it to us again): the same work, under the newer attempt.
    Entry& e = entries_[it->second];
    if (e.task.attempt < task.attempt) e.task.attempt = task.attempt;
    return false;
  }
  const TaskKey key = task.key;
  const uint32_t ref = alloc(std::move(task));
  by_key_.emplace(key, ref);
  dispatch_.enqueue(ref);
  return true;
}

void Executor::lost(uint32_t ref, std::string reason, std::vector<Outcome>& out) {
  Entry& e = entries_[ref];
  out.push_back(
      Outcome{e.task.key, e.task.attempt, TaskStatus::kLost, Bytes(std::move(reason)), 0, {}});
  free_entry(ref);
}

bool Executor::cancel(const TaskKey& key, std::vector<Outcome>& out) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return false;
  const uint32_t ref = it->second;
  Entry& e = entries_[ref];
  if (e.slot < 0) {
    dispatch_.remove_queued(ref);
    lost(ref, kCancelled, out);
    return true;
  }
  // In a slot: detach the key now (a new assignment of it may come) and settle when the slot
  // answers, hands it back, or dies.
  e.cancelled = true;
  by_key_.erase(it);
  const auto& in = dispatch_.in_flight(e.slot);
  if (!in.empty() && in.front() == ref) {
    LRTS_INFO("stopping slot {} to cancel the task it runs", e.slot);
    kill_for(e.slot, ref);
  } else {
    dispatch_.want_back(e.slot, ref);
  }
  return true;
}

void Executor::kill_for(int slot, uint32_t ref) {
  SlotState& s = slots_[slot];
  if (s.down) return;
  s.kill_target = ref;
  control_.kill(slot);
}

std::vector<protocol::TaskAttempt> Executor::held() const {
  std::vector<protocol::TaskAttempt> out;
  out.reserve(by_key_.size());
  for (const auto& [key, ref] : by_key_) out.push_back({key, entries_[ref].task.attempt});
  return out;
}

std::vector<protocol::TaskAttempt> Executor::take_queued() {
  std::vector<protocol::TaskAttempt> out;
  for (uint32_t ref : dispatch_.take_queued()) {
    out.push_back({entries_[ref].task.key, entries_[ref].task.attempt});
    free_entry(ref);
  }
  return out;
}

std::vector<protocol::TaskAttempt> Executor::take_surplus(TimePoint now) {
  std::vector<protocol::TaskAttempt> out;
  for (uint32_t ref : dispatch_.take_surplus(now)) {
    out.push_back({entries_[ref].task.key, entries_[ref].task.attempt});
    free_entry(ref);
  }
  return out;
}

std::vector<int> Executor::busy_slots() const {
  std::vector<int> out;
  for (int i = 0; i < dispatch_.slots(); ++i) {
    if (!dispatch_.in_flight(i).empty()) out.push_back(i);
  }
  return out;
}

void Executor::on_slot_hello(int slot, TimePoint now) {
  SlotState& s = slots_[slot];
  s.starting = false;
  s.down = false;
  s.kill_target = UINT32_MAX;
  s.killed_at_rss = 0;
  dispatch_.slot_up(slot);
  on_tick(now);
}

bool Executor::on_slot_results(int slot, std::vector<SlotOutcome>& results, TimePoint now,
                               std::vector<Outcome>& out) {
  for (SlotOutcome& r : results) {
    if (!entries_.used(r.ref) || !dispatch_.on_result(slot, r.ref, r.run_ns, now)) {
      LRTS_ERROR("slot {} answered for a task it was not running; restarting it", slot);
      return false;
    }
    slots_[slot].failures = 0;
    Entry& e = entries_[r.ref];
    Outcome o;
    o.key = e.task.key;
    o.attempt = e.task.attempt;
    o.status = r.status;
    o.payload = std::move(r.payload);
    o.run_ns = r.run_ns;
    o.bars = std::move(r.bars);
    if (o.status == TaskStatus::kFinished &&
        over_result_limit(o.payload.size(), options_.max_result_bytes)) {
      o.status = TaskStatus::kFailed;
      o.payload = Bytes(result_limit_error(o.payload.size(), options_.max_result_bytes));
    }
    // A cancelled task that finished anyway still reports: the scheduler sorts it out.
    settle_bars(o.bars, o.key, o.attempt, protocol::phase_for(o.status));
    out.push_back(std::move(o));
    free_entry(r.ref);
  }
  on_tick(now);
  return true;
}

void Executor::on_slot_recalled(int slot, const std::vector<uint32_t>& refs,
                                std::vector<Outcome>& out) {
  dispatch_.on_recalled(slot, refs);
  for (uint32_t ref : refs) {
    if (!entries_.used(ref) || entries_[ref].slot != slot) continue;
    Entry& e = entries_[ref];
    e.slot = -1;
    if (e.cancelled) {
      dispatch_.remove_queued(ref);
      lost(ref, kCancelled, out);
    }
  }
}

void Executor::on_slot_exit(int slot, const std::string& how,
                            std::vector<protocol::BarState> last_bars, TimePoint now,
                            std::vector<Outcome>& out, uint32_t running) {
  SlotState& s = slots_[slot];
  const std::vector<uint32_t> in(dispatch_.in_flight(slot).begin(),
                                 dispatch_.in_flight(slot).end());
  dispatch_.slot_down(slot);
  const bool deliberate = s.kill_target != UINT32_MAX;
  // The task it died in: the one its region names; without a region, the first it had not
  // answered for. Results of tasks before it may have died in the slot's buffer: those tasks
  // go back to the queue with the ones behind it, their attempts intact (they run again: a
  // result lost with its process is delivered at least once, never charged to the task).
  // A death between tasks (or a region naming no task of its) blames the first, as before:
  // a slot that keeps dying after its tasks return still uses up their attempts.
  uint32_t culprit = in.empty() ? UINT32_MAX : in.front();
  if (running != kRunningUnknown && running != kRunningNone &&
      std::find(in.begin(), in.end(), running) != in.end()) {
    culprit = running;
  }
  // We killed it for one task (cancel, timeout, memory): only that task, if it was the one
  // running, pays; a task that ran instead was a bystander.
  if (deliberate && culprit != s.kill_target) culprit = UINT32_MAX;
  std::vector<uint32_t> back;
  size_t front_outcome = SIZE_MAX;  // the running task's outcome gets the slot's last bars
  for (uint32_t ref : in) {
    Entry& e = entries_[ref];
    e.slot = -1;
    const bool first = ref == culprit;
    if (first) front_outcome = out.size();
    if (e.cancelled) {
      if (first) settle_bars(last_bars, e.task.key, e.task.attempt, protocol::BarPhase::kCancelled);
      lost(ref, kCancelled, out);
    } else if (first && e.timed_out) {
      settle_bars(last_bars, e.task.key, e.task.attempt, protocol::BarPhase::kTimedOut);
      LRTS_WARN("task {} exceeded its timeout of {} ms; slot {} stopped",
                protocol::format_service_id(e.task.key), e.task.timeout_ms, slot);
      out.push_back(
          Outcome{e.task.key,
                  e.task.attempt,
                  TaskStatus::kTimedOut,
                  Bytes("exceeded its timeout of " + std::to_string(e.task.timeout_ms) + " ms"),
                  static_cast<uint64_t>(e.task.timeout_ms) * 1'000'000,
                  {}});
      free_entry(ref);
    } else if (first) {
      std::string why = s.killed_at_rss
                            ? "exceeded the memory limit of " +
                                  std::to_string(options_.max_job_memory >> 20) + " MB (resident " +
                                  std::to_string(s.killed_at_rss >> 20) + " MB)"
                            : "slot process " + how + " while running the task";
      LRTS_WARN("slot {} {} while running task {} (attempt {})", slot, s.killed_at_rss ? why : how,
                protocol::format_service_id(e.task.key), e.task.attempt);
      settle_bars(last_bars, e.task.key, e.task.attempt, protocol::BarPhase::kLost);
      lost(ref, std::move(why), out);
    } else {
      e.timed_out = false;  // it runs again from the start
      back.push_back(ref);
    }
  }
  if (front_outcome < out.size()) {
    auto& bars = out[front_outcome].bars;
    bars.insert(bars.end(), last_bars.begin(), last_bars.end());
  }
  dispatch_.requeue_front(back);
  if (in.empty() && !deliberate) LRTS_WARN("slot {} {} while idle", slot, how);
  if (!deliberate) ++s.failures;
  s.down = true;
  s.starting = false;
  s.kill_target = UINT32_MAX;
  s.killed_at_rss = 0;
  const Duration delay = std::min<Duration>(
      kMaxRestartDelay, milliseconds(s.failures <= 1 ? 0 : 50LL << std::min(s.failures, 10)));
  s.restart_at = now + delay;
  on_tick(now);
}

void Executor::on_slot_rss(int slot, uint64_t resident_bytes) {
  SlotState& s = slots_[slot];
  const auto& in = dispatch_.in_flight(slot);
  if (options_.max_job_memory == 0 || in.empty() || s.down || s.killed_at_rss) return;
  if (resident_bytes <= options_.max_job_memory) return;
  s.killed_at_rss = resident_bytes;
  kill_for(slot, in.front());
}

void Executor::on_tick(TimePoint now) {
  for (size_t i = 0; i < slots_.size(); ++i) {
    SlotState& s = slots_[i];
    if (s.down && !s.starting && s.restart_at <= now) {
      s.starting = true;
      control_.start_slot(static_cast<int>(i));
    }
  }
  // Timeouts and cancelled tasks that reached the front of their slot.
  for (int i = 0; i < dispatch_.slots(); ++i) {
    const auto& in = dispatch_.in_flight(i);
    if (in.empty() || slots_[i].down || slots_[i].kill_target != UINT32_MAX) continue;
    Entry& e = entries_[in.front()];
    if (e.cancelled) {
      kill_for(i, in.front());
    } else if (e.task.timeout_ms > 0 && !e.timed_out &&
               now - dispatch_.front_started(i) >= milliseconds(e.task.timeout_ms)) {
      e.timed_out = true;
      kill_for(i, in.front());
    }
  }
  runs_.clear();
  recalls_.clear();
  dispatch_.plan(now, runs_, recalls_);
  for (const auto& r : recalls_) control_.recall(r.slot, r.refs);
  std::vector<const LocalTask*> tasks;
  for (const auto& r : runs_) {
    tasks.clear();
    for (uint32_t ref : r.refs) {
      entries_[ref].slot = r.slot;
      tasks.push_back(&entries_[ref].task);
    }
    control_.run(r.slot, r.refs, tasks);
  }
}

TimePoint Executor::next_deadline() const {
  TimePoint next = dispatch_.next_deadline();
  for (int i = 0; i < static_cast<int>(slots_.size()); ++i) {
    const SlotState& s = slots_[i];
    if (s.down && !s.starting) next = std::min(next, s.restart_at);
    const auto& in = dispatch_.in_flight(i);
    if (in.empty()) continue;
    const Entry& e = entries_[in.front()];
    if (e.task.timeout_ms > 0 && !e.timed_out) {
      next = std::min(next, dispatch_.front_started(i) + milliseconds(e.task.timeout_ms));
    }
  }
  return next;
}

void Executor::stop_all() {
  for (size_t i = 0; i < slots_.size(); ++i) {
    SlotState& s = slots_[i];
    if (!s.down || s.starting) control_.kill(static_cast<int>(i));
  }
}

}  // namespace lrts::worker
