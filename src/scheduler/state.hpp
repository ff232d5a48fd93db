// The scheduler core's records: tasks, workers and applications, each in a Slab. Plain data;
// SchedulerCore (core.hpp) owns them and keeps them consistent (verify() checks that).
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/slab.hpp"
#include "protocol/messages.hpp"
#include "protocol/stream.hpp"
#include "scheduler/blob_store.hpp"
#include "scheduler/names.hpp"

namespace lrts::scheduler {

using protocol::TaskKey;
using PeerId = std::string;  // ZeroMQ routing id

// kLimbo: restored from the journal after it was assigned, waiting for its worker to claim it.
enum class TaskState : uint8_t { kQueued, kLimbo, kAssigned, kDone };

// A task's service fields while it waits or runs, its result once done: inline, or a blob in
// the BlobStore when larger than a batch may carry.
struct Payload {
  std::string bytes;
  uint64_t blob = 0;
  uint64_t blob_size = 0;
  uint64_t size() const { return blob ? blob_size : bytes.size(); }
};

// Which worker an attempt was given to: results are taken only from that worker.
struct AttemptOwner {
  uint64_t worker_uid = 0;  // 0: not known (a journal from before owners were recorded)
  uint32_t attempt = 0;
};

struct Task {
  TaskKey key;
  Links app_links;
  Links worker_links;
  uint32_t app = kNoIndex;
  uint32_t worker = kNoIndex;
  uint32_t service = NameTable::kNone;
  uint32_t attempt = 0;  // assignments so far
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  uint32_t result_worker = NameTable::kNone;  // a worker name (kept while the result is)
  uint64_t run_ns = 0;
  TaskState state = TaskState::kQueued;
  protocol::TaskStatus status = protocol::TaskStatus::kFinished;
  // The application's current connection has the result: it is not sent again on a timer.
  bool received = false;
  // Reloaded from the journal and not assigned since: its last assignment may have gone out
  // before its record was committed.
  bool restored = false;
  // The payload is travelling as this stream: the fields to the worker (the ASSIGN item waits
  // for its last chunk), or the result to the application.
  uint64_t stream = 0;
  TimePoint done_at{};
  TimePoint queued_at{};   // last put in the queue (submitted, retried, handed back)
  TimePoint started_at{};  // last assigned
  // The last two assignments: a worker that was given up on may still report its attempt.
  AttemptOwner last_owner;
  AttemptOwner prev_owner;
  Payload data;
};

// One connection's payload streams: incoming ones are written into blobs.
struct PeerStreams {
  explicit PeerStreams(BlobStore& store, protocol::StreamOptions options)
      : storage(store), rx(storage), tx(options) {}
  BlobStreams storage;
  protocol::StreamReceiver rx;
  protocol::StreamSender tx;
};

struct Worker {
  PeerId peer;
  uint64_t uid = 0;
  uint32_t relay = kNoIndex;  // the relay it speaks through (kNoIndex: directly)
  uint32_t told_ms = 0;       // the heartbeat interval it was last told
  std::string identity;       // the key it registered with (--auth); empty without
  uint32_t name = NameTable::kNone;
  uint32_t slots = 0;
  uint32_t capacity = 0;  // tasks it wants to hold
  uint32_t assigned = 0;
  uint32_t timer_gen = 0;
  ListHead tasks;
  TimePoint last_seen{};
  TimePoint last_ack{};  // last heartbeat acknowledgement sent
  // Last sign that it works on what it holds (a result, a heartbeat with a task running, or
  // holding nothing); --hoard-timeout past it, it is flagged and gets no tasks on this session.
  TimePoint last_progress{};
  bool hoarding = false;
  bool draining = false;  // it said so in a heartbeat, or was told to (lrts drain)
  bool in_ready = false;
  uint32_t ready_stamp = 0;
  std::vector<uint32_t> services;  // name ids it offers
  // What it reports, for queries.
  std::string host;
  TimePoint connected_at{};
  uint32_t running = 0;  // tasks its slots run, as of its last heartbeat
  uint64_t memory_bytes = 0;
  // Results to acknowledge, each once the journal holds everything up to `first`.
  std::deque<std::pair<uint64_t, protocol::TaskAttempt>> acks;
  std::vector<TaskKey> cancels;    // tasks it must drop
  std::vector<SlabHandle> assign;  // assigned, the ASSIGN item not sent yet
  protocol::SendLimits limits;
  std::unique_ptr<PeerStreams> streams;
};

// A relay (lrts relay): one connection carrying many workers' messages. Its workers are alive
// while its summaries come (each lists who left); when it goes silent they have their timeout
// to say hello again another way, and keep their tasks meanwhile.
struct Relay {
  PeerId peer;
  uint64_t uid = 0;
  uint32_t workers = 0;  // registered workers behind it
  uint32_t timer_gen = 0;
  uint32_t told_ms = 0;  // the summary interval it was last told
  TimePoint last_seen{};
};

struct App {
  std::string app_id;
  std::string owner;  // the key that created it (--auth): only that key may say hello with it
  PeerId peer;
  uint64_t session = 0;
  uint32_t timer_gen = 0;
  ListHead tasks;
  Duration grace{};
  TimePoint last_seen{};
  TimePoint last_ack{};  // last heartbeat acknowledgement sent
  bool connected = false;
  // Left with DETACH: its tasks run to the end and their results wait (--keep-results).
  bool detached = false;
  std::vector<SlabHandle> to_send;  // results to send
  // Submissions to acknowledge, each once the journal holds everything up to `first`. The key
  // keeps its session: an application may say hello with a new session before they leave.
  std::deque<std::pair<uint64_t, TaskKey>> submit_acks;
  std::deque<std::pair<uint64_t, TaskKey>> collected_acks;  // likewise, for COLLECTED
  std::vector<TaskKey> outstanding;                         // keys to list after a welcome
  // Its unfinished tasks, and how many of them run now (sent as AppCounts when they change).
  uint64_t unfinished = 0;
  uint64_t running = 0;
  uint64_t sent_unfinished = UINT64_MAX, sent_running = UINT64_MAX;
  TimePoint counts_sent{};
  bool counts_listed = false;  // in apps_with_counts_
  protocol::SendLimits limits;
  std::unique_ptr<PeerStreams> streams;
};

using AppList = IntrusiveList<Task, &Task::app_links>;
using WorkerList = IntrusiveList<Task, &Task::worker_links>;

}  // namespace lrts::scheduler
