// Payload streams: how a payload too large for a batch (task fields, a result) crosses one
// connection. The sender cuts it into Chunks and keeps at most a window of bytes unacknowledged;
// the receiver acknowledges what it holds (ChunkAck) and the sender sends the item that names
// the stream once every byte is acknowledged. Neither side ever holds more than a window of one
// payload in messages; the payload itself stays where its owner keeps it (memory, or a file).
//
// A chunk that does not start where the receiver is (lost on a broken connection, or sent to a
// restarted receiver) is answered with what the receiver has, and the sender goes back there.
// After a reconnect the owner calls restart(): every unfinished stream starts again under a new
// id, so nothing of the old connection can be mistaken for it.
//
// Pure (no I/O, no clock), not thread-safe: one loop owns each.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/bytes.hpp"
#include "common/clock.hpp"
#include "protocol/messages.hpp"

namespace lrts::protocol {

// Where a stream's bytes come from: memory, or a file the owner reads a piece at a time.
class PayloadSource {
 public:
  virtual ~PayloadSource() = default;
  virtual uint64_t size() const = 0;
  // The bytes at [offset, offset + len); may use `scratch`. Valid until the next call.
  virtual std::string_view read(uint64_t offset, size_t len, std::string& scratch) = 0;
};

// A payload in memory.
class BytesSource final : public PayloadSource {
 public:
  explicit BytesSource(Bytes bytes) : bytes_(std::move(bytes)) {}
  uint64_t size() const override { return bytes_.size(); }
  std::string_view read(uint64_t offset, size_t len, std::string&) override {
    return bytes_.view().substr(offset, len);
  }

 private:
  Bytes bytes_;
};

struct StreamOptions {
  size_t chunk_bytes = 1u << 20;
  size_t window_bytes = 4u << 20;  // unacknowledged bytes at most, across all streams
};

// How a sender cuts its traffic to a peer that accepts messages of at most `peer_max_message`
// bytes: payloads larger than `inline_max` travel as streams of `stream.chunk_bytes` chunks,
// and a batch stops taking items once it holds `batch_bytes` (so a batch, plus the one item that
// crossed the line, stays well inside the peer's limit).
struct SendLimits {
  size_t inline_max = 1u << 20;
  size_t batch_bytes = 4u << 20;
  StreamOptions stream;
};
SendLimits send_limits_for(size_t peer_max_message);

class StreamSender {
 public:
  explicit StreamSender(StreamOptions options = {}) : options_(options) {}
  void set_options(StreamOptions options) { options_ = options; }

  // Starts a stream; returns its id (never 0). Streams are served in the order started.
  uint64_t start(std::unique_ptr<PayloadSource> source);
  uint64_t start(Bytes payload) { return start(std::make_unique<BytesSource>(std::move(payload))); }
  static constexpr Duration kStallTimeout = seconds(5);

  // Calls `send` for each chunk that may leave now (its data is valid during the call). A
  // stream whose receiver acknowledged nothing for kStallTimeout while bytes were out (they
  // were dropped on the way) goes back to what was acknowledged.
  void pump(TimePoint now, const std::function<void(const Chunk&)>& send);
  // An acknowledgement. Returns the stream's id when that stream is now wholly acknowledged:
  // the caller sends the item that names it (and calls finish() once that item is settled).
  std::optional<uint64_t> on_ack(const ChunkAck& ack);
  bool complete(uint64_t id) const;
  // When a stalled stream is due to be sent again (for the owner's timer).
  TimePoint next_deadline() const;
  // Forgets a stream (its item was acknowledged, or the payload is no longer wanted).
  void finish(uint64_t id);
  // A new connection: unfinished streams start over under new ids. Returns (old id, new id).
  std::vector<std::pair<uint64_t, uint64_t>> restart();
  size_t active() const { return streams_.size(); }
  uint64_t unacked_bytes() const;

 private:
  struct Stream {
    uint64_t id = 0;
    std::unique_ptr<PayloadSource> source;
    uint64_t sent = 0;                 // bytes sent
    uint64_t acked = 0;                // bytes the receiver holds
    uint64_t rewound_to = UINT64_MAX;  // went back here after a refusal
    TimePoint last_ack{};              // or when the unacknowledged bytes went out
    bool progressed = false;           // acknowledged more since the last pump
  };
  Stream* find(uint64_t id);
  StreamOptions options_;
  std::deque<Stream> streams_;
  uint64_t next_id_ = 1;
  std::string scratch_;
};

// Where received bytes go. The receiver calls begin(), then write() in order, then end() or
// discard(); what end() made is the owner's business (take it when the item names the stream).
class StreamStorage {
 public:
  virtual ~StreamStorage() = default;
  virtual bool begin(uint64_t id, uint64_t total) = 0;
  virtual bool write(uint64_t id, std::string_view data) = 0;
  virtual void end(uint64_t id) = 0;
  virtual void discard(uint64_t id) = 0;
};

struct StreamLimits {
  size_t max_streams = 64;  // unfinished at once
  uint64_t max_stream_bytes = kMaxPayloadBytes;
};

class StreamReceiver {
 public:
  StreamReceiver(StreamStorage& storage, StreamLimits limits = {})
      : storage_(storage), limits_(limits) {}
  ~StreamReceiver() { reset(); }
  StreamReceiver(const StreamReceiver&) = delete;
  StreamReceiver& operator=(const StreamReceiver&) = delete;

  struct Answer {
    ChunkAck ack;
    std::string refused;  // non-empty: the stream is refused (over a limit), with the reason
  };
  Answer on_chunk(const Chunk& chunk);
  // Streams that arrived whole and are waiting for the item that names them.
  bool completed(uint64_t id) const { return done_.count(id) != 0; }
  // The item naming `id` arrived: it is no longer tracked here (the storage keeps the bytes).
  bool claim(uint64_t id);
  // Drops every stream, finished or not (the connection is gone).
  void reset();
  size_t open_streams() const { return open_.size(); }

 private:
  struct Open {
    uint64_t total = 0;
    uint64_t have = 0;
  };
  StreamStorage& storage_;
  StreamLimits limits_;
  std::unordered_map<uint64_t, Open> open_;
  std::unordered_map<uint64_t, uint64_t> done_;  // id -> total
};

// Keeps streams in memory; take() hands over a finished payload.
class MemoryStreamStorage final : public StreamStorage {
 public:
  bool begin(uint64_t id, uint64_t total) override;
  bool write(uint64_t id, std::string_view data) override;
  void end(uint64_t id) override;
  void discard(uint64_t id) override;
  std::optional<Bytes> take(uint64_t id);
  // The same, as the string itself (for an owner that keeps a std::string).
  std::optional<std::string> take_string(uint64_t id);

 private:
  std::unordered_map<uint64_t, std::string> partial_;
  std::unordered_map<uint64_t, std::string> finished_;
};

}  // namespace lrts::protocol
