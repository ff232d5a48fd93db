// SchedulerCore: what goes out at flush() — results to applications, acknowledgements,
// cancels and assignments to workers, submit acknowledgements — in batches cut by count and by
// the bytes each peer accepts, larger payloads as streams.
#include <algorithm>

#include "common/check.hpp"
#include "common/log.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {

namespace {

template <class V>
void dedupe(V& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

void SchedulerCore::flush(TimePoint now) {
  now_ = now;
  // Results first: an application waiting for one should not wait for bookkeeping. Then, for
  // each worker, acknowledgements and cancellations before new assignments (a worker must hear
  // that its result — say, a lost attempt — arrived before it is given the task's next attempt),
  // and submit acknowledgements last.
  // An application hears of its earlier runs' tasks before their results: it must know a
  // result is one of its own to keep it.
  for (uint32_t ai : apps_with_outstanding_) {
    if (apps_.used(ai)) send_outstanding(ai);
  }
  apps_with_outstanding_.clear();
  flush_results(now);
  const uint64_t upto = durable();
  dedupe(workers_with_output_);
  for (uint32_t wi : workers_with_output_) {
    if (!workers_.used(wi)) continue;
    Worker& w = workers_[wi];
    protocol::ResultAck acks;
    while (!w.acks.empty() && w.acks.front().first <= upto) {
      acks.acked.push_back(w.acks.front().second);
      w.acks.pop_front();
      if (acks.acked.size() >= options_.max_result_batch) {
        transport_.send_worker(w.peer, acks);
        acks.acked.clear();
      }
    }
    if (!acks.acked.empty()) transport_.send_worker(w.peer, acks);
    if (!w.cancels.empty()) {
      transport_.send_worker(w.peer, protocol::CancelTasks{std::move(w.cancels)});
      w.cancels.clear();
    }
  }
  assign_and_send(now);
  flush_submit_acks(upto);
  flush_counts(now);
  // The tasks of a worker dropped for congestion go to the others now, not at the next event.
  if (drop_congested()) assign_and_send(now);
  while (!blobs_to_remove_.empty() && blobs_to_remove_.front().first <= upto) {
    blobs_.remove(blobs_to_remove_.front().second);
    blobs_to_remove_.pop_front();
  }
}

void SchedulerCore::assign_and_send(TimePoint now) {
  placement_.pump(now, options_.unoffered_service_wait, !worker_by_uid_.empty(),
                  options_.max_assign_batch, [&](uint32_t w, uint32_t t) { assign(w, t); });
  dedupe(workers_with_output_);
  std::vector<uint32_t> again;
  for (uint32_t wi : workers_with_output_) {
    if (!workers_.used(wi)) continue;
    flush_worker(wi, now);
    const Worker& w = workers_[wi];
    if (!w.acks.empty() || !w.assign.empty()) again.push_back(wi);  // the rest next time
  }
  workers_with_output_.swap(again);
}

// Assignments whose fields are here (or whose stream is whole) leave in batches; the others
// wait for their stream.
void SchedulerCore::flush_worker(uint32_t wi, TimePoint now) {
  Worker& w = workers_[wi];
  protocol::Assign msg;
  size_t bytes = 0;
  std::vector<SlabHandle> waiting;
  std::vector<uint64_t> sent_streams;
  auto send = [&] {
    if (msg.tasks.empty()) return;
    transport_.send_worker(w.peer, msg);
    msg = protocol::Assign{};
    bytes = 0;
  };
  for (const SlabHandle h : w.assign) {
    if (!tasks_.valid(h)) continue;
    const Task& task = tasks_[h.index];
    if (task.state != TaskState::kAssigned || task.worker != wi) continue;
    if (task.stream && !w.streams->tx.complete(task.stream)) {
      waiting.push_back(h);
      continue;
    }
    auto index_of = [](std::vector<std::string_view>& table, std::string_view v) {
      for (uint32_t i = 0; i < table.size(); ++i) {
        if (table[i] == v) return i;
      }
      table.push_back(v);
      return static_cast<uint32_t>(table.size() - 1);
    };
    const uint32_t name = index_of(msg.names, service_names_[task.service]);
    const uint32_t app = index_of(msg.apps, apps_[task.app].app_id);
    const std::string_view fields = task.stream ? std::string_view() : task.data.bytes;
    msg.tasks.push_back({task.key, task.attempt, name, app, fields, task.stream, task.timeout_ms});
    if (task.stream) sent_streams.push_back(task.stream);
    bytes += fields.size() + 48;
    if (msg.tasks.size() >= options_.max_assign_batch || bytes >= w.limits.batch_bytes) send();
  }
  send();
  // The worker holds those fields now: their streams are done.
  for (uint64_t s : sent_streams) w.streams->tx.finish(s);
  for (const SlabHandle h : w.assign) {
    if (tasks_.valid(h) && std::find(sent_streams.begin(), sent_streams.end(),
                                     tasks_[h.index].stream) != sent_streams.end()) {
      tasks_[h.index].stream = 0;
    }
  }
  w.assign.swap(waiting);
  w.streams->tx.pump(now, [&](const protocol::Chunk& c) { transport_.send_worker(w.peer, c); });
}

void SchedulerCore::flush_results(TimePoint now) {
  std::vector<uint32_t> apps;
  apps.swap(apps_with_results_);
  dedupe(apps);
  for (uint32_t ai : apps) {
    if (!apps_.used(ai)) continue;
    App& a = apps_[ai];
    if (!a.connected) {
      a.to_send.clear();
      continue;
    }
    protocol::AppResults msg;
    size_t bytes = 0;
    std::vector<SlabHandle> waiting;
    auto send = [&] {
      if (msg.items.empty()) return;
      transport_.send_app(a.peer, msg);
      msg.items.clear();
      bytes = 0;
    };
    for (const SlabHandle h : a.to_send) {
      if (!tasks_.valid(h)) continue;
      Task& task = tasks_[h.index];
      if (task.state != TaskState::kDone || task.app != ai || task.received) continue;
      if (task.data.size() > a.limits.inline_max) {
        // Too large for a batch: the result goes as a stream first, the item when it is whole.
        if (!task.stream) {
          std::unique_ptr<protocol::PayloadSource> src =
              task.data.blob ? blobs_.open(task.data.blob)
                             : std::make_unique<protocol::BytesSource>(Bytes(task.data.bytes));
          if (!src) {
            LRTS_ERROR("the result of {} is missing from the state directory",
                       protocol::format_service_id(task.key));
            continue;
          }
          task.stream = a.streams->tx.start(std::move(src));
        }
        if (!a.streams->tx.complete(task.stream)) {
          waiting.push_back(h);
          continue;
        }
      }
      protocol::AppResult item;
      item.key = task.key;
      item.attempt = task.attempt;
      item.status = task.status;
      item.stream = task.stream;
      if (!task.stream) item.payload = task.data.bytes;
      if (task.result_worker != NameTable::kNone) item.worker = worker_names_[task.result_worker];
      item.run_ns = task.run_ns;
      msg.items.push_back(item);
      resends_.push_back({h, now});
      bytes += item.payload.size() + 64;
      if (msg.items.size() >= options_.max_result_batch || bytes >= a.limits.batch_bytes) send();
    }
    send();
    a.to_send.swap(waiting);
    if (!a.to_send.empty()) apps_with_results_.push_back(ai);
    a.streams->tx.pump(now, [&](const protocol::Chunk& c) { transport_.send_app(a.peer, c); });
  }
}

// Peers whose queue was full when something was sent: a message is lost (an ASSIGN would leave
// its task assigned to a worker that never got it), so they count as gone. Each says hello again
// when it reads, and the welcome settles what it missed.
bool SchedulerCore::drop_congested() {
  bool lost_worker = false;
  for (const PeerId& peer : transport_.take_congested()) {
    auto it = peers_.find(peer);
    if (it == peers_.end()) continue;
    const PeerRef ref = it->second;
    ++stats_.congested;
    if (ref.is_worker) {
      if (workers_.used(ref.index)) {
        lose_worker(ref.index, "it does not read what it is sent (its queue is full)");
        lost_worker = true;
      }
    } else if (apps_.used(ref.index) && apps_[ref.index].connected) {
      LRTS_WARN(
          "application '{}' does not read what it is sent (its queue is full); it is "
          "disconnected and gets everything again when it says hello",
          apps_[ref.index].app_id);
      disconnect_app(ref.index);
    }
  }
  return lost_worker;
}

void SchedulerCore::count_app(uint32_t ai, int64_t unfinished, int64_t running) {
  App& a = apps_[ai];
  LRTS_CHECK(static_cast<int64_t>(a.unfinished) + unfinished >= 0 &&
                 static_cast<int64_t>(a.running) + running >= 0,
             "an application's task counts went below zero");
  a.unfinished = static_cast<uint64_t>(static_cast<int64_t>(a.unfinished) + unfinished);
  a.running = static_cast<uint64_t>(static_cast<int64_t>(a.running) + running);
  if (!a.connected || a.counts_listed) return;
  a.counts_listed = true;
  apps_with_counts_.push_back(ai);
  counts_due_ = std::min(counts_due_, now_);
}

// At most one AppCounts per application every kCountsEvery; the latest counts win.
void SchedulerCore::flush_counts(TimePoint now) {
  if (now < counts_due_) return;
  counts_due_ = TimePoint::max();
  std::vector<uint32_t> later;
  for (uint32_t ai : apps_with_counts_) {
    if (!apps_.used(ai)) continue;
    App& a = apps_[ai];
    a.counts_listed = false;
    if (!a.connected || (a.unfinished == a.sent_unfinished && a.running == a.sent_running)) {
      continue;
    }
    if (now < a.counts_sent + kCountsEvery) {
      a.counts_listed = true;
      later.push_back(ai);
      counts_due_ = std::min(counts_due_, a.counts_sent + kCountsEvery);
      continue;
    }
    a.sent_unfinished = a.unfinished;
    a.sent_running = a.running;
    a.counts_sent = now;
    transport_.send_app(a.peer, protocol::AppCounts{a.running, a.unfinished - a.running});
  }
  apps_with_counts_.swap(later);
}

void SchedulerCore::send_outstanding(uint32_t ai) {
  App& a = apps_[ai];
  if (!a.connected) return;
  constexpr size_t kKeysPerMessage = 8192;
  for (size_t i = 0; i < a.outstanding.size(); i += kKeysPerMessage) {
    protocol::AppOutstanding msg;
    const size_t end = std::min(a.outstanding.size(), i + kKeysPerMessage);
    msg.keys.assign(a.outstanding.begin() + static_cast<long>(i),
                    a.outstanding.begin() + static_cast<long>(end));
    transport_.send_app(a.peer, msg);
  }
  a.outstanding.clear();
}

void SchedulerCore::flush_submit_acks(uint64_t upto) {
  dedupe(apps_with_acks_);
  std::vector<uint32_t> keep;
  for (uint32_t ai : apps_with_acks_) {
    if (!apps_.used(ai)) continue;
    App& a = apps_[ai];
    protocol::SubmitAck msg;
    auto send = [&] {
      if (!msg.seqs.empty() && a.connected) transport_.send_app(a.peer, msg);
      msg.seqs.clear();
    };
    while (!a.submit_acks.empty() && a.submit_acks.front().first <= upto) {
      const TaskKey& key = a.submit_acks.front().second;
      if (key.session != msg.session || msg.seqs.size() >= 65536) {
        send();  // one message per session
        msg.session = key.session;
      }
      msg.seqs.push_back(key.seq);
      a.submit_acks.pop_front();
    }
    send();
    protocol::CollectedAck collected;
    while (!a.collected_acks.empty() && a.collected_acks.front().first <= upto) {
      collected.keys.push_back(a.collected_acks.front().second);
      a.collected_acks.pop_front();
      if (collected.keys.size() >= 8192) {
        if (a.connected) transport_.send_app(a.peer, collected);
        collected.keys.clear();
      }
    }
    if (!collected.keys.empty() && a.connected) transport_.send_app(a.peer, collected);
    if (!a.submit_acks.empty() || !a.collected_acks.empty()) keep.push_back(ai);  // next commit
  }
  apps_with_acks_.swap(keep);
}

}  // namespace lrts::scheduler
