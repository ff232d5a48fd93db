// SchedulerCore: queries and operator commands (QUERY, CONTROL). Answers come from the core's
// own tables — counters kept as tasks move, and listings that stop at `limit` — so a query costs
// microseconds for the status and O(offset + limit) for a page, whatever the cluster holds.
// docs/protocol.md lists every field.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "common/log.hpp"
#include "protocol/msgpack_io.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler {

using nlohmann::json;
using protocol::ErrorCode;
using protocol::TaskStatus;

namespace {

constexpr uint32_t kDefaultRows = 100;
// A listing stops looking after this many tasks (its total is then a lower bound), so that one
// query over a million tasks cannot hold the loop for long (a few milliseconds at most).
constexpr uint32_t kMaxScan = 50'000;
constexpr size_t kErrorTextInListing = 4096;
constexpr const char* kVersion = "0.1.0";

const char* state_name(const Task& t) {
  switch (t.state) {
    case TaskState::kQueued:
      return "queued";
    case TaskState::kLimbo:
      return "waiting";
    case TaskState::kAssigned:
      return "running";
    case TaskState::kDone:
      switch (t.status) {
        case TaskStatus::kFinished:
          return "finished";
        case TaskStatus::kCancelled:
          return "cancelled";
        case TaskStatus::kTimedOut:
          return "timed_out";
        case TaskStatus::kFailed:
        case TaskStatus::kLost:
          return "failed";
      }
  }
  return "unknown";
}

bool known_state(std::string_view s) {
  for (const char* n : {"", "queued", "waiting", "running", "done", "finished", "failed",
                        "cancelled", "timed_out"}) {
    if (s == n) return true;
  }
  return false;
}

bool state_matches(const Task& t, std::string_view want) {
  if (want.empty()) return true;
  if (want == "done") return t.state == TaskState::kDone;
  return want == state_name(t);
}

std::string cut(std::string_view text, size_t max) {
  if (text.size() <= max) return std::string(text);
  return std::string(text.substr(0, max)) + "…";
}

std::string hex(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string error_json(std::string_view text) { return dump(json{{"error", text}}); }

}  // namespace

bool SchedulerCore::may_see(const App& a) const {
  return caller_.may_view_all || (!caller_.identity.empty() && a.owner == caller_.identity);
}

void SchedulerCore::note_completed(uint32_t t) {
  const Task& task = tasks_[t];
  activity_.completed.add(now_);
  if (task.run_ns) activity_.run_time.observe(static_cast<double>(task.run_ns) / 1e9);
  switch (task.status) {
    case TaskStatus::kFinished:
      ++stats_.finished;
      if (task.run_ns) note_run_time(task.service, static_cast<double>(task.run_ns) / 1e9);
      return;
    case TaskStatus::kCancelled:
      ++stats_.cancelled;
      return;
    case TaskStatus::kTimedOut:
      ++stats_.timed_out;
      break;
    case TaskStatus::kFailed:
    case TaskStatus::kLost:
      ++stats_.failed;
      break;
  }
  activity_.failed.add(now_);
  Failure f;
  f.key = task.key;
  f.app_id = apps_[task.app].app_id;
  if (task.service != NameTable::kNone) f.service = service_names_[task.service];
  if (task.result_worker != NameTable::kNone) f.worker = worker_names_[task.result_worker];
  f.attempt = task.attempt;
  f.error = task.data.blob ? "(a reason of " + std::to_string(task.data.blob_size) + " bytes)"
                           : cut(task.data.bytes, kFailureTextBytes);
  f.wall_ms = wall_ms();
  if (failures_.size() >= kMaxFailures) failures_.pop_front();
  failures_.push_back(std::move(f));
}

std::string SchedulerCore::service_label(const Task& t) const {
  if (t.service == NameTable::kNone) return {};
  const std::string& name = service_names_[t.service];
  constexpr std::string_view kPython = "lrts.python";
  if (name != kPython || t.state == TaskState::kDone || t.data.blob) return name;
  // Fields {"name": str, "pickle": bin}: only the map's keys and the name are read.
  protocol::mp::Reader r(t.data.bytes);
  const uint32_t n = r.map();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    if (r.str() == "name") {
      const std::string_view v = r.str();
      if (r.ok() && !v.empty())
        return name + ": " + std::string(v.substr(0, protocol::kMaxNameBytes));
      break;
    }
    r.skip();
  }
  return name;
}

// ---- dispatch ---------------------------------------------------------------------------------

template <class M>
bool SchedulerCore::admit_query(const PeerId& peer, const M& m) {
  auto it = query_peers_.find(peer);
  const uint64_t expected = it == query_peers_.end() ? 0 : it->second.proof;
  if (m.proof == expected) return true;
  // Not the proof of the last answer: the peer did not read it (or mixes requests). Said once
  // per answer it owes a read of, then dropped: a peer that does not read gets nothing queued.
  if (it != query_peers_.end() && !it->second.told) {
    it->second.told = true;
    ++stats_.refused;
    transport_.send_app(
        peer, protocol::QueryReply{m.id, static_cast<uint8_t>(ErrorCode::kRefused),
                                   error_json("one request at a time on a connection: read the "
                                              "answer and send its next_proof"),
                                   expected});
  }
  return false;
}

uint64_t SchedulerCore::next_proof(const PeerId& peer) {
  // xorshift64*: unpredictable enough to prove a reply was read (not a secret).
  proof_state_ ^= proof_state_ >> 12;
  proof_state_ ^= proof_state_ << 25;
  proof_state_ ^= proof_state_ >> 27;
  const uint64_t proof = (proof_state_ * 0x2545F4914F6CDD1DULL) | 1;
  auto [it, fresh] = query_peers_.try_emplace(peer);
  if (fresh) {
    query_order_.push_back(peer);
    if (query_order_.size() > kMaxQueryPeers) {
      query_peers_.erase(query_order_.front());  // the oldest starts afresh
      query_order_.pop_front();
    }
  }
  it->second.proof = proof;
  it->second.told = false;
  return proof;
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::Query& m, TimePoint) {
  if (!admit_query(peer, m)) return;
  ++stats_.queries;
  ErrorCode code{};
  std::string body;
  if (!caller_.may_apply && !caller_.may_view_all) {
    code = ErrorCode::kForbidden;
    body = "this key may not query the cluster (a viewer, application or admin key may)";
  } else {
    body = answer(m, &code);
  }
  if (code != ErrorCode{}) body = error_json(body);
  transport_.send_app(
      peer, protocol::QueryReply{m.id, static_cast<uint8_t>(code), body, next_proof(peer)});
}

void SchedulerCore::dispatch(const PeerId& peer, const protocol::Control& m, TimePoint) {
  if (!admit_query(peer, m)) return;
  ++stats_.queries;
  ErrorCode code{};
  std::string body = command(m, &code);
  if (code != ErrorCode{}) body = error_json(body);
  transport_.send_app(
      peer, protocol::QueryReply{m.id, static_cast<uint8_t>(code), body, next_proof(peer)});
}

// ---- queries ----------------------------------------------------------------------------------

std::string SchedulerCore::answer(const protocol::Query& q, ErrorCode* code) const {
  const TimePoint now = now_;
  const uint32_t limit = q.limit ? q.limit : kDefaultRows;
  auto worker_json = [&](const Worker& w) {
    json services = json::array();
    for (uint32_t n : w.services) services.push_back(service_names_[n]);
    return json{{"name", worker_names_[w.name]},
                {"host", w.host},
                {"uid", hex(w.uid)},
                {"slots", w.slots},
                {"running", std::min(w.assigned, w.slots)},
                {"held", w.assigned},
                {"capacity", w.capacity},
                {"services", std::move(services)},
                {"last_heartbeat_s", to_seconds(now - w.last_seen)},
                {"memory_bytes", w.memory_bytes},
                {"state", w.hoarding   ? "hoarding"
                          : w.draining ? "draining"
                                       : "ok"},
                {"connected_s", to_seconds(now - w.connected_at)}};
  };
  auto task_json = [&](const Task& t) {
    json j{{"service_id", protocol::format_service_id(t.key)},
           {"application_id", apps_[t.app].app_id},
           {"service", service_label(t)},
           {"state", state_name(t)},
           {"attempt", t.attempt},
           {"max_retries", t.max_retries},
           {"worker", ""},
           {"run_time_s", nullptr},
           {"wait_s", nullptr},
           {"error", ""}};
    if (t.state == TaskState::kAssigned) {
      j["worker"] = worker_names_[workers_[t.worker].name];
      j["run_time_s"] = to_seconds(now - t.started_at);
    } else if (t.state == TaskState::kDone) {
      if (t.result_worker != NameTable::kNone) j["worker"] = worker_names_[t.result_worker];
      j["run_time_s"] = static_cast<double>(t.run_ns) / 1e9;
      if (t.status != TaskStatus::kFinished) {
        j["error"] = t.data.blob ? "(a reason of " + std::to_string(t.data.blob_size) + " bytes)"
                                 : cut(t.data.bytes, kErrorTextInListing);
      }
    } else if (t.queued_at != TimePoint{}) {
      j["wait_s"] = to_seconds(now - t.queued_at);
    }
    return j;
  };

  if (q.what == "status") {
    const CoreStats st = stats();
    size_t connected = 0;
    for (const auto& [id, ai] : app_by_id_) connected += apps_[ai].connected ? 1 : 0;
    const uint64_t last_minute = activity_.completed.last_minute(now);
    const uint64_t backlog = journal_ ? journal_seq_ - journal_committed_ : 0;
    return dump(json{{"workers", st.workers},
                     {"relays", st.relays},
                     {"relayed_workers", st.relayed_workers},
                     {"heartbeat_ms", st.heartbeat_ms},
                     {"slots", st.slots},
                     {"busy_slots", st.busy_slots},
                     {"idle_slots", st.slots - st.busy_slots},
                     {"queued", st.queued - st.waiting},
                     {"waiting", st.waiting},
                     {"running", st.assigned},
                     {"finished", st.finished},
                     {"failed", st.failed},
                     {"cancelled", st.cancelled},
                     {"timed_out", st.timed_out},
                     {"awaiting_collection", st.done},
                     {"submitted", st.submitted},
                     {"requeued", st.requeued},
                     {"applications", st.apps},
                     {"applications_connected", connected},
                     {"throughput_per_s", static_cast<double>(last_minute) / 60.0},
                     {"completed_last_minute", last_minute},
                     {"failed_last_minute", activity_.failed.last_minute(now)},
                     {"journal",
                      {{"enabled", journal_ != nullptr},
                       {"path", options_.journal_path},
                       {"appended", journal_seq_},
                       {"committed", durable()},
                       {"backlog", backlog}}},
                     {"uptime_s", to_seconds(now - started_)},
                     {"version", kVersion},
                     {"scheduler", options_.listen_endpoint},
                     {"epoch", hex(options_.epoch)},
                     {"payload_bytes", st.blob_bytes},
                     {"estimate", json::parse(estimate_json())}});
  }

  if (q.what == "workers") {
    json rows = json::array();
    uint32_t seen = 0;
    for (uint32_t i = 0; i < workers_.capacity() && rows.size() < limit; ++i) {
      if (!workers_.used(i)) continue;
      if (seen++ < q.offset) continue;
      rows.push_back(worker_json(workers_[i]));
    }
    return dump(json{{"workers", std::move(rows)},
                     {"total", worker_by_uid_.size()},
                     {"offset", q.offset},
                     {"limit", limit}});
  }

  if (q.what == "worker") {
    const uint32_t name = worker_names_.find(q.worker);
    for (uint32_t i = 0; i < workers_.capacity(); ++i) {
      if (!workers_.used(i)) continue;
      const Worker& w = workers_[i];
      if (w.name != name && hex(w.uid) != q.worker) continue;
      json j = worker_json(w);
      json tasks = json::array();
      for (uint32_t t = w.tasks.first; t != kNone && tasks.size() < limit;
           t = tasks_[t].worker_links.next) {
        if (may_see(apps_[tasks_[t].app])) tasks.push_back(task_json(tasks_[t]));
      }
      j["tasks"] = std::move(tasks);
      return dump(j);
    }
    *code = ErrorCode::kRefused;
    return "no worker named '" + std::string(q.worker) + "' is connected";
  }

  if (q.what == "applications") {
    json rows = json::array();
    uint32_t seen = 0;
    size_t total = 0;
    for (uint32_t i = 0; i < apps_.capacity(); ++i) {
      if (!apps_.used(i) || !may_see(apps_[i])) continue;
      ++total;
      if (seen++ < q.offset || rows.size() >= limit) continue;
      const App& a = apps_[i];
      rows.push_back(json{{"application_id", a.app_id},
                          {"connected", a.connected},
                          {"detached", a.detached},
                          {"queued", a.unfinished - std::min(a.unfinished, a.running)},
                          {"running", a.running},
                          {"done", a.tasks.size - std::min<uint64_t>(a.tasks.size, a.unfinished)},
                          {"tasks", a.tasks.size}});
    }
    return dump(json{{"applications", std::move(rows)},
                     {"total", total},
                     {"offset", q.offset},
                     {"limit", limit}});
  }

  if (q.what == "tasks") {
    if (!known_state(q.state)) {
      *code = ErrorCode::kRefused;
      return "unknown task state '" + std::string(q.state) +
             "' (states: queued, waiting, running, done, finished, failed, cancelled, timed_out)";
    }
    // The total, when the counters know it: then the scan stops with the page.
    std::optional<uint64_t> known_total;
    const App* app = nullptr;
    if (!q.application_id.empty()) {
      const auto it = app_by_id_.find(std::string(q.application_id));
      if (it == app_by_id_.end() || !may_see(apps_[it->second])) {
        *code = ErrorCode::kRefused;
        return "the scheduler holds no application '" + std::string(q.application_id) + "'";
      }
      app = &apps_[it->second];
    }
    if (q.worker.empty() && caller_.may_view_all) {
      const CoreStats st = stats();
      if (app) {
        if (q.state.empty()) known_total = app->tasks.size;
        if (q.state == "running") known_total = app->running;
        if (q.state == "done") known_total = app->tasks.size - app->unfinished;
      } else {
        if (q.state.empty()) known_total = tasks_.live();
        if (q.state == "queued") known_total = st.queued - st.waiting;
        if (q.state == "waiting") known_total = st.waiting;
        if (q.state == "running") known_total = st.assigned;
        if (q.state == "done") known_total = st.done;
      }
    }
    json rows = json::array();
    uint64_t total = 0;
    uint32_t scanned = 0;
    bool capped = false, stop = false;
    auto visit = [&](uint32_t t) {
      if (++scanned > kMaxScan) {
        capped = stop = true;
        return;
      }
      const Task& task = tasks_[t];
      if (!state_matches(task, q.state) || !may_see(apps_[task.app])) return;
      if (total++ < q.offset) return;
      if (rows.size() < limit) rows.push_back(task_json(task));
      if (rows.size() >= limit && known_total) stop = true;
    };
    if (app) {
      for (uint32_t t = app->tasks.first; t != kNone && !stop; t = tasks_[t].app_links.next) {
        visit(t);
      }
    } else if (!q.worker.empty()) {
      const uint32_t name = worker_names_.find(q.worker);
      for (uint32_t i = 0; i < workers_.capacity() && !stop; ++i) {
        if (!workers_.used(i) || (workers_[i].name != name && hex(workers_[i].uid) != q.worker)) {
          continue;
        }
        for (uint32_t t = workers_[i].tasks.first; t != kNone && !stop;
             t = tasks_[t].worker_links.next) {
          visit(t);
        }
      }
    } else {
      for (uint32_t t = 0; t < tasks_.capacity() && !stop; ++t) {
        if (tasks_.used(t)) visit(t);
      }
    }
    if (known_total) {
      total = *known_total;
      capped = false;
    }
    return dump(json{{"tasks", std::move(rows)},
                     {"total", total},
                     {"total_capped", capped},
                     {"offset", q.offset},
                     {"limit", limit}});
  }

  if (q.what == "task") {
    TaskKey key;
    const uint32_t t = protocol::parse_service_id(q.service_id, &key) ? find_task(key) : kNone;
    if (t == kNone || !may_see(apps_[tasks_[t].app])) {
      *code = ErrorCode::kRefused;
      return "the scheduler holds no task '" + std::string(q.service_id) +
             "' (unknown, or collected and forgotten)";
    }
    const Task& task = tasks_[t];
    json j = task_json(task);
    json attempts = json::array();
    for (const AttemptOwner* o : {&task.prev_owner, &task.last_owner}) {
      if (o->attempt == 0) continue;
      const auto w = worker_by_uid_.find(o->worker_uid);
      attempts.push_back(
          json{{"attempt", o->attempt},
               {"worker", w != worker_by_uid_.end() ? worker_names_[workers_[w->second].name]
                                                    : "uid " + hex(o->worker_uid) + " (gone)"}});
    }
    j["attempts"] = std::move(attempts);
    if (task.state == TaskState::kDone && task.status != TaskStatus::kFinished && !task.data.blob) {
      j["error"] = cut(task.data.bytes, protocol::kMaxErrorTextBytes);
    }
    return dump(j);
  }

  if (q.what == "failures") {
    json rows = json::array();
    for (auto it = failures_.rbegin(); it != failures_.rend() && rows.size() < limit; ++it) {
      const auto app = app_by_id_.find(it->app_id);
      if (!caller_.may_view_all && (app == app_by_id_.end() || !may_see(apps_[app->second])))
        continue;
      rows.push_back(json{{"service_id", protocol::format_service_id(it->key)},
                          {"application_id", it->app_id},
                          {"service", it->service},
                          {"worker", it->worker},
                          {"attempt", it->attempt},
                          {"error", it->error},
                          {"t", static_cast<double>(it->wall_ms) / 1000.0}});
    }
    return dump(json{{"failures", std::move(rows)}});
  }

  *code = ErrorCode::kRefused;
  return "unknown query '" + std::string(q.what) +
         "' (queries: status, workers, worker, applications, tasks, task, failures)";
}

// ---- operator commands --------------------------------------------------------------------------

std::string SchedulerCore::command(const protocol::Control& c, ErrorCode* code) {
  const std::string who = caller_.identity.empty() ? std::string("an operator")
                                                   : "'" + std::string(caller_.identity) + "'";
  if (c.action == "cancel") {
    if (!caller_.may_operate && !caller_.may_apply) {
      *code = ErrorCode::kForbidden;
      return "this key may not cancel tasks (an application key may cancel its own, an admin "
             "key any)";
    }
    const std::string reason = "cancelled by " + who + " (lrts cancel)";
    size_t cancelled = 0, done = 0;
    json unknown = json::array();
    // Another key's task is reported as unknown, as its queries do: a key learns nothing of
    // what is not its own.
    auto cancel_one = [&](uint32_t t) {
      Task& task = tasks_[t];
      if (!may_see(apps_[task.app]) || (!caller_.may_operate && !caller_.may_view_all &&
                                        apps_[task.app].owner != caller_.identity)) {
        if (unknown.size() < 100) unknown.push_back(protocol::format_service_id(task.key));
        return;
      }
      if (task.state == TaskState::kDone) {
        ++done;
        return;
      }
      if (task.state == TaskState::kAssigned) cancel_on_worker(t);
      finish_task(t, TaskStatus::kCancelled, Payload{reason, 0, 0}, task.attempt, NameTable::kNone,
                  0);
      ++cancelled;
    };
    if (!c.application_id.empty()) {
      const auto it = app_by_id_.find(std::string(c.application_id));
      if (it == app_by_id_.end() || !may_see(apps_[it->second])) {
        *code = ErrorCode::kRefused;
        return "the scheduler holds no application '" + std::string(c.application_id) + "'";
      }
      std::vector<uint32_t> ts;
      AppList::for_each(tasks_, apps_[it->second].tasks, [&](uint32_t t) { ts.push_back(t); });
      for (uint32_t t : ts) cancel_one(t);
    }
    for (const TaskKey& key : c.keys) {
      const uint32_t t = find_task(key);
      if (t == kNone) {
        if (unknown.size() < 100) unknown.push_back(protocol::format_service_id(key));
        continue;
      }
      cancel_one(t);
    }
    if (cancelled) {
      LRTS_INFO("{} cancelled {} task(s){}", who, cancelled,
                c.application_id.empty()
                    ? ""
                    : " of application '" + std::string(c.application_id) + "'");
    }
    return dump(
        json{{"cancelled", cancelled}, {"already_done", done}, {"unknown", std::move(unknown)}});
  }
  if (c.action == "drain") {
    if (!caller_.may_operate) {
      *code = ErrorCode::kForbidden;
      return "this key may not drain workers (an admin key may)";
    }
    const uint32_t name = worker_names_.find(c.worker);
    json drained = json::array();
    size_t held = 0;
    for (uint32_t i = 0; i < workers_.capacity(); ++i) {
      if (!workers_.used(i)) continue;
      Worker& w = workers_[i];
      if (w.name != name && hex(w.uid) != c.worker) continue;
      w.draining = true;
      transport_.send_worker(w.peer, protocol::Drain{});
      drained.push_back(worker_names_[w.name]);
      held += w.assigned;
    }
    if (drained.empty()) {
      *code = ErrorCode::kRefused;
      return "no worker named '" + std::string(c.worker) + "' is connected (see lrts workers)";
    }
    LRTS_INFO("{} asked worker '{}' to drain ({} task(s) on it)", who, std::string(c.worker), held);
    return dump(json{{"draining", std::move(drained)}, {"held", held}});
  }
  *code = ErrorCode::kRefused;
  return "unknown command '" + std::string(c.action) + "' (commands: cancel, drain)";
}

}  // namespace lrts::scheduler
