#include <charconv>
#include <cstdio>

#include "protocol/codec_util.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"

namespace lrts::protocol {

using detail::expect_fields;
using detail::finish;
using detail::header;
using detail::Header;
using detail::read_header;
using mp::Reader;
using mp::Writer;

std::string format_service_id(TaskKey key) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%016llx-%llu", static_cast<unsigned long long>(key.session),
                static_cast<unsigned long long>(key.seq));
  return buf;
}

bool parse_service_id(std::string_view id, TaskKey* key) {
  if (id.size() < 18 || id[16] != '-') return false;
  uint64_t session = 0, seq = 0;
  const char* b = id.data();
  auto r1 = std::from_chars(b, b + 16, session, 16);
  if (r1.ec != std::errc() || r1.ptr != b + 16) return false;
  auto r2 = std::from_chars(b + 17, b + id.size(), seq, 10);
  if (r2.ec != std::errc() || r2.ptr != b + id.size()) return false;
  if (format_service_id({session, seq}) != id) return false;  // one spelling per key
  *key = {session, seq};
  return true;
}

const char* status_name(TaskStatus s) {
  switch (s) {
    case TaskStatus::kFinished: return "finished";
    case TaskStatus::kFailed: return "failed";
    case TaskStatus::kCancelled: return "cancelled";
    case TaskStatus::kTimedOut: return "timed_out";
    case TaskStatus::kLost: return "lost";
  }
  return "unknown";
}

namespace {

void write_keys(Writer& w, const std::vector<TaskKey>& keys) {
  w.array(static_cast<uint32_t>(keys.size() * 2));
  for (const TaskKey& k : keys) {
    w.uint(k.session);
    w.uint(k.seq);
  }
}

std::vector<TaskKey> read_keys(Reader& r) {
  const uint32_t n = r.array();
  std::vector<TaskKey> keys;
  if (n % 2 != 0) {
    r.fail("key list has an odd length");
    return keys;
  }
  keys.reserve(n / 2);
  for (uint32_t i = 0; i < n / 2 && r.ok(); ++i) {
    TaskKey k;
    k.session = r.uint();
    k.seq = r.uint();
    keys.push_back(k);
  }
  return keys;
}

void write_strings(Writer& w, const std::vector<std::string_view>& v) {
  w.array(static_cast<uint32_t>(v.size()));
  for (auto s : v) w.str(s);
}

std::vector<std::string_view> read_strings(Reader& r) {
  const uint32_t n = r.array();
  std::vector<std::string_view> v;
  v.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) v.push_back(r.str());
  return v;
}

void write_running(Writer& w, const std::vector<RunningTask>& v) {
  w.array(static_cast<uint32_t>(v.size()));
  for (const auto& t : v) {
    w.array(3);
    w.uint(t.key.session);
    w.uint(t.key.seq);
    w.uint(t.attempt);
  }
}

std::vector<RunningTask> read_running(Reader& r) {
  const uint32_t n = r.array();
  std::vector<RunningTask> v;
  v.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    r.expect_array(3);
    RunningTask t;
    t.key.session = r.uint();
    t.key.seq = r.uint();
    t.attempt = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    v.push_back(t);
  }
  return v;
}

AppHello read_app_hello(Reader& r, const Header& h) {
  AppHello m;
  if (!expect_fields(r, h, 3)) return m;
  m.application_id = r.str();
  m.session = r.uint();
  m.grace_ms = r.uint();
  if (r.ok() && (m.application_id.empty() || m.application_id.size() > 256)) {
    r.fail("application id must be 1 to 256 bytes");
  }
  return m;
}

Submit read_submit(Reader& r, const Header& h) {
  Submit m;
  if (!expect_fields(r, h, 3)) return m;
  m.session = r.uint();
  m.names = read_strings(r);
  const uint32_t n = r.array();
  m.tasks.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    r.expect_array(5);
    SubmitTask t;
    t.seq = r.uint();
    t.name_index = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    t.fields = r.bin();
    t.max_retries = static_cast<uint32_t>(r.uint_max(1000));
    t.timeout_ms = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    if (r.ok() && t.name_index >= m.names.size()) r.fail("service name index out of range");
    m.tasks.push_back(t);
  }
  return m;
}

KeyList read_key_list(Reader& r, const Header& h) {
  KeyList m{static_cast<MsgType>(h.type), {}};
  if (!expect_fields(r, h, 1)) return m;
  m.keys = read_keys(r);
  return m;
}

Results read_results(Reader& r, const Header& h) {
  Results m;
  if (!expect_fields(r, h, 2)) return m;
  m.capacity = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
  const uint32_t n = r.array();
  m.items.reserve(n);
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    r.expect_array(7);
    ResultItem it;
    it.key.session = r.uint();
    it.key.seq = r.uint();
    it.attempt = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
    it.status = static_cast<TaskStatus>(r.uint_max(kMaxTaskStatus));
    it.payload = r.bin();
    it.worker = r.str();
    it.run_ns = r.uint();
    m.items.push_back(it);
  }
  return m;
}

}  // namespace

// ---- encoders -------------------------------------------------------------------------------

void encode(const AppHello& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kAppHello, 3);
  w.str(m.application_id);
  w.uint(m.session);
  w.uint(m.grace_ms);
}

void encode(const Submit& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kSubmit, 3);
  w.uint(m.session);
  write_strings(w, m.names);
  w.array(static_cast<uint32_t>(m.tasks.size()));
  for (const auto& t : m.tasks) {
    w.array(5);
    w.uint(t.seq);
    w.uint(t.name_index);
    w.bin(t.fields);
    w.uint(t.max_retries);
    w.uint(t.timeout_ms);
  }
}

void encode(const KeyList& m, std::string& out) {
  Writer w(out);
  header(w, m.type, 1);
  write_keys(w, m.keys);
}

void encode(const Empty& m, std::string& out) {
  Writer w(out);
  header(w, m.type, 0);
}

void encode(const AppWelcome& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kAppWelcome, 4);
  w.uint(m.scheduler_epoch);
  w.boolean(m.known);
  w.uint(m.heartbeat_ms);
  write_keys(w, m.outstanding);
}

void encode(const SubmitAck& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kSubmitAck, 2);
  w.uint(m.session);
  w.array(static_cast<uint32_t>(m.seqs.size()));
  for (uint64_t s : m.seqs) w.uint(s);
}

void encode(const Results& m, MsgType type, std::string& out) {
  Writer w(out);
  header(w, type, 2);
  w.uint(m.capacity);
  w.array(static_cast<uint32_t>(m.items.size()));
  for (const auto& it : m.items) {
    w.array(7);
    w.uint(it.key.session);
    w.uint(it.key.seq);
    w.uint(it.attempt);
    w.uint(static_cast<uint8_t>(it.status));
    w.bin(it.payload);
    w.str(it.worker);
    w.uint(it.run_ns);
  }
}

void encode(const HeartbeatAck& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kHeartbeatAck, 1);
  w.uint(m.scheduler_epoch);
}

void encode(const ErrorMsg& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kError, 2);
  w.uint(static_cast<uint8_t>(m.code));
  w.str(m.text);
}

void encode(const WorkerHello& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kWorkerHello, 6);
  w.uint(m.worker_uid);
  w.str(m.name);
  w.uint(m.slots);
  w.uint(m.capacity);
  write_strings(w, m.services);
  write_running(w, m.running);
}

void encode(const WorkerHeartbeat& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kWorkerHeartbeat, 1);
  w.uint(m.capacity);
}

void encode(const WorkerBye& m, std::string& out) {
  Writer w(out);
  header(w, m.leaving ? MsgType::kWorkerBye : MsgType::kWorkerReturn, 1);
  write_running(w, m.returned);
}

void encode(const WorkerWelcome& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kWorkerWelcome, 3);
  w.uint(m.scheduler_epoch);
  w.uint(m.heartbeat_ms);
  write_keys(w, m.cancel);
}

void encode(const Assign& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kAssign, 2);
  write_strings(w, m.names);
  w.array(static_cast<uint32_t>(m.tasks.size()));
  for (const auto& t : m.tasks) {
    w.array(6);
    w.uint(t.key.session);
    w.uint(t.key.seq);
    w.uint(t.attempt);
    w.uint(t.name_index);
    w.bin(t.fields);
    w.uint(t.timeout_ms);
  }
}

void encode(const ResultAck& m, std::string& out) {
  Writer w(out);
  header(w, MsgType::kResultAck, 1);
  write_running(w, m.acked);
}

// ---- decoders -------------------------------------------------------------------------------

bool is_version_mismatch(std::string_view decode_error) {
  return decode_error.starts_with(detail::kVersionError);
}

Result<ToScheduler> decode_to_scheduler(std::string_view bytes, size_t max_bytes) {
  Reader r(bytes);
  auto h = read_header(r, bytes, max_bytes);
  if (!h) return Error{h.error()};
  switch (static_cast<MsgType>(h->type)) {
    case MsgType::kAppHello: {
      auto m = read_app_hello(r, *h);
      return finish<ToScheduler>(r, std::move(m), "hello");
    }
    case MsgType::kSubmit: {
      auto m = read_submit(r, *h);
      return finish<ToScheduler>(r, std::move(m), "submit");
    }
    case MsgType::kAckResults:
    case MsgType::kCancel: {
      auto m = read_key_list(r, *h);
      return finish<ToScheduler>(r, std::move(m), "key list");
    }
    case MsgType::kAppHeartbeat:
    case MsgType::kAppBye: {
      expect_fields(r, *h, 0);
      return finish<ToScheduler>(r, Empty{static_cast<MsgType>(h->type)}, "heartbeat");
    }
    case MsgType::kWorkerHello: {
      WorkerHello m;
      if (expect_fields(r, *h, 6)) {
        m.worker_uid = r.uint();
        m.name = r.str();
        m.slots = static_cast<uint32_t>(r.uint_max(1u << 20));
        m.capacity = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
        m.services = read_strings(r);
        m.running = read_running(r);
      }
      return finish<ToScheduler>(r, std::move(m), "worker hello");
    }
    case MsgType::kWorkerHeartbeat: {
      WorkerHeartbeat m;
      if (expect_fields(r, *h, 1)) m.capacity = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
      return finish<ToScheduler>(r, std::move(m), "worker heartbeat");
    }
    case MsgType::kWorkerResults: {
      auto m = read_results(r, *h);
      return finish<ToScheduler>(r, std::move(m), "worker results");
    }
    case MsgType::kWorkerBye:
    case MsgType::kWorkerReturn: {
      WorkerBye m;
      m.leaving = h->type == static_cast<uint8_t>(MsgType::kWorkerBye);
      if (expect_fields(r, *h, 1)) m.returned = read_running(r);
      return finish<ToScheduler>(r, std::move(m), "worker bye");
    }
    default:
      return make_error("unexpected message type " + std::to_string(h->type) +
                        " for the scheduler");
  }
}

Result<ToApp> decode_to_app(std::string_view bytes, size_t max_bytes) {
  Reader r(bytes);
  auto h = read_header(r, bytes, max_bytes);
  if (!h) return Error{h.error()};
  switch (static_cast<MsgType>(h->type)) {
    case MsgType::kAppWelcome: {
      AppWelcome m;
      if (expect_fields(r, *h, 4)) {
        m.scheduler_epoch = r.uint();
        m.known = r.boolean();
        m.heartbeat_ms = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
        m.outstanding = read_keys(r);
      }
      return finish<ToApp>(r, std::move(m), "welcome");
    }
    case MsgType::kSubmitAck: {
      SubmitAck m;
      if (expect_fields(r, *h, 2)) {
        m.session = r.uint();
        const uint32_t n = r.array();
        m.seqs.reserve(n);
        for (uint32_t i = 0; i < n && r.ok(); ++i) m.seqs.push_back(r.uint());
      }
      return finish<ToApp>(r, std::move(m), "submit ack");
    }
    case MsgType::kResults: {
      auto m = read_results(r, *h);
      return finish<ToApp>(r, std::move(m), "results");
    }
    case MsgType::kHeartbeatAck: {
      HeartbeatAck m;
      if (expect_fields(r, *h, 1)) m.scheduler_epoch = r.uint();
      return finish<ToApp>(r, std::move(m), "heartbeat ack");
    }
    case MsgType::kError: {
      ErrorMsg m;
      if (expect_fields(r, *h, 2)) {
        m.code = static_cast<ErrorCode>(r.uint_max(255));
        m.text = r.str();
      }
      return finish<ToApp>(r, std::move(m), "error");
    }
    default:
      return make_error("unexpected message type " + std::to_string(h->type) +
                        " for an application");
  }
}

Result<ToWorker> decode_to_worker(std::string_view bytes, size_t max_bytes) {
  Reader r(bytes);
  auto h = read_header(r, bytes, max_bytes);
  if (!h) return Error{h.error()};
  switch (static_cast<MsgType>(h->type)) {
    case MsgType::kWorkerWelcome: {
      WorkerWelcome m;
      if (expect_fields(r, *h, 3)) {
        m.scheduler_epoch = r.uint();
        m.heartbeat_ms = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
        m.cancel = read_keys(r);
      }
      return finish<ToWorker>(r, std::move(m), "welcome");
    }
    case MsgType::kAssign: {
      Assign m;
      if (expect_fields(r, *h, 2)) {
        m.names = read_strings(r);
        const uint32_t n = r.array();
        m.tasks.reserve(n);
        for (uint32_t i = 0; i < n && r.ok(); ++i) {
          r.expect_array(6);
          AssignTask t;
          t.key.session = r.uint();
          t.key.seq = r.uint();
          t.attempt = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
          t.name_index = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
          t.fields = r.bin();
          t.timeout_ms = static_cast<uint32_t>(r.uint_max(UINT32_MAX));
          if (r.ok() && t.name_index >= m.names.size()) r.fail("service name index out of range");
          m.tasks.push_back(t);
        }
      }
      return finish<ToWorker>(r, std::move(m), "assign");
    }
    case MsgType::kResultAck: {
      ResultAck m;
      if (expect_fields(r, *h, 1)) m.acked = read_running(r);
      return finish<ToWorker>(r, std::move(m), "result ack");
    }
    case MsgType::kCancelTasks: {
      auto m = read_key_list(r, *h);
      return finish<ToWorker>(r, std::move(m), "key list");
    }
    case MsgType::kHeartbeatAck: {
      HeartbeatAck m;
      if (expect_fields(r, *h, 1)) m.scheduler_epoch = r.uint();
      return finish<ToWorker>(r, std::move(m), "heartbeat ack");
    }
    case MsgType::kError: {
      ErrorMsg m;
      if (expect_fields(r, *h, 2)) {
        m.code = static_cast<ErrorCode>(r.uint_max(255));
        m.text = r.str();
      }
      return finish<ToWorker>(r, std::move(m), "error");
    }
    default:
      return make_error("unexpected message type " + std::to_string(h->type) + " for a worker");
  }
}

}  // namespace lrts::protocol
