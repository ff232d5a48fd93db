// The records a scheduler journals, one struct per kind, described once (protocol/wire.hpp)
// like the wire messages. A record is one MessagePack array `[kind, fields...]`; a batch is
// records back to back. RecordWriter implements the JournalSink by appending records to a batch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>

#include "protocol/codec.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/wire.hpp"
#include "scheduler/core.hpp"

namespace lrts::scheduler::records {

namespace wire = protocol::wire;

enum class Kind : uint8_t {
  kSubmit = 0,
  kAssign = 1,
  kFinish = 2,
  kRemove = 3,
  kApp = 4,
  kAppRemove = 5,
};

struct Submit {
  static constexpr Kind kKind = Kind::kSubmit;
  TaskKey key;
  std::string_view app_id;
  std::string_view name;
  std::string_view fields;
  uint64_t fields_blob = 0;
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&Submit::key),       wire::str(&Submit::app_id),
                      wire::str(&Submit::name),      wire::bin(&Submit::fields),
                      wire::u(&Submit::fields_blob), wire::u(&Submit::max_retries),
                      wire::u(&Submit::timeout_ms)};
  }
};

struct Assign {
  static constexpr Kind kKind = Kind::kAssign;
  TaskKey key;
  uint32_t attempt = 0;
  uint64_t worker_uid = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&Assign::key), wire::u(&Assign::attempt),
                      wire::u(&Assign::worker_uid)};
  }
};

struct Finish {
  static constexpr Kind kKind = Kind::kFinish;
  TaskKey key;
  protocol::TaskStatus status = protocol::TaskStatus::kFinished;
  std::string_view payload;
  uint64_t payload_blob = 0;
  uint32_t attempt = 0;
  std::string_view worker;
  uint64_t run_ns = 0;
  static constexpr auto describe() {
    return std::tuple{
        wire::key(&Finish::key),     wire::u(&Finish::status, protocol::kMaxTaskStatus),
        wire::bin(&Finish::payload), wire::u(&Finish::payload_blob),
        wire::u(&Finish::attempt),   wire::str(&Finish::worker),
        wire::u(&Finish::run_ns)};
  }
};

struct Remove {
  static constexpr Kind kKind = Kind::kRemove;
  TaskKey key;
  static constexpr auto describe() { return std::tuple{wire::key(&Remove::key)}; }
};

struct App {
  static constexpr Kind kKind = Kind::kApp;
  std::string_view app_id;
  uint64_t grace_ms = 0;
  bool detached = false;
  std::string_view owner;
  static constexpr auto describe() {
    return std::tuple{wire::str(&App::app_id), wire::u(&App::grace_ms), wire::flag(&App::detached),
                      wire::str(&App::owner)};
  }
};

struct AppRemove {
  static constexpr Kind kKind = Kind::kAppRemove;
  std::string_view app_id;
  static constexpr auto describe() { return std::tuple{wire::str(&AppRemove::app_id)}; }
};

using Record = std::variant<Submit, Assign, Finish, Remove, App, AppRemove>;

template <class R>
void append(const R& r, std::string& out) {
  protocol::mp::Writer w(out);
  w.array(1 + wire::wire_count<R>());
  w.uint(static_cast<uint8_t>(R::kKind));
  wire::put_fields(w, r);
}

// Reads the next record of a batch; false (and r.ok() false) on a malformed one.
bool read(protocol::mp::Reader& r, Record& out);

// The JournalSink that appends records to a batch.
class RecordWriter final : public JournalSink {
 public:
  void task_submitted(const TaskKey& key, std::string_view app_id, std::string_view name,
                      std::string_view fields, uint64_t fields_blob, uint32_t max_retries,
                      uint32_t timeout_ms) override {
    append(Submit{key, app_id, name, fields, fields_blob, max_retries, timeout_ms}, batch_);
    ++count_;
  }
  void task_assigned(const TaskKey& key, uint32_t attempt, uint64_t worker_uid) override {
    append(Assign{key, attempt, worker_uid}, batch_);
    ++count_;
  }
  void task_finished(const TaskKey& key, protocol::TaskStatus status, std::string_view payload,
                     uint64_t payload_blob, uint32_t attempt, std::string_view worker,
                     uint64_t run_ns) override {
    append(Finish{key, status, payload, payload_blob, attempt, worker, run_ns}, batch_);
    ++count_;
  }
  void task_removed(const TaskKey& key) override {
    append(Remove{key}, batch_);
    ++count_;
  }
  void app_registered(std::string_view app_id, uint64_t grace_ms, bool detached,
                      std::string_view owner) override {
    append(App{app_id, grace_ms, detached, owner}, batch_);
    ++count_;
  }
  void app_removed(std::string_view app_id) override {
    append(AppRemove{app_id}, batch_);
    ++count_;
  }

  // Records appended since this writer was made.
  uint64_t count() const { return count_; }
  // The batch so far, taken.
  std::string take() { return std::exchange(batch_, {}); }
  bool empty() const { return batch_.empty(); }

 private:
  std::string batch_;
  uint64_t count_ = 0;
};

}  // namespace lrts::scheduler::records
