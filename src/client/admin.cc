// lrts::Admin: one DEALER connection to the scheduler, one QUERY or CONTROL and its QUERY_REPLY
// per call. No hello: the scheduler answers queries from any connection its key allows.
#include "lrts/admin.hpp"

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <random>

#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"

namespace lrts {

using nlohmann::json;

struct Admin::Impl {
  AdminOptions options;
  net::ZmqContext ctx;
  net::ZmqSocket dealer{ctx, ZMQ_DEALER};
  std::unique_ptr<net::HandshakeGuard> handshakes;
  std::string where;
  uint64_t next_id = 1;
  uint64_t proof = 0;  // the next_proof of the last answer read (protocol::Query)
  std::string buf;

  explicit Impl(AdminOptions o) : options(std::move(o)) {
    where = options.scheduler_address + ":" + std::to_string(options.scheduler_port);
    if (options.auth_dir.empty()) {
      if (const char* env = std::getenv("LRTS_AUTH_DIR")) options.auth_dir = env;
    }
    auto ep = net::connect_endpoint(options.scheduler_address, options.scheduler_port);
    if (!ep) throw AdminError(ep.error());
    dealer.set_int(ZMQ_LINGER, 0);
    dealer.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    if (!options.auth_dir.empty()) {
      auto auth = net::load_client_auth(options.auth_dir, net::Role::kAdmin);
      if (!auth) throw AdminError(auth.error());
      net::secure_client(dealer, *auth);
    }
    handshakes = std::make_unique<net::HandshakeGuard>(ctx, dealer, ep->zmq, "the scheduler");
    if (auto s = dealer.connect(ep->zmq); !s) throw AdminError(s.error());
  }

  // Sends `m` (its id set here) and waits for the answer; throws on an error or no answer.
  template <class M>
  json call(M m) {
    for (int tries = 0;; ++tries) {
      bool resync = false;
      json j = call_once(m, &resync);
      if (!resync || tries > 0) return j;
    }
  }

  // One request; `*resync` set when it was refused for a stale proof (an answer to an earlier
  // call that timed out came late): the caller sends it again with the proof now known.
  template <class M>
  json call_once(M& m, bool* resync) {
    m.id = next_id++;
    m.proof = proof;
    buf.clear();
    protocol::encode(m, buf);
    if (dealer.send(buf) != net::SendResult::kSent) {
      throw AdminError("cannot send to the scheduler at " + where);
    }
    const TimePoint deadline = Clock::now() + options.timeout;
    net::ZmqFrame frame;
    for (;;) {
      const TimePoint now = Clock::now();
      if (now >= deadline) break;
      zmq_pollitem_t items[2] = {{dealer.get(), 0, ZMQ_POLLIN, 0},
                                 {handshakes->monitor_socket(), 0, ZMQ_POLLIN, 0}};
      const long wait = std::max<long>(1, to_ms(deadline - now));
      if (zmq_poll(items, 2, wait) < 0 && zmq_errno() != EINTR) break;
      if (items[1].revents & ZMQ_POLLIN) handshakes->on_readable(Clock::now());
      while (dealer.recv(frame)) {
        auto msg =
            protocol::decode<protocol::ToApp>(frame.view(), protocol::kDefaultMaxMessageBytes);
        if (!msg) continue;
        if (const auto* e = std::get_if<protocol::ErrorMsg>(&*msg)) {
          throw AdminError("the scheduler at " + where + " refused: " + std::string(e->text));
        }
        const auto* r = std::get_if<protocol::QueryReply>(&*msg);
        if (!r) continue;
        proof = r->next_proof;        // the latest answer's, whichever call it is for
        if (r->id != m.id) continue;  // an answer to an earlier call that timed out
        json j = json::parse(r->json, nullptr, false);
        if (j.is_discarded()) throw AdminError("the scheduler sent an answer that is not JSON");
        if (r->code == static_cast<uint8_t>(protocol::ErrorCode::kRefused) && j.is_object() &&
            j.value("error", std::string()).find("next_proof") != std::string::npos) {
          *resync = true;
          return j;
        }
        if (r->code != 0) {
          throw AdminError(j.is_object() && j.contains("error") && j["error"].is_string()
                               ? j["error"].get<std::string>()
                               : "the scheduler refused the request");
        }
        return j;
      }
    }
    if (handshakes->failures() > 0) {
      throw AdminError("the scheduler at " + where +
                       " did not accept this connection's key (with --auth: is the key in the "
                       "cluster's members, and is scheduler.pub the scheduler's?)");
    }
    throw AdminError("no answer from the scheduler at " + where + " within " +
                     std::to_string(options.timeout.count()) +
                     " ms (is it running there? with --auth on the scheduler, give --auth)");
  }

  json query(std::string_view what, const TaskQuery& q, std::string_view id) {
    protocol::Query m;
    m.what = what;
    m.application_id = q.application_id;
    m.state = q.state;
    m.worker = what == "worker" ? id : std::string_view(q.worker);
    m.service_id = what == "task" ? id : std::string_view();
    m.offset = q.offset;
    m.limit = std::min<uint32_t>(q.limit, protocol::kMaxQueryRows);
    return call(m);
  }
};

namespace {

template <class T>
T get(const json& j, const char* key, T fallback = T{}) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    return fallback;
  }
}

std::optional<double> get_opt(const json& j, const char* key) {
  const auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return std::nullopt;
  return it->get<double>();
}

TaskInfo task_of(const json& t) {
  TaskInfo info;
  info.service_id = get<std::string>(t, "service_id");
  info.application_id = get<std::string>(t, "application_id");
  info.service = get<std::string>(t, "service");
  info.state = get<std::string>(t, "state");
  info.attempt = get<uint32_t>(t, "attempt");
  info.max_retries = get<uint32_t>(t, "max_retries");
  info.worker = get<std::string>(t, "worker");
  info.run_time_s = get_opt(t, "run_time_s");
  info.wait_s = get_opt(t, "wait_s");
  info.error = get<std::string>(t, "error");
  return info;
}

CancelOutcome cancel_of(const json& j) {
  CancelOutcome o;
  o.cancelled = get<uint64_t>(j, "cancelled");
  o.already_done = get<uint64_t>(j, "already_done");
  o.unknown = get<std::vector<std::string>>(j, "unknown");
  return o;
}

}  // namespace

Admin::Admin(AdminOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
Admin::~Admin() = default;

ClusterStatus Admin::status() {
  const json j = impl_->query("status", {}, {});
  ClusterStatus s;
  s.workers = get<uint64_t>(j, "workers");
  s.relays = get<uint64_t>(j, "relays");
  s.relayed_workers = get<uint64_t>(j, "relayed_workers");
  s.heartbeat_ms = get<uint64_t>(j, "heartbeat_ms");
  s.slots = get<uint64_t>(j, "slots");
  s.busy_slots = get<uint64_t>(j, "busy_slots");
  s.idle_slots = get<uint64_t>(j, "idle_slots");
  s.queued = get<uint64_t>(j, "queued");
  s.waiting = get<uint64_t>(j, "waiting");
  s.running = get<uint64_t>(j, "running");
  s.finished = get<uint64_t>(j, "finished");
  s.failed = get<uint64_t>(j, "failed");
  s.cancelled = get<uint64_t>(j, "cancelled");
  s.timed_out = get<uint64_t>(j, "timed_out");
  s.awaiting_collection = get<uint64_t>(j, "awaiting_collection");
  s.submitted = get<uint64_t>(j, "submitted");
  s.applications = get<uint64_t>(j, "applications");
  s.applications_connected = get<uint64_t>(j, "applications_connected");
  s.throughput_per_s = get<double>(j, "throughput_per_s");
  s.completed_last_minute = get<uint64_t>(j, "completed_last_minute");
  s.failed_last_minute = get<uint64_t>(j, "failed_last_minute");
  if (const auto it = j.find("journal"); it != j.end() && it->is_object()) {
    s.journal_enabled = get<bool>(*it, "enabled");
    s.journal_path = get<std::string>(*it, "path");
    s.journal_backlog = get<uint64_t>(*it, "backlog");
  }
  s.uptime_s = get<double>(j, "uptime_s");
  if (const auto it = j.find("estimate"); it != j.end() && it->is_object()) {
    s.work_remaining_s = get<double>(*it, "work_s");
    s.unknown_tasks = get<uint64_t>(*it, "unknown_tasks");
    if (const auto f = it->find("finish_in_s"); f != it->end() && f->is_number()) {
      s.finish_in_s = f->get<double>();
    }
  }
  s.json = j.dump();
  return s;
}

std::vector<WorkerInfo> Admin::workers(uint32_t offset, uint32_t limit) {
  TaskQuery q;
  q.offset = offset;
  q.limit = limit;
  const json j = impl_->query("workers", q, {});
  std::vector<WorkerInfo> out;
  for (const json& w : get<json>(j, "workers", json::array())) {
    WorkerInfo info;
    info.name = get<std::string>(w, "name");
    info.host = get<std::string>(w, "host");
    info.uid = get<std::string>(w, "uid");
    info.slots = get<uint32_t>(w, "slots");
    info.running = get<uint32_t>(w, "running");
    info.held = get<uint32_t>(w, "held");
    info.services = get<std::vector<std::string>>(w, "services");
    info.last_heartbeat_s = get<double>(w, "last_heartbeat_s");
    info.memory_bytes = get<uint64_t>(w, "memory_bytes");
    info.state = get<std::string>(w, "state");
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<TaskInfo> Admin::tasks(const TaskQuery& query) {
  const json j = impl_->query("tasks", query, {});
  std::vector<TaskInfo> out;
  for (const json& t : get<json>(j, "tasks", json::array())) out.push_back(task_of(t));
  return out;
}

CancelOutcome Admin::cancel(const std::vector<std::string>& service_ids) {
  protocol::Control c;
  c.action = "cancel";
  for (const auto& id : service_ids) {
    protocol::TaskKey key;
    if (!protocol::parse_service_id(id, &key)) {
      throw AdminError("'" + id + "' is not a service id (they look like 0123456789abcdef-42)");
    }
    c.keys.push_back(key);
  }
  return cancel_of(impl_->call(c));
}

CancelOutcome Admin::cancel_application(const std::string& application_id) {
  protocol::Control c;
  c.action = "cancel";
  c.application_id = application_id;
  return cancel_of(impl_->call(c));
}

std::vector<std::string> Admin::drain(const std::string& worker) {
  protocol::Control c;
  c.action = "drain";
  c.worker = worker;
  return get<std::vector<std::string>>(impl_->call(c), "draining");
}

std::string Admin::query_json(std::string_view what, const TaskQuery& query, std::string_view id) {
  return impl_->query(what, query, id).dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace lrts
