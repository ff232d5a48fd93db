// The progress protocol: workers send bar changes to the progress server, which acknowledges
// each batch (clocking the worker's latency balancing) and pushes changes to subscribed
// applications and viewers. One struct per message kind, described once (protocol/wire.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <variant>
#include <vector>

#include "protocol/messages.hpp"

namespace lrts::protocol {

// Bars a task can number (bar_no < kMaxBarsPerTask); decoders reject larger numbers.
inline constexpr uint32_t kMaxBarsPerTask = 1u << 16;
inline constexpr uint32_t kMaxBarTextBytes = 256;
inline constexpr uint32_t kMaxSubscribedSessions = 4096;

// Where a bar stands. Anything but kOpen is frozen: its count no longer moves.
enum class BarPhase : uint8_t {
  kOpen = 0,
  kDone = 1,       // closed by the task, or the task finished
  kFailed = 2,     // the task failed
  kLost = 3,       // the attempt died with its slot or worker (it may be retried)
  kCancelled = 4,  // the task was cancelled
  kTimedOut = 5,   // the task ran past its time limit
};
inline constexpr uint8_t kMaxBarPhase = 5;
const char* phase_name(BarPhase p);
// The phase a task's open bars end in when the task ends with `status`.
BarPhase phase_for(TaskStatus status);

// The state of one bar. Identified by (key, attempt, bar_no).
struct BarState {
  TaskKey key;
  uint32_t attempt = 0;
  uint32_t bar_no = 0;
  std::string description;
  std::string unit;
  uint64_t count = 0;
  uint64_t total = 0;  // 0: unknown
  BarPhase phase = BarPhase::kOpen;
  uint64_t elapsed_ms = 0;  // since the bar was created
  // Computed by the progress server (zero from workers).
  double rate = 0;
  double eta_seconds = -1;

  bool closed() const { return phase != BarPhase::kOpen; }
  static constexpr auto describe() {
    return std::tuple{wire::key(&BarState::key),
                      wire::u(&BarState::attempt),
                      wire::u(&BarState::bar_no, kMaxBarsPerTask - 1),
                      wire::str(&BarState::description, 0, kMaxBarTextBytes),
                      wire::str(&BarState::unit, 0, kMaxBarTextBytes),
                      wire::u(&BarState::count),
                      wire::u(&BarState::total),
                      wire::u(&BarState::phase, kMaxBarPhase),
                      wire::u(&BarState::elapsed_ms),
                      wire::f64(&BarState::rate),
                      wire::f64(&BarState::eta_seconds)};
  }
};

// Which application a session belongs to, so that viewers can ask by application id.
struct SessionOwner {
  uint64_t session = 0;
  std::string_view application_id;
  static constexpr auto describe() {
    return std::tuple{wire::u(&SessionOwner::session),
                      wire::str(&SessionOwner::application_id, 1, kMaxAppIdBytes)};
  }
};

struct ProgressBatch {
  static constexpr MsgType kType = MsgType::kProgress;
  static constexpr const char* kName = "progress batch";
  uint64_t batch_seq = 0;
  std::string_view worker;
  std::vector<SessionOwner> owners;  // sessions this worker has not named to the server yet
  std::vector<BarState> bars;        // the bars that changed
  static constexpr auto describe() {
    return std::tuple{wire::u(&ProgressBatch::batch_seq),
                      wire::str(&ProgressBatch::worker, 0, kMaxNameBytes),
                      wire::list(&ProgressBatch::owners), wire::list(&ProgressBatch::bars)};
  }
};

struct ProgressAck {
  static constexpr MsgType kType = MsgType::kProgressAck;
  static constexpr const char* kName = "progress ack";
  uint64_t batch_seq = 0;
  uint64_t server_epoch = 0;
  static constexpr auto describe() {
    return std::tuple{wire::u(&ProgressAck::batch_seq), wire::u(&ProgressAck::server_epoch)};
  }
};

struct Subscribe {
  static constexpr MsgType kType = MsgType::kSubscribe;
  static constexpr const char* kName = "subscribe";
  std::string_view application_id;  // may be empty (a viewer of everything)
  std::vector<uint64_t> sessions;   // bars of these sessions ...
  bool all = false;                 // ... or of everything
  static constexpr auto describe() {
    return std::tuple{wire::str(&Subscribe::application_id, 0, kMaxAppIdBytes),
                      wire::uints(&Subscribe::sessions), wire::flag(&Subscribe::all)};
  }
  void check(mp::Reader& r) const {
    if (sessions.size() > kMaxSubscribedSessions) r.fail("too many sessions in a subscription");
  }
};

struct ProgressUpdate {
  static constexpr MsgType kType = MsgType::kProgressUpdate;
  static constexpr const char* kName = "progress update";
  uint64_t server_epoch = 0;
  bool snapshot = false;  // the first part of the full state (after subscribing or a restart)
  bool more = false;      // more parts of the same snapshot follow
  std::vector<BarState> bars;
  static constexpr auto describe() {
    return std::tuple{wire::u(&ProgressUpdate::server_epoch), wire::flag(&ProgressUpdate::snapshot),
                      wire::flag(&ProgressUpdate::more), wire::list(&ProgressUpdate::bars)};
  }
};

using Unsubscribe = Signal<MsgType::kUnsubscribe>;

using ToProgressServer = std::variant<ProgressBatch, Subscribe, Unsubscribe>;
using ToProgressWorker = std::variant<ProgressAck>;
using ToProgressSubscriber = std::variant<ProgressUpdate>;

}  // namespace lrts::protocol
