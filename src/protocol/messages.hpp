// The lrts wire protocol: message types exchanged over ZeroMQ between applications, the
// scheduler and workers, and over a socketpair between a worker and its slot processes.
//
// Every message is one MessagePack array `[version, type, ...fields]` (docs/protocol.md has
// the field lists). Decoded messages hold std::string_view fields that point into the received
// buffer: they are valid only while that buffer lives. Submissions, assignments and results
// travel in batches.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.hpp"

namespace lrts::protocol {

inline constexpr uint32_t kVersion = 1;
inline constexpr size_t kDefaultMaxMessageBytes = 64u << 20;

// Identifies a task everywhere: the submitting application session and a sequence number
// within it. Rendered for users as the service id "<session as 16 hex digits>-<seq>".
struct TaskKey {
  uint64_t session = 0;
  uint64_t seq = 0;
  friend bool operator==(const TaskKey&, const TaskKey&) = default;
};

struct TaskKeyHash {
  size_t operator()(const TaskKey& k) const noexcept {
    uint64_t h = k.session * 0x9E3779B97F4A7C15ULL ^ (k.seq + 0x632BE59BD9B4E019ULL);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ULL;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

std::string format_service_id(TaskKey key);
// False on anything that format_service_id would not produce.
bool parse_service_id(std::string_view id, TaskKey* key);

enum class MsgType : uint8_t {
  // application -> scheduler
  kAppHello = 1,
  kSubmit = 2,
  kAckResults = 3,
  kCancel = 4,
  kAppHeartbeat = 5,
  kAppBye = 6,
  // scheduler -> application
  kAppWelcome = 16,
  kSubmitAck = 17,
  kResults = 18,
  // scheduler -> any peer
  kHeartbeatAck = 19,
  kError = 20,
  // worker -> scheduler
  kWorkerHello = 32,
  kWorkerHeartbeat = 33,
  kWorkerResults = 34,
  kWorkerBye = 35,
  kWorkerReturn = 36,  // hands tasks back but stays (a draining worker)
  // scheduler -> worker
  kWorkerWelcome = 48,
  kAssign = 49,
  kResultAck = 50,
  kCancelTasks = 51,
  // slot <-> worker (socketpair)
  kSlotHello = 64,
  kSlotRun = 65,
  kSlotResults = 66,
  // progress
  kProgress = 80,        // worker -> progress server
  kProgressAck = 81,     // progress server -> worker
  kSubscribe = 82,       // application -> progress server
  kProgressUpdate = 83,  // progress server -> application
  kUnsubscribe = 84,     // application -> progress server
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

enum class ErrorCode : uint8_t {
  kHelloRequired = 1,    // the scheduler does not know this peer (it restarted): say hello again
  kBadMessage = 2,       // malformed or unexpected message
  kVersionMismatch = 3,  // protocol version not supported
};

// ---- application -> scheduler ---------------------------------------------------------------

struct AppHello {
  std::string_view application_id;
  uint64_t session = 0;
  uint64_t grace_ms = 0;  // 0: scheduler default
};

struct SubmitTask {
  uint64_t seq = 0;
  uint32_t name_index = 0;      // into Submit::names
  std::string_view fields;      // MessagePack-encoded service fields, opaque to the scheduler
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;      // 0: none
};

struct Submit {
  uint64_t session = 0;
  std::vector<std::string_view> names;
  std::vector<SubmitTask> tasks;
};

struct KeyList {
  MsgType type;  // kAckResults, kCancel or kCancelTasks
  std::vector<TaskKey> keys;
};

struct Empty {
  MsgType type;  // kAppHeartbeat, kAppBye
};

// ---- scheduler -> application ---------------------------------------------------------------

struct AppWelcome {
  uint64_t scheduler_epoch = 0;
  // False when the scheduler had no record of this application id before this hello: after a
  // restart without a journal, or after it dropped the application past its grace period.
  bool known = false;
  uint32_t heartbeat_ms = 0;  // how often the application should say it is alive
  // Tasks of this application id that the scheduler still holds from earlier sessions.
  std::vector<TaskKey> outstanding;
};

struct SubmitAck {
  uint64_t session = 0;
  std::vector<uint64_t> seqs;
};

struct ResultItem {
  TaskKey key;
  uint32_t attempt = 0;
  TaskStatus status = TaskStatus::kFinished;
  std::string_view payload;  // MessagePack value when finished, UTF-8 reason otherwise
  std::string_view worker;
  uint64_t run_ns = 0;
};

struct Results {
  uint32_t capacity = 0;  // worker -> scheduler only: how many tasks it wants to hold
  std::vector<ResultItem> items;
};

struct HeartbeatAck {
  uint64_t scheduler_epoch = 0;
};

struct ErrorMsg {
  ErrorCode code = ErrorCode::kBadMessage;
  std::string_view text;
};

// ---- worker -> scheduler --------------------------------------------------------------------

struct RunningTask {
  TaskKey key;
  uint32_t attempt = 0;
};

struct WorkerHello {
  uint64_t worker_uid = 0;
  std::string_view name;
  uint32_t slots = 0;
  uint32_t capacity = 0;
  std::vector<std::string_view> services;
  std::vector<RunningTask> running;  // tasks it runs or has queued (not finished ones)
};

struct WorkerHeartbeat {
  uint32_t capacity = 0;
};

// kWorkerBye (the worker leaves) or kWorkerReturn (it stays, e.g. while draining).
struct WorkerBye {
  std::vector<RunningTask> returned;  // tasks handed back unfinished
  bool leaving = true;
};

// ---- scheduler -> worker --------------------------------------------------------------------

struct WorkerWelcome {
  uint64_t scheduler_epoch = 0;
  uint32_t heartbeat_ms = 0;
  std::vector<TaskKey> cancel;  // tasks from its hello it must drop
};

struct AssignTask {
  TaskKey key;
  uint32_t attempt = 0;
  uint32_t name_index = 0;
  std::string_view fields;
  uint32_t timeout_ms = 0;
};

struct Assign {
  std::vector<std::string_view> names;
  std::vector<AssignTask> tasks;
};

// The worker may forget these results: each (task, attempt) it reported is durable. The attempt
// matters: a late acknowledgement of a lost attempt must not erase a newer attempt's result.
struct ResultAck {
  std::vector<RunningTask> acked;
};

// ---- progress -------------------------------------------------------------------------------

// Bars a task can number (bar_no < kMaxBarsPerTask); decoders reject larger numbers.
inline constexpr uint32_t kMaxBarsPerTask = 1u << 16;

// The state of one bar. Identified by (key, attempt, bar_no).
struct BarState {
  TaskKey key;
  uint32_t attempt = 0;
  uint32_t bar_no = 0;
  std::string description;
  std::string unit;
  uint64_t count = 0;
  uint64_t total = 0;  // 0: unknown
  bool closed = false;
  uint64_t elapsed_ms = 0;  // since the bar was created
  // Computed by the progress server (kProgressUpdate only).
  double rate = 0;
  double eta_seconds = -1;
};

struct ProgressBatch {
  uint64_t batch_seq = 0;
  std::string_view worker;
  std::vector<BarState> bars;
};

struct ProgressAck {
  uint64_t batch_seq = 0;
  uint64_t server_epoch = 0;
};

struct Subscribe {
  std::string_view application_id;  // may be empty (a viewer)
  std::vector<uint64_t> sessions;   // bars of these sessions ...
  bool all = false;                 // ... or of everything
};

struct ProgressUpdate {
  uint64_t server_epoch = 0;
  bool snapshot = false;  // the full state (after subscribing or a server restart)
  std::vector<BarState> bars;
};

using ToProgressServer = std::variant<ProgressBatch, Subscribe, Empty>;

using FromApp = std::variant<AppHello, Submit, KeyList, Empty>;
using ToApp = std::variant<AppWelcome, SubmitAck, Results, HeartbeatAck, ErrorMsg>;
using FromWorker = std::variant<WorkerHello, WorkerHeartbeat, Results, WorkerBye>;
using ToWorker = std::variant<WorkerWelcome, Assign, ResultAck, KeyList, HeartbeatAck, ErrorMsg>;
// What arrives on the scheduler's single ROUTER socket.
using ToScheduler = std::variant<AppHello, Submit, KeyList, Empty, WorkerHello, WorkerHeartbeat,
                                 Results, WorkerBye>;

// ---- codec ----------------------------------------------------------------------------------
// Encoders append to `out`. Decoders validate strictly (version, type, field types, counts,
// ranges, no trailing bytes, at most `max_bytes`) and return a one-line reason on failure.

void encode(const AppHello& m, std::string& out);
void encode(const Submit& m, std::string& out);
void encode(const KeyList& m, std::string& out);
void encode(const Empty& m, std::string& out);
void encode(const AppWelcome& m, std::string& out);
void encode(const SubmitAck& m, std::string& out);
// kResults to an application, or kWorkerResults from a worker.
void encode(const Results& m, MsgType type, std::string& out);
void encode(const HeartbeatAck& m, std::string& out);
void encode(const ErrorMsg& m, std::string& out);
void encode(const WorkerHello& m, std::string& out);
void encode(const WorkerHeartbeat& m, std::string& out);
void encode(const WorkerBye& m, std::string& out);
void encode(const WorkerWelcome& m, std::string& out);
void encode(const Assign& m, std::string& out);
void encode(const ResultAck& m, std::string& out);

// True when a decoder's error is that the message speaks another protocol version.
bool is_version_mismatch(std::string_view decode_error);

Result<ToScheduler> decode_to_scheduler(std::string_view bytes,
                                        size_t max_bytes = kDefaultMaxMessageBytes);
Result<ToApp> decode_to_app(std::string_view bytes, size_t max_bytes = kDefaultMaxMessageBytes);
Result<ToWorker> decode_to_worker(std::string_view bytes,
                                  size_t max_bytes = kDefaultMaxMessageBytes);

void encode(const ProgressBatch& m, std::string& out);
void encode(const ProgressAck& m, std::string& out);
void encode(const Subscribe& m, std::string& out);
void encode(const ProgressUpdate& m, std::string& out);
Result<ToProgressServer> decode_to_progress_server(std::string_view bytes,
                                                   size_t max_bytes = kDefaultMaxMessageBytes);
Result<ProgressAck> decode_progress_ack(std::string_view bytes);
Result<ProgressUpdate> decode_progress_update(std::string_view bytes,
                                              size_t max_bytes = kDefaultMaxMessageBytes);

}  // namespace lrts::protocol

template <>
struct std::hash<lrts::protocol::TaskKey> : lrts::protocol::TaskKeyHash {};
