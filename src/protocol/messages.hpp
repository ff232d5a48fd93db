// The lrts wire protocol between applications, the scheduler and workers (ZeroMQ), one struct
// per message kind. Each struct describes its fields once (protocol/wire.hpp); codec.hpp
// encodes and decodes them. docs/protocol.md has the same tables for readers.
//
// Decoded messages hold std::string_view fields that point into the received buffer: they are
// valid only while that buffer lives. Submissions, assignments and results travel in batches
// cut by count and by bytes; a payload too large for a batch travels as a stream of Chunks
// (flow-controlled by ChunkAcks) and the item then names that stream instead of carrying bytes.
#pragma once

#include <cstdint>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "protocol/ids.hpp"
#include "protocol/wire.hpp"

namespace lrts::protocol {

inline constexpr uint32_t kVersion = 5;
inline constexpr size_t kDefaultMaxMessageBytes = 64u << 20;
// A peer may announce a smaller limit than this; none may be smaller than kMinMaxMessageBytes.
inline constexpr size_t kMinMaxMessageBytes = 1u << 20;

// Limits every decoder enforces, so that no peer can make a daemon hold unbounded state.
inline constexpr uint32_t kMaxAppIdBytes = 256;
inline constexpr uint32_t kMaxNameBytes = 256;  // worker and service names
inline constexpr uint32_t kMaxServicesPerWorker = 4096;
inline constexpr uint32_t kMaxSlotsPerWorker = 1u << 16;
inline constexpr uint32_t kMaxRetries = 1000;
inline constexpr uint32_t kMaxErrorTextBytes = 64u << 10;
// Largest payload (service fields or a result) that can travel at all: slot frames carry a
// 32-bit length.
inline constexpr uint64_t kMaxPayloadBytes = (uint64_t{4} << 30) - (uint64_t{1} << 20);

// The scheduler answers a peer's heartbeat at most once per this many heartbeat intervals (a
// sign of life only); a peer counts the scheduler silent after three such periods.
inline constexpr int kHeartbeatAckEvery = 10;

enum class MsgType : uint8_t {
  // application -> scheduler
  kAppHello = 1,
  kSubmit = 2,
  kReceived = 3,  // results arrived: stop re-sending them
  kCancel = 4,
  kAppHeartbeat = 5,
  kAppBye = 6,     // drop everything of this application
  kCollected = 7,  // results handed to the user: forget them
  kDetach = 8,     // leave; the tasks run on and their results wait to be collected
  // any client -> scheduler (no hello needed): queries and operator commands
  kQuery = 9,
  kControl = 10,
  // scheduler -> application
  kAppWelcome = 16,
  kSubmitAck = 17,
  kAppResults = 18,
  kAppOutstanding = 21,  // after a welcome: the tasks of earlier sessions, in batches
  kCollectedAck = 22,    // the journal holds that these results were collected
  kAppCounts = 23,       // how many of the application's tasks run now
  kQueryReply = 24,      // the answer to a QUERY or CONTROL, as JSON
  // scheduler -> any peer
  kHeartbeatAck = 19,
  kError = 20,
  // worker -> scheduler
  kWorkerHello = 32,
  kWorkerHeartbeat = 33,
  kWorkerResults = 34,
  kWorkerBye = 35,
  kWorkerReturn = 36,  // hands tasks back but stays (a draining worker)
  // relay -> scheduler (lrts relay: many workers on one connection)
  kRelayed = 37,       // workers' messages, each with the relay's name for its sender
  kRelaySummary = 38,  // the relay's workers' heartbeats, and which of them left
  // scheduler -> worker
  kWorkerWelcome = 48,
  kAssign = 49,
  kResultAck = 50,
  kCancelTasks = 51,
  kDrain = 52,  // stop taking tasks, as on SIGTERM (lrts drain)
  // scheduler -> relay
  kRelayDown = 53,  // messages for workers behind the relay
  kRelayAck = 54,   // answer to a summary: the intervals the relay and its workers keep
  // slot <-> worker (socketpair), see slot_messages.hpp
  kSlotHello = 64,
  kSlotRun = 65,
  kSlotResults = 66,
  kSlotRecall = 67,
  kSlotRecalled = 68,
  // progress, see progress_messages.hpp
  kProgress = 80,
  kProgressAck = 81,
  kSubscribe = 82,
  kProgressUpdate = 83,
  kUnsubscribe = 84,
  // payload streams, on every scheduler connection in both directions
  kChunk = 96,
  kChunkAck = 97,
};

enum class TaskStatus : uint8_t {
  kFinished = 0,
  kFailed = 1,
  kCancelled = 2,
  kTimedOut = 3,
  // Worker -> scheduler only: the attempt died with its slot (crash, kill, memory limit). The
  // scheduler retries it or, when retries are used up, ends it as kFailed.
  kLost = 4,
};
inline constexpr uint8_t kMaxTaskStatus = 4;
const char* status_name(TaskStatus s);
// A message type as metrics label it ("worker_heartbeat"); "unknown" for none.
const char* type_label(MsgType t);

enum class ErrorCode : uint8_t {
  kHelloRequired = 1,    // the scheduler does not know this peer (it restarted): say hello again
  kBadMessage = 2,       // malformed or unexpected message
  kVersionMismatch = 3,  // protocol version not supported
  kRefused = 4,          // well-formed but refused (over a limit); sending it again will not help
  kForbidden = 5,        // the sender's key does not allow it (--auth)
};
inline constexpr uint8_t kMaxErrorCode = 5;

// A task and one of its attempts.
struct TaskAttempt {
  TaskKey key;
  uint32_t attempt = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&TaskAttempt::key), wire::u(&TaskAttempt::attempt)};
  }
};

// ---- payload streams ------------------------------------------------------------------------

// Part of a payload too large for a batch. `stream` is chosen by the sender, unique on its
// connection; `offset` must equal what the receiver has so far (it answers with what it has
// otherwise, and the sender goes back there).
struct Chunk {
  static constexpr MsgType kType = MsgType::kChunk;
  static constexpr const char* kName = "chunk";
  uint64_t stream = 0;
  uint64_t total = 0;
  uint64_t offset = 0;
  std::string_view data;
  static constexpr auto describe() {
    return std::tuple{wire::u(&Chunk::stream), wire::u(&Chunk::total, kMaxPayloadBytes),
                      wire::u(&Chunk::offset, kMaxPayloadBytes), wire::bin(&Chunk::data)};
  }
  void check(mp::Reader& r) const {
    if (stream == 0) return r.fail("stream 0 is reserved");
    if (offset + data.size() > total) r.fail("chunk goes past the end of its stream");
  }
};

// How many bytes of a stream the receiver holds (all of them: the payload is complete).
struct ChunkAck {
  static constexpr MsgType kType = MsgType::kChunkAck;
  static constexpr const char* kName = "chunk ack";
  uint64_t stream = 0;
  uint64_t received = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&ChunkAck::stream), wire::u(&ChunkAck::received)};
  }
};

// ---- application -> scheduler ---------------------------------------------------------------

struct AppHello {
  static constexpr MsgType kType = MsgType::kAppHello;
  static constexpr const char* kName = "application hello";
  std::string_view application_id;
  uint64_t session = 0;
  uint64_t grace_ms = 0;     // 0: the scheduler's default (it caps what is asked)
  uint64_t max_message = 0;  // largest message this application accepts
  // A collector of a detached application (`lrts results`): the application stays detached, so
  // that if the collector dies its tasks still run to the end and their results stay kept.
  bool keep_detached = false;
  static constexpr auto describe() {
    return std::tuple{wire::str(&AppHello::application_id, 1, kMaxAppIdBytes),
                      wire::u(&AppHello::session), wire::u(&AppHello::grace_ms),
                      wire::u(&AppHello::max_message), wire::flag(&AppHello::keep_detached)};
  }
};

struct SubmitTask {
  uint64_t seq = 0;
  uint32_t name_index = 0;  // into Submit::names
  std::string_view fields;  // MessagePack map of the service's fields, opaque here
  uint64_t stream = 0;      // non-zero: the fields came as this stream instead
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;  // 0: none
  static constexpr auto describe() {
    return std::tuple{wire::u(&SubmitTask::seq),
                      wire::u(&SubmitTask::name_index),
                      wire::bin(&SubmitTask::fields),
                      wire::u(&SubmitTask::stream),
                      wire::u(&SubmitTask::max_retries, kMaxRetries),
                      wire::u(&SubmitTask::timeout_ms)};
  }
};

struct Submit {
  static constexpr MsgType kType = MsgType::kSubmit;
  static constexpr const char* kName = "submit";
  uint64_t session = 0;
  std::vector<std::string_view> names;
  std::vector<SubmitTask> tasks;
  static constexpr auto describe() {
    return std::tuple{wire::u(&Submit::session),
                      wire::strs(&Submit::names, UINT32_MAX, kMaxNameBytes),
                      wire::list(&Submit::tasks)};
  }
  void check(mp::Reader& r) const {
    for (const auto& t : tasks) {
      if (t.name_index >= names.size()) return r.fail("service name index out of range");
    }
  }
};

// A key list from an application: RECEIVED, CANCEL or COLLECTED.
template <MsgType T>
struct AppKeys {
  static constexpr MsgType kType = T;
  static constexpr const char* kName = "key list";
  std::vector<TaskKey> keys;
  static constexpr auto describe() { return std::tuple{wire::keys(&AppKeys::keys)}; }
};
using Received = AppKeys<MsgType::kReceived>;
using Cancel = AppKeys<MsgType::kCancel>;
using Collected = AppKeys<MsgType::kCollected>;

template <MsgType T>
struct Signal {
  static constexpr MsgType kType = T;
  static constexpr const char* kName = "signal";
  static constexpr auto describe() { return std::tuple{}; }
};
using AppHeartbeat = Signal<MsgType::kAppHeartbeat>;
using AppBye = Signal<MsgType::kAppBye>;
using Detach = Signal<MsgType::kDetach>;

// ---- scheduler -> application ---------------------------------------------------------------

struct AppWelcome {
  static constexpr MsgType kType = MsgType::kAppWelcome;
  static constexpr const char* kName = "application welcome";
  uint64_t scheduler_epoch = 0;
  // False when the scheduler had no record of this application id before this hello: after a
  // restart without a journal, or after it dropped the application past its grace period.
  bool known = false;
  uint32_t heartbeat_ms = 0;  // how often the application should say it is alive
  uint64_t max_message = 0;   // largest message the scheduler accepts
  // Tasks of this application id the scheduler holds from earlier sessions (their keys follow
  // in AppOutstanding messages), and how many of all its tasks have results waiting now (they
  // follow as results).
  uint64_t outstanding = 0;
  uint64_t ready = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&AppWelcome::scheduler_epoch), wire::flag(&AppWelcome::known),
                      wire::u(&AppWelcome::heartbeat_ms),    wire::u(&AppWelcome::max_message),
                      wire::u(&AppWelcome::outstanding),     wire::u(&AppWelcome::ready)};
  }
};

struct AppOutstanding {
  static constexpr MsgType kType = MsgType::kAppOutstanding;
  static constexpr const char* kName = "outstanding tasks";
  std::vector<TaskKey> keys;
  static constexpr auto describe() { return std::tuple{wire::keys(&AppOutstanding::keys)}; }
};

// The scheduler has durably forgotten these collected results: the application may forget
// that it collected them (until then it says COLLECTED again after each welcome).
struct CollectedAck {
  static constexpr MsgType kType = MsgType::kCollectedAck;
  static constexpr const char* kName = "collected ack";
  std::vector<TaskKey> keys;
  static constexpr auto describe() { return std::tuple{wire::keys(&CollectedAck::keys)}; }
};

// Where the application's tasks stand (sent when it changes, a few times a second at most):
// those running on a worker now, and those waiting for one. Finished ones the application
// counts itself, from the results.
struct AppCounts {
  static constexpr MsgType kType = MsgType::kAppCounts;
  static constexpr const char* kName = "application counts";
  uint64_t running = 0;
  uint64_t queued = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&AppCounts::running), wire::u(&AppCounts::queued)};
  }
};

struct SubmitAck {
  static constexpr MsgType kType = MsgType::kSubmitAck;
  static constexpr const char* kName = "submit ack";
  uint64_t session = 0;
  std::vector<uint64_t> seqs;
  static constexpr auto describe() {
    return std::tuple{wire::u(&SubmitAck::session), wire::uints(&SubmitAck::seqs)};
  }
};

// One result as an application gets it.
struct AppResult {
  TaskKey key;
  uint32_t attempt = 0;  // the attempt that produced it
  TaskStatus status = TaskStatus::kFinished;
  std::string_view payload;  // MessagePack value when finished, UTF-8 reason otherwise
  uint64_t stream = 0;       // non-zero: the payload came as this stream instead
  std::string_view worker;
  uint64_t run_ns = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&AppResult::key),
                      wire::u(&AppResult::attempt),
                      wire::u(&AppResult::status, kMaxTaskStatus),
                      wire::bin(&AppResult::payload),
                      wire::u(&AppResult::stream),
                      wire::str(&AppResult::worker, 0, kMaxNameBytes),
                      wire::u(&AppResult::run_ns)};
  }
};

struct AppResults {
  static constexpr MsgType kType = MsgType::kAppResults;
  static constexpr const char* kName = "results";
  std::vector<AppResult> items;
  static constexpr auto describe() { return std::tuple{wire::list(&AppResults::items)}; }
};

struct HeartbeatAck {
  static constexpr MsgType kType = MsgType::kHeartbeatAck;
  static constexpr const char* kName = "heartbeat ack";
  uint64_t scheduler_epoch = 0;
  // The interval the peer heartbeats at from now on (0: keep the one it has). The scheduler
  // lengthens it as workers join, so that the heartbeats it receives stay under a rate.
  uint32_t heartbeat_ms = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&HeartbeatAck::scheduler_epoch),
                      wire::u(&HeartbeatAck::heartbeat_ms)};
  }
};

struct ErrorMsg {
  static constexpr MsgType kType = MsgType::kError;
  static constexpr const char* kName = "error";
  ErrorCode code = ErrorCode::kBadMessage;
  std::string_view text;
  static constexpr auto describe() {
    return std::tuple{wire::u(&ErrorMsg::code, kMaxErrorCode),
                      wire::str(&ErrorMsg::text, 0, kMaxErrorTextBytes)};
  }
};

// ---- worker -> scheduler --------------------------------------------------------------------

struct WorkerHello {
  static constexpr MsgType kType = MsgType::kWorkerHello;
  static constexpr const char* kName = "worker hello";
  uint64_t worker_uid = 0;  // random per worker process
  std::string_view name;
  uint32_t slots = 0;
  uint32_t capacity = 0;
  uint64_t max_message = 0;  // largest message this worker accepts
  std::vector<std::string_view> services;
  // Tasks it runs or has queued (not finished ones: those are sent again after the welcome).
  std::vector<TaskAttempt> held;
  std::string_view host;  // the machine it runs on
  // Results it holds that the scheduler has not acknowledged (sent again after the welcome).
  // With `held`, everything this process has of its tasks: one it lists in neither never
  // reached it.
  std::vector<TaskAttempt> unacked;
  static constexpr auto describe() {
    return std::tuple{wire::u(&WorkerHello::worker_uid),
                      wire::str(&WorkerHello::name, 1, kMaxNameBytes),
                      wire::u(&WorkerHello::slots, kMaxSlotsPerWorker),
                      wire::u(&WorkerHello::capacity),
                      wire::u(&WorkerHello::max_message),
                      wire::strs(&WorkerHello::services, kMaxServicesPerWorker, kMaxNameBytes),
                      wire::list(&WorkerHello::held),
                      wire::str(&WorkerHello::host, 0, kMaxNameBytes),
                      wire::list(&WorkerHello::unacked)};
  }
};

struct WorkerHeartbeat {
  static constexpr MsgType kType = MsgType::kWorkerHeartbeat;
  static constexpr const char* kName = "worker heartbeat";
  uint32_t capacity = 0;
  uint32_t running = 0;       // tasks its slots run now (a worker that holds tasks and runs none of
                              // them for --hoard-timeout is taken for a hoarder)
  uint64_t memory_bytes = 0;  // resident memory of the worker and its slots' processes
  bool draining = false;      // it takes no new tasks (SIGTERM, lrts drain)
  static constexpr auto describe() {
    return std::tuple{wire::u(&WorkerHeartbeat::capacity), wire::u(&WorkerHeartbeat::running),
                      wire::u(&WorkerHeartbeat::memory_bytes),
                      wire::flag(&WorkerHeartbeat::draining)};
  }
};

// One result as a worker reports it.
struct WorkerResult {
  TaskKey key;
  uint32_t attempt = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string_view payload;  // MessagePack value when finished, UTF-8 reason otherwise
  uint64_t stream = 0;       // non-zero: the payload came as this stream instead
  uint64_t run_ns = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&WorkerResult::key),
                      wire::u(&WorkerResult::attempt),
                      wire::u(&WorkerResult::status, kMaxTaskStatus),
                      wire::bin(&WorkerResult::payload),
                      wire::u(&WorkerResult::stream),
                      wire::u(&WorkerResult::run_ns)};
  }
};

struct WorkerResults {
  static constexpr MsgType kType = MsgType::kWorkerResults;
  static constexpr const char* kName = "worker results";
  uint32_t capacity = 0;  // how many tasks the worker wants to hold in total
  std::vector<WorkerResult> items;
  static constexpr auto describe() {
    return std::tuple{wire::u(&WorkerResults::capacity), wire::list(&WorkerResults::items)};
  }
};

// Tasks handed back unfinished (they do not use up an attempt): BYE (the worker leaves) or
// RETURN (it stays, e.g. while draining).
template <MsgType T>
struct HandBack {
  static constexpr MsgType kType = T;
  static constexpr const char* kName = "hand back";
  std::vector<TaskAttempt> returned;
  static constexpr auto describe() { return std::tuple{wire::list(&HandBack::returned)}; }
};
using WorkerBye = HandBack<MsgType::kWorkerBye>;
using WorkerReturn = HandBack<MsgType::kWorkerReturn>;

// ---- scheduler -> worker --------------------------------------------------------------------

struct WorkerWelcome {
  static constexpr MsgType kType = MsgType::kWorkerWelcome;
  static constexpr const char* kName = "worker welcome";
  uint64_t scheduler_epoch = 0;
  uint32_t heartbeat_ms = 0;
  uint64_t max_message = 0;     // largest message the scheduler accepts
  std::vector<TaskKey> cancel;  // tasks from its hello it must drop
  static constexpr auto describe() {
    return std::tuple{wire::u(&WorkerWelcome::scheduler_epoch),
                      wire::u(&WorkerWelcome::heartbeat_ms), wire::u(&WorkerWelcome::max_message),
                      wire::keys(&WorkerWelcome::cancel)};
  }
};

struct AssignTask {
  TaskKey key;
  uint32_t attempt = 0;
  uint32_t name_index = 0;  // into Assign::names
  uint32_t app_index = 0;   // into Assign::apps
  std::string_view fields;
  uint64_t stream = 0;  // non-zero: the fields came as this stream instead
  uint32_t timeout_ms = 0;
  static constexpr auto describe() {
    return std::tuple{wire::key(&AssignTask::key),      wire::u(&AssignTask::attempt),
                      wire::u(&AssignTask::name_index), wire::u(&AssignTask::app_index),
                      wire::bin(&AssignTask::fields),   wire::u(&AssignTask::stream),
                      wire::u(&AssignTask::timeout_ms)};
  }
};

struct Assign {
  static constexpr MsgType kType = MsgType::kAssign;
  static constexpr const char* kName = "assign";
  std::vector<std::string_view> names;  // service names
  std::vector<std::string_view> apps;   // application ids (for progress)
  std::vector<AssignTask> tasks;
  static constexpr auto describe() {
    return std::tuple{wire::strs(&Assign::names, UINT32_MAX, kMaxNameBytes),
                      wire::strs(&Assign::apps, UINT32_MAX, kMaxAppIdBytes),
                      wire::list(&Assign::tasks)};
  }
  void check(mp::Reader& r) const {
    for (const auto& t : tasks) {
      if (t.name_index >= names.size()) return r.fail("service name index out of range");
      if (t.app_index >= apps.size()) return r.fail("application index out of range");
    }
  }
};

// The worker may forget these results: each (task, attempt) it reported is durable. The attempt
// matters: a late acknowledgement of a lost attempt must not erase a newer attempt's result.
struct ResultAck {
  static constexpr MsgType kType = MsgType::kResultAck;
  static constexpr const char* kName = "result ack";
  std::vector<TaskAttempt> acked;
  static constexpr auto describe() { return std::tuple{wire::list(&ResultAck::acked)}; }
};

struct CancelTasks {
  static constexpr MsgType kType = MsgType::kCancelTasks;
  static constexpr const char* kName = "cancel tasks";
  std::vector<TaskKey> keys;
  static constexpr auto describe() { return std::tuple{wire::keys(&CancelTasks::keys)}; }
};

// ---- queries and operator commands (any client -> scheduler -> that client) ---------------

inline constexpr uint32_t kMaxQueryRows = 1000;
inline constexpr uint32_t kMaxQueryKeys = 100'000;

// A question about the cluster, answered with a QueryReply carrying the same id. Served from the
// scheduler's own tables: a snapshot of counters, or a listing bounded by `limit`.
// `what`: status, workers, applications, tasks, task, worker, failures (docs/protocol.md).
// `proof`: the `next_proof` of the last reply on this connection (0 on its first request): a
// connection gets one answer at a time, and only by reading it can it ask again, so a client
// that does not read cannot make the scheduler queue answers for it.
struct Query {
  static constexpr MsgType kType = MsgType::kQuery;
  static constexpr const char* kName = "query";
  uint64_t id = 0;
  uint64_t proof = 0;
  std::string_view what;
  std::string_view application_id;  // tasks: only this application's
  std::string_view state;           // tasks: only in this state
  std::string_view worker;          // tasks: only on this worker; worker: which one
  std::string_view service_id;      // task: which one
  uint32_t offset = 0;
  uint32_t limit = 0;  // 0: the default (100)
  static constexpr auto describe() {
    return std::tuple{wire::u(&Query::id),
                      wire::u(&Query::proof),
                      wire::str(&Query::what, 1, 32),
                      wire::str(&Query::application_id, 0, kMaxAppIdBytes),
                      wire::str(&Query::state, 0, 32),
                      wire::str(&Query::worker, 0, kMaxNameBytes),
                      wire::str(&Query::service_id, 0, 64),
                      wire::u(&Query::offset),
                      wire::u(&Query::limit, kMaxQueryRows)};
  }
};

// An operator's command: `cancel` these tasks (or every task of `application_id`), or `drain`
// a worker (it takes no more tasks and ends as on SIGTERM).
struct Control {
  static constexpr MsgType kType = MsgType::kControl;
  static constexpr const char* kName = "control";
  uint64_t id = 0;
  uint64_t proof = 0;  // as in Query
  std::string_view action;
  std::vector<TaskKey> keys;
  std::string_view application_id;
  std::string_view worker;
  static constexpr auto describe() {
    return std::tuple{wire::u(&Control::id),
                      wire::u(&Control::proof),
                      wire::str(&Control::action, 1, 32),
                      wire::keys(&Control::keys),
                      wire::str(&Control::application_id, 0, kMaxAppIdBytes),
                      wire::str(&Control::worker, 0, kMaxNameBytes)};
  }
  void check(mp::Reader& r) const {
    if (keys.size() > kMaxQueryKeys) r.fail("too many service ids in one command");
  }
};

// The answer: `code` 0 and a JSON document, or an ErrorCode and a JSON {"error": text}.
// `next_proof`: what the connection's next QUERY or CONTROL must carry.
struct QueryReply {
  static constexpr MsgType kType = MsgType::kQueryReply;
  static constexpr const char* kName = "query reply";
  uint64_t id = 0;
  uint8_t code = 0;
  std::string_view json;
  uint64_t next_proof = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&QueryReply::id), wire::u(&QueryReply::code, kMaxErrorCode),
                      wire::bin(&QueryReply::json), wire::u(&QueryReply::next_proof)};
  }
};

// The scheduler asks a worker to drain: the same as its first SIGTERM.
using Drain = Signal<MsgType::kDrain>;

// ---- relays (lrts relay) ----------------------------------------------------------------------
//
// A relay accepts workers as if it were the scheduler and carries their messages on one
// connection. Each worker connection is a `sub` (a number the relay never reuses); the scheduler
// names a relayed worker by the relay's connection and that number. A relay behind a relay is a
// worker of it whose messages are relay messages: relays chain.

// Most messages one relay batch holds.
inline constexpr uint32_t kMaxRelayItems = 65'536;

struct RelayedItem {
  uint32_t sub = 0;
  // The member key the relay accepted the sender's connection with (--auth), empty without.
  std::string_view identity;
  bool relay = false;        // that key is a relay's: it may relay in turn
  std::string_view message;  // one whole message of the worker protocol (or a relay's)
  static constexpr auto describe() {
    return std::tuple{wire::u(&RelayedItem::sub), wire::str(&RelayedItem::identity, 0, 256),
                      wire::flag(&RelayedItem::relay), wire::bin(&RelayedItem::message)};
  }
};

struct Relayed {
  static constexpr MsgType kType = MsgType::kRelayed;
  static constexpr const char* kName = "relayed";
  std::vector<RelayedItem> items;
  static constexpr auto describe() {
    return std::tuple{wire::list(&Relayed::items, kMaxRelayItems)};
  }
};

// The last heartbeat of one worker behind the relay (sent when it changed).
struct RelayBeat {
  uint32_t sub = 0;
  uint32_t capacity = 0;
  uint32_t running = 0;
  uint64_t memory_bytes = 0;
  bool draining = false;
  static constexpr auto describe() {
    return std::tuple{wire::u(&RelayBeat::sub), wire::u(&RelayBeat::capacity),
                      wire::u(&RelayBeat::running), wire::u(&RelayBeat::memory_bytes),
                      wire::flag(&RelayBeat::draining)};
  }
};

// Sent every interval the scheduler names (RelayAck): the relay is alive, and so is every
// worker it has not listed as gone. `beats`: workers whose heartbeat changed since the last
// summary; `gone`: workers whose connection ended or that went silent.
struct RelaySummary {
  static constexpr MsgType kType = MsgType::kRelaySummary;
  static constexpr const char* kName = "relay summary";
  uint64_t relay_uid = 0;  // random per relay process (for logs and listings)
  uint32_t workers = 0;    // connections it holds now
  std::vector<RelayBeat> beats;
  std::vector<uint32_t> gone;
  static constexpr auto describe() {
    return std::tuple{wire::u(&RelaySummary::relay_uid), wire::u(&RelaySummary::workers),
                      wire::list(&RelaySummary::beats, kMaxRelayItems),
                      wire::uints(&RelaySummary::gone)};
  }
};

struct RelayDownItem {
  uint32_t sub = 0;
  std::string_view message;  // one whole message for that worker (or relay)
  static constexpr auto describe() {
    return std::tuple{wire::u(&RelayDownItem::sub), wire::bin(&RelayDownItem::message)};
  }
};

struct RelayDown {
  static constexpr MsgType kType = MsgType::kRelayDown;
  static constexpr const char* kName = "relay down";
  std::vector<RelayDownItem> items;
  static constexpr auto describe() {
    return std::tuple{wire::list(&RelayDown::items, kMaxRelayItems)};
  }
};

struct RelayAck {
  static constexpr MsgType kType = MsgType::kRelayAck;
  static constexpr const char* kName = "relay ack";
  uint64_t scheduler_epoch = 0;
  uint32_t heartbeat_ms = 0;         // how often the relay sends its summary
  uint32_t worker_heartbeat_ms = 0;  // the interval its workers are told (in its acks to them)
  uint32_t worker_timeout_ms = 0;    // a worker silent this long is gone
  static constexpr auto describe() {
    return std::tuple{wire::u(&RelayAck::scheduler_epoch), wire::u(&RelayAck::heartbeat_ms),
                      wire::u(&RelayAck::worker_heartbeat_ms),
                      wire::u(&RelayAck::worker_timeout_ms)};
  }
};

// ---- what each receiver accepts ---------------------------------------------------------------

using ToScheduler =
    std::variant<AppHello, Submit, Received, Cancel, AppHeartbeat, AppBye, Collected, Detach,
                 WorkerHello, WorkerHeartbeat, WorkerResults, WorkerBye, WorkerReturn, Chunk,
                 ChunkAck, Query, Control, Relayed, RelaySummary>;
using ToApp = std::variant<AppWelcome, AppOutstanding, SubmitAck, CollectedAck, AppResults,
                           HeartbeatAck, ErrorMsg, Chunk, ChunkAck, AppCounts, QueryReply>;
using ToWorker = std::variant<WorkerWelcome, Assign, ResultAck, CancelTasks, HeartbeatAck, ErrorMsg,
                              Chunk, ChunkAck, Drain>;
// What a relay's upstream connection receives.
using ToRelay = std::variant<RelayDown, RelayAck, ErrorMsg>;

}  // namespace lrts::protocol
