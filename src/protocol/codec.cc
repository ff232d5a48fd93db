#include "protocol/codec.hpp"

#include <charconv>
#include <cstdio>

#include "protocol/progress_messages.hpp"

namespace lrts::protocol {

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

const char* type_label(MsgType t) {
  switch (t) {
    case MsgType::kAppHello:
      return "app_hello";
    case MsgType::kSubmit:
      return "submit";
    case MsgType::kReceived:
      return "received";
    case MsgType::kCancel:
      return "cancel";
    case MsgType::kAppHeartbeat:
      return "app_heartbeat";
    case MsgType::kAppBye:
      return "app_bye";
    case MsgType::kCollected:
      return "collected";
    case MsgType::kDetach:
      return "detach";
    case MsgType::kQuery:
      return "query";
    case MsgType::kControl:
      return "control";
    case MsgType::kAppWelcome:
      return "app_welcome";
    case MsgType::kSubmitAck:
      return "submit_ack";
    case MsgType::kAppResults:
      return "app_results";
    case MsgType::kAppOutstanding:
      return "app_outstanding";
    case MsgType::kCollectedAck:
      return "collected_ack";
    case MsgType::kAppCounts:
      return "app_counts";
    case MsgType::kQueryReply:
      return "query_reply";
    case MsgType::kHeartbeatAck:
      return "heartbeat_ack";
    case MsgType::kError:
      return "error";
    case MsgType::kWorkerHello:
      return "worker_hello";
    case MsgType::kWorkerHeartbeat:
      return "worker_heartbeat";
    case MsgType::kWorkerResults:
      return "worker_results";
    case MsgType::kWorkerBye:
      return "worker_bye";
    case MsgType::kWorkerReturn:
      return "worker_return";
    case MsgType::kRelayed:
      return "relayed";
    case MsgType::kRelaySummary:
      return "relay_summary";
    case MsgType::kRelayDown:
      return "relay_down";
    case MsgType::kRelayAck:
      return "relay_ack";
    case MsgType::kWorkerWelcome:
      return "worker_welcome";
    case MsgType::kAssign:
      return "assign";
    case MsgType::kResultAck:
      return "result_ack";
    case MsgType::kCancelTasks:
      return "cancel_tasks";
    case MsgType::kDrain:
      return "drain";
    case MsgType::kSlotHello:
      return "slot_hello";
    case MsgType::kSlotRun:
      return "slot_run";
    case MsgType::kSlotResults:
      return "slot_results";
    case MsgType::kSlotRecall:
      return "slot_recall";
    case MsgType::kSlotRecalled:
      return "slot_recalled";
    case MsgType::kProgress:
      return "progress";
    case MsgType::kProgressAck:
      return "progress_ack";
    case MsgType::kSubscribe:
      return "subscribe";
    case MsgType::kProgressUpdate:
      return "progress_update";
    case MsgType::kUnsubscribe:
      return "unsubscribe";
    case MsgType::kChunk:
      return "chunk";
    case MsgType::kChunkAck:
      return "chunk_ack";
  }
  return "unknown";
}

const char* status_name(TaskStatus s) {
  switch (s) {
    case TaskStatus::kFinished:
      return "finished";
    case TaskStatus::kFailed:
      return "failed";
    case TaskStatus::kCancelled:
      return "cancelled";
    case TaskStatus::kTimedOut:
      return "timed_out";
    case TaskStatus::kLost:
      return "lost";
  }
  return "unknown";
}

const char* phase_name(BarPhase p) {
  switch (p) {
    case BarPhase::kOpen:
      return "running";
    case BarPhase::kDone:
      return "done";
    case BarPhase::kFailed:
      return "failed";
    case BarPhase::kLost:
      return "lost";
    case BarPhase::kCancelled:
      return "cancelled";
    case BarPhase::kTimedOut:
      return "timed out";
  }
  return "unknown";
}

BarPhase phase_for(TaskStatus status) {
  switch (status) {
    case TaskStatus::kFinished:
      return BarPhase::kDone;
    case TaskStatus::kFailed:
      return BarPhase::kFailed;
    case TaskStatus::kCancelled:
      return BarPhase::kCancelled;
    case TaskStatus::kTimedOut:
      return BarPhase::kTimedOut;
    case TaskStatus::kLost:
      return BarPhase::kLost;
  }
  return BarPhase::kFailed;
}

}  // namespace lrts::protocol
