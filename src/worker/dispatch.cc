#include "worker/dispatch.hpp"

#include <algorithm>

namespace lrts::worker {

Dispatch::Dispatch(int slots) : slots_(static_cast<size_t>(std::max(1, slots))) {}

bool Dispatch::remove_queued(uint32_t ref) {
  auto it = std::find(queue_.begin(), queue_.end(), ref);
  if (it == queue_.end()) return false;
  queue_.erase(it);
  return true;
}

std::vector<uint32_t> Dispatch::take_queued() {
  std::vector<uint32_t> out(queue_.begin(), queue_.end());
  queue_.clear();
  return out;
}

std::vector<uint32_t> Dispatch::take_surplus(TimePoint now) {
  std::vector<uint32_t> out;
  const size_t cap = capacity(now);
  const size_t held = in_slots();
  const size_t keep = cap > held ? cap - held : 0;
  while (queue_.size() > keep) {
    out.push_back(queue_.back());
    queue_.pop_back();
  }
  return out;
}

void Dispatch::slot_up(int slot) {
  Slot& s = slots_[slot];
  s = Slot{};
  s.up = true;
}

void Dispatch::slot_down(int slot) {
  Slot& s = slots_[slot];
  s.up = false;
  s.in_flight.clear();
  s.fast = false;
  s.recall_pending = false;
  s.wanted_back.clear();
}

bool Dispatch::busy() const {
  for (const Slot& s : slots_) {
    if (!s.in_flight.empty()) return true;
  }
  return false;
}

size_t Dispatch::in_slots() const {
  size_t n = 0;
  for (const Slot& s : slots_) n += s.in_flight.size();
  return n;
}

void Dispatch::requeue_front(const std::vector<uint32_t>& refs) {
  queue_.insert(queue_.begin(), refs.begin(), refs.end());
}

int64_t Dispatch::long_ns() const {
  return std::max<int64_t>(kMinLongNs, static_cast<int64_t>(4 * ewma_run_ns_));
}

bool Dispatch::on_result(int slot, uint32_t ref, uint64_t run_ns, TimePoint now) {
  Slot& s = slots_[slot];
  if (s.in_flight.empty() || s.in_flight.front() != ref) return false;
  s.in_flight.pop_front();
  s.front_started = now;
  const double ns = static_cast<double>(run_ns);
  ewma_run_ns_ = ewma_run_ns_ <= 0 ? ns : 0.8 * ewma_run_ns_ + 0.2 * ns;
  s.fast = static_cast<int64_t>(run_ns) <= long_ns();
  if (s.in_flight.empty()) s.fast = s.fast && !queue_.empty();
  return true;
}

void Dispatch::on_recalled(int slot, const std::vector<uint32_t>& refs) {
  Slot& s = slots_[slot];
  s.recall_pending = false;
  std::vector<uint32_t> back;
  for (uint32_t ref : refs) {
    auto it = std::find(s.in_flight.begin(), s.in_flight.end(), ref);
    if (it == s.in_flight.end()) continue;
    s.in_flight.erase(it);
    back.push_back(ref);
  }
  requeue_front(back);
}

bool Dispatch::drop_from_slot(int slot, uint32_t ref) {
  Slot& s = slots_[slot];
  auto it = std::find(s.in_flight.begin(), s.in_flight.end(), ref);
  if (it == s.in_flight.end() || it == s.in_flight.begin()) return false;
  s.in_flight.erase(it);
  return true;
}

void Dispatch::want_back(int slot, uint32_t ref) { slots_[slot].wanted_back.push_back(ref); }

uint32_t Dispatch::depth(TimePoint now) const {
  if (ewma_run_ns_ <= 0) return 1;
  // A task running now counts with what it has taken so far: when long tasks follow short ones,
  // the estimate moves before the first long one ends.
  double typical = ewma_run_ns_;
  for (const Slot& s : slots_) {
    if (!s.in_flight.empty()) {
      typical = std::max(typical, static_cast<double>(to_ns(now - s.front_started)));
    }
  }
  const double d = kTargetQueuedNs / std::max(typical, 1.0);
  return static_cast<uint32_t>(std::clamp(d, 1.0, static_cast<double>(kMaxDepth)));
}

uint32_t Dispatch::capacity(TimePoint now) const {
  const uint32_t d = depth(now);
  const auto n = static_cast<uint32_t>(slots_.size());
  // Short tasks: hold a second round locally so slots never wait for the scheduler. Long
  // tasks: exactly one per slot, so none waits here while another worker is idle.
  return d > 1 ? 2 * n * d : n;
}

void Dispatch::plan(TimePoint now, std::vector<Batch>& runs, std::vector<Batch>& recalls) {
  const int64_t long_for = long_ns();
  // Recalls: tasks stranded behind a long-running one, and tasks asked back by name.
  for (size_t i = 0; i < slots_.size(); ++i) {
    Slot& s = slots_[i];
    if (!s.up || s.recall_pending || s.in_flight.size() < 2) {
      if (s.in_flight.size() < 2) s.wanted_back.clear();
      continue;
    }
    std::vector<uint32_t> refs;
    if (to_ns(now - s.front_started) > long_for) {
      refs.assign(s.in_flight.begin() + 1, s.in_flight.end());
    } else {
      for (uint32_t ref : s.wanted_back) {
        if (std::find(s.in_flight.begin() + 1, s.in_flight.end(), ref) != s.in_flight.end()) {
          refs.push_back(ref);
        }
      }
    }
    s.wanted_back.clear();
    if (refs.empty()) continue;
    s.recall_pending = true;
    recalls.push_back({static_cast<int>(i), std::move(refs)});
  }
  if (queue_.empty()) return;
  const uint32_t d = depth(now);
  const size_t first_run = runs.size();
  auto batch_for = [&](size_t slot) -> std::vector<uint32_t>& {
    for (size_t b = first_run; b < runs.size(); ++b) {
      if (runs[b].slot == static_cast<int>(slot)) return runs[b].refs;
    }
    runs.push_back({static_cast<int>(slot), {}});
    return runs.back().refs;
  };
  // Idle slots first, one task each: a batch never goes to one slot while another idles.
  for (size_t i = 0; i < slots_.size() && !queue_.empty(); ++i) {
    Slot& s = slots_[i];
    if (!s.up || !s.in_flight.empty()) continue;
    batch_for(i).push_back(queue_.front());
    s.in_flight.push_back(queue_.front());
    s.front_started = now;
    queue_.pop_front();
  }
  // Then top up slots that have shown their tasks are short, none behind a task already long.
  for (size_t i = 0; i < slots_.size() && !queue_.empty(); ++i) {
    Slot& s = slots_[i];
    if (!s.up || !s.fast || s.recall_pending || s.in_flight.empty()) continue;
    if (to_ns(now - s.front_started) > long_for) continue;
    if (s.in_flight.size() >= d) continue;
    std::vector<uint32_t>* batch = nullptr;
    while (s.in_flight.size() < d && !queue_.empty()) {
      if (!batch) batch = &batch_for(i);
      batch->push_back(queue_.front());
      s.in_flight.push_back(queue_.front());
      queue_.pop_front();
    }
  }
  std::erase_if(runs, [](const Batch& b) { return b.refs.empty(); });
}

TimePoint Dispatch::next_deadline() const {
  TimePoint next = TimePoint::max();
  const auto long_for = nanoseconds(long_ns());
  for (const Slot& s : slots_) {
    if (s.up && !s.recall_pending && s.in_flight.size() >= 2) {
      next = std::min(next, s.front_started + long_for + nanoseconds(1));
    }
  }
  return next;
}

}  // namespace lrts::worker
