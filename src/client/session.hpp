// SessionCore: what an application holds and says to the scheduler, with no I/O — hello and
// heartbeats (protocol::PeerSession), submissions until acknowledged, resends after every
// welcome, cancels, results received and collected, payload streams. Events come in with `now`;
// what it says and what the user should see go out through SessionLink. The I/O thread of
// ClientApplication owns one; the simulation drives one directly.
//
// DESIGN (delivery)
// - A submission stays here until SUBMIT_ACK (which the scheduler sends once its journal holds
//   the task) and goes again after every welcome; the scheduler ignores keys it has.
// - A result is acknowledged twice: RECEIVED when it arrives (the scheduler stops re-sending
//   it), COLLECTED when the user has it (the scheduler forgets it). Until COLLECTED the
//   scheduler keeps it in its journal, so an application killed between the two gets it again
//   when it comes back with the same id.
// - Each result reaches the user once: a key is delivered when it arrives while awaited, and
//   a result for a key already delivered is a resend (dropped). A result for a key the session
//   does not know at all was collected before (the COLLECTED was lost): it is collected again.
// - A welcome saying the scheduler has no record of this application (it restarted without a
//   journal, or the application was away past its grace) ends what it had accepted as failed.
// Not thread-safe: one thread owns it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "common/log_limit.hpp"
#include "lrts/result.hpp"
#include "protocol/codec.hpp"
#include "protocol/messages.hpp"
#include "protocol/peer_session.hpp"
#include "protocol/stream.hpp"

namespace lrts::client {

using protocol::TaskKey;
using protocol::TaskKeyHash;

struct Submission {
  uint64_t seq = 0;
  std::string name;
  Bytes fields;
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
};

// What the session says and shows.
class SessionLink {
 public:
  virtual ~SessionLink() = default;
  virtual void send(const protocol::ToScheduler& message) = 0;
  // A result for the user: each key once.
  virtual void deliver(const TaskKey& key, ServiceResult result) = 0;
  // Tasks of earlier runs of this application id that the scheduler holds.
  virtual void adopt(const std::vector<TaskKey>& keys) = 0;
  // Welcomed, with the earlier runs' tasks and the results waiting at that moment all known
  // and delivered; false when the scheduler stops answering.
  virtual void connected(bool ready) = 0;
  // How many submissions the scheduler has acknowledged (or that ended) so far, in all.
  virtual void acknowledged(uint64_t total) = 0;
  // Where the application's tasks stand at the scheduler.
  virtual void counts(uint64_t running, uint64_t queued) { (void)running, (void)queued; }
  // The session cannot work (the scheduler refused this protocol version).
  virtual void fatal(const std::string& why) = 0;
};

struct SessionOptions {
  std::string application_id;
  uint64_t session = 0;
  uint64_t grace_ms = 0;  // 0: the scheduler's default
  size_t max_message_bytes = protocol::kDefaultMaxMessageBytes;
  bool keep_detached = false;  // ApplicationInformation::collect_only
};

class SessionCore {
 public:
  static constexpr size_t kMaxTasksPerSubmit = 4096;
  static constexpr size_t kMaxKeysPerMessage = 8192;

  SessionCore(SessionOptions options, SessionLink& link);

  // ---- from the user (in order of seq) ----
  void submit(Submission s);
  void cancel(const std::vector<TaskKey>& keys);
  // The user has these results: the scheduler may forget them.
  void collected(const std::vector<TaskKey>& keys);
  // Leaving: BYE drops everything of this application; DETACH leaves its tasks running and
  // their results waiting to be collected.
  void bye();
  void detach();

  // ---- from the scheduler ----
  void on_message(const protocol::ToApp& message, TimePoint now);
  void on_bad_message(const protocol::DecodeError& error, TimePoint now);

  void on_tick(TimePoint now);
  // Sends what the events since the last flush produced.
  void flush(TimePoint now);
  TimePoint next_deadline() const {
    return std::min(session_.next_deadline(), fields_tx_.next_deadline());
  }

  size_t unacknowledged() const { return unacked_count_; }
  const protocol::PeerSession& session() const { return session_; }
  // Whether every result the user was handed is confirmed collected (COLLECTED_ACK: the
  // scheduler's journal holds it). An application that leaves waits a moment for this, so that a
  // run started right after it with the same id is not handed those results again.
  bool collections_confirmed() const { return unconfirmed_collected_.empty(); }

 private:
  struct Entry {
    Submission s;
    bool acked = false;
    uint64_t stream = 0;  // fields travelling as a stream
  };
  template <class M>
  void handle(const M&, TimePoint) {}  // kinds an application ignores
  void handle(const protocol::AppWelcome& m, TimePoint now);
  void handle(const protocol::AppOutstanding& m, TimePoint now);
  void handle(const protocol::SubmitAck& m, TimePoint now);
  void handle(const protocol::CollectedAck& m, TimePoint now);
  void handle(const protocol::AppResults& m, TimePoint now);
  void handle(const protocol::HeartbeatAck& m, TimePoint now);
  void handle(const protocol::ErrorMsg& m, TimePoint now);
  void handle(const protocol::Chunk& m, TimePoint now);
  void handle(const protocol::ChunkAck& m, TimePoint now);
  void handle(const protocol::AppCounts& m, TimePoint) { link_.counts(m.running, m.queued); }

  void send_hello(TimePoint now);
  void mark_acked(uint64_t seq);
  void fail_forgotten();
  void check_ready();
  void send_submissions();
  template <class M>
  void send_keys(std::vector<TaskKey>& keys);

  SessionOptions options_;
  SessionLink& link_;
  protocol::PeerSession session_;
  protocol::SendLimits limits_;
  protocol::StreamSender fields_tx_;
  protocol::MemoryStreamStorage results_store_;
  protocol::StreamReceiver results_rx_{results_store_};

  std::deque<Entry> unacked_;  // contiguous seqs from base_seq_
  uint64_t base_seq_ = 1;
  size_t unacked_count_ = 0;
  uint64_t acked_total_ = 0;
  uint64_t next_unsent_ = 1;             // seq of the first submission never sent
  std::vector<uint64_t> ready_to_send_;  // seqs whose fields stream just completed

  std::unordered_set<TaskKey, TaskKeyHash> awaiting_;  // result not yet arrived
  std::unordered_set<TaskKey, TaskKeyHash> received_;  // arrived, not yet collected
  std::unordered_set<TaskKey, TaskKeyHash> cancels_;   // asked, result not yet in
  // Earlier runs' tasks collected here whose collection the scheduler has not confirmed.
  std::unordered_set<TaskKey, TaskKeyHash> collected_earlier_;
  std::unordered_set<TaskKey, TaskKeyHash> unconfirmed_collected_;  // COLLECTED not yet acked
  std::vector<TaskKey> to_cancel_, to_receive_, to_collect_;

  // After a welcome: how many earlier tasks and ready results are still to come.
  uint64_t outstanding_left_ = 0;
  uint64_t ready_left_ = 0;
  bool ready_reported_ = false;
  bool connected_ = false;
  bool leaving_ = false;
  LogLimiter log_limiter_;
};

}  // namespace lrts::client
