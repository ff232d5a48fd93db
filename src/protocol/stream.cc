#include "protocol/stream.hpp"

#include <algorithm>
#include <cassert>

namespace lrts::protocol {

SendLimits send_limits_for(size_t peer_max_message) {
  const size_t peer = std::max(peer_max_message, kMinMaxMessageBytes);
  SendLimits l;
  l.stream.chunk_bytes = std::clamp<size_t>(peer / 4, 64u << 10, 1u << 20);
  l.stream.window_bytes = 4 * l.stream.chunk_bytes;
  l.inline_max = l.stream.chunk_bytes;
  l.batch_bytes = std::max(l.inline_max, std::min<size_t>(4u << 20, peer / 2));
  return l;
}

// ---- sender -----------------------------------------------------------------------------------

uint64_t StreamSender::start(std::unique_ptr<PayloadSource> source) {
  assert(source && source->size() > 0);
  Stream s;
  s.id = next_id_++;
  s.source = std::move(source);
  streams_.push_back(std::move(s));
  return streams_.back().id;
}

uint64_t StreamSender::unacked_bytes() const {
  uint64_t n = 0;
  for (const Stream& s : streams_) n += s.sent - s.acked;
  return n;
}

void StreamSender::pump(TimePoint now, const std::function<void(const Chunk&)>& send) {
  for (Stream& s : streams_) {
    if (s.progressed) {
      s.last_ack = now;
      s.progressed = false;
    }
    if (s.sent > s.acked && now - s.last_ack >= kStallTimeout) {
      s.sent = s.acked;  // what was out is lost: send it again
      s.rewound_to = UINT64_MAX;
    }
  }
  uint64_t unacked = unacked_bytes();
  for (Stream& s : streams_) {
    const uint64_t size = s.source->size();
    if (s.sent == s.acked && s.sent < size) s.last_ack = now;  // the clock starts as bytes leave
    while (s.sent < size && unacked < options_.window_bytes) {
      const size_t len =
          static_cast<size_t>(std::min<uint64_t>(options_.chunk_bytes, size - s.sent));
      Chunk c;
      c.stream = s.id;
      c.total = size;
      c.offset = s.sent;
      c.data = s.source->read(s.sent, len, scratch_);
      send(c);
      s.sent += len;
      unacked += len;
    }
    if (unacked >= options_.window_bytes) return;
  }
}

StreamSender::Stream* StreamSender::find(uint64_t id) {
  for (Stream& s : streams_) {
    if (s.id == id) return &s;
  }
  return nullptr;
}

std::optional<uint64_t> StreamSender::on_ack(const ChunkAck& ack) {
  Stream* s = find(ack.stream);
  if (!s) return std::nullopt;
  const uint64_t size = s->source->size();
  const uint64_t got = std::min(ack.received, size);
  if (got > s->acked) {
    const bool was_complete = s->acked == size;
    s->acked = got;
    s->progressed = true;
    if (s->sent < s->acked) s->sent = s->acked;
    if (s->rewound_to != UINT64_MAX && s->acked > s->rewound_to) s->rewound_to = UINT64_MAX;
    if (s->acked == size && !was_complete) return s->id;
    return std::nullopt;
  }
  // An acknowledgement that does not advance: the receiver refused a chunk that did not start
  // where it is. Go back there, once per place.
  if (got == s->acked && got < s->sent && s->rewound_to != got) {
    s->sent = got;
    s->rewound_to = got;
  }
  return std::nullopt;
}

TimePoint StreamSender::next_deadline() const {
  TimePoint next = TimePoint::max();
  for (const Stream& s : streams_) {
    if (s.sent > s.acked) next = std::min(next, s.last_ack + kStallTimeout);
  }
  return next;
}

bool StreamSender::complete(uint64_t id) const {
  for (const Stream& s : streams_) {
    if (s.id == id) return s.acked == s.source->size();
  }
  return false;
}

void StreamSender::finish(uint64_t id) {
  for (auto it = streams_.begin(); it != streams_.end(); ++it) {
    if (it->id == id) {
      streams_.erase(it);
      return;
    }
  }
}

std::vector<std::pair<uint64_t, uint64_t>> StreamSender::restart() {
  std::vector<std::pair<uint64_t, uint64_t>> moved;
  for (Stream& s : streams_) {
    const uint64_t old = s.id;
    s.id = next_id_++;
    s.sent = s.acked = 0;
    s.rewound_to = UINT64_MAX;
    moved.emplace_back(old, s.id);
  }
  return moved;
}

// ---- receiver ---------------------------------------------------------------------------------

StreamReceiver::Answer StreamReceiver::on_chunk(const Chunk& c) {
  Answer a;
  a.ack.stream = c.stream;
  if (auto d = done_.find(c.stream); d != done_.end()) {
    a.ack.received = d->second;  // already whole
    return a;
  }
  auto it = open_.find(c.stream);
  if (it == open_.end()) {
    if (c.offset != 0) return a;  // we have nothing of it: start from the beginning
    if (open_.size() >= limits_.max_streams) {
      a.refused =
          "too many payload streams at once (at most " + std::to_string(limits_.max_streams) + ")";
      return a;
    }
    if (c.total > limits_.max_stream_bytes) {
      a.refused = "a payload of " + std::to_string(c.total) + " bytes is over the limit of " +
                  std::to_string(limits_.max_stream_bytes);
      return a;
    }
    if (!storage_.begin(c.stream, c.total)) {
      a.refused = "no room to store a payload of " + std::to_string(c.total) + " bytes";
      return a;
    }
    it = open_.emplace(c.stream, Open{c.total, 0}).first;
  }
  Open& o = it->second;
  if (c.total != o.total) {
    storage_.discard(c.stream);
    open_.erase(it);
    a.refused = "a chunk changed the size of its stream";
    return a;
  }
  if (c.offset != o.have) {
    a.ack.received = o.have;  // not where we are: the sender goes back
    return a;
  }
  if (!c.data.empty() && !storage_.write(c.stream, c.data)) {
    storage_.discard(c.stream);
    open_.erase(it);
    a.refused = "could not store a payload chunk";
    return a;
  }
  o.have += c.data.size();
  a.ack.received = o.have;
  if (o.have == o.total) {
    storage_.end(c.stream);
    done_.emplace(c.stream, o.total);
    open_.erase(it);
  }
  return a;
}

bool StreamReceiver::claim(uint64_t id) { return done_.erase(id) != 0; }

void StreamReceiver::reset() {
  for (const auto& [id, o] : open_) storage_.discard(id);
  for (const auto& [id, total] : done_) storage_.discard(id);
  open_.clear();
  done_.clear();
}

// ---- memory storage -------------------------------------------------------------------------

bool MemoryStreamStorage::begin(uint64_t id, uint64_t total) {
  std::string& s = partial_[id];
  s.clear();
  try {
    s.reserve(static_cast<size_t>(total));
  } catch (const std::bad_alloc&) {
    partial_.erase(id);
    return false;
  }
  return true;
}

bool MemoryStreamStorage::write(uint64_t id, std::string_view data) {
  auto it = partial_.find(id);
  if (it == partial_.end()) return false;
  it->second.append(data);
  return true;
}

void MemoryStreamStorage::end(uint64_t id) {
  auto it = partial_.find(id);
  if (it == partial_.end()) return;
  finished_.insert_or_assign(id, std::move(it->second));
  partial_.erase(it);
}

void MemoryStreamStorage::discard(uint64_t id) {
  partial_.erase(id);
  finished_.erase(id);
}

std::optional<std::string> MemoryStreamStorage::take_string(uint64_t id) {
  auto it = finished_.find(id);
  if (it == finished_.end()) return std::nullopt;
  std::string s = std::move(it->second);
  finished_.erase(it);
  return s;
}

std::optional<Bytes> MemoryStreamStorage::take(uint64_t id) {
  auto s = take_string(id);
  if (!s) return std::nullopt;
  return Bytes(std::move(*s));
}

}  // namespace lrts::protocol
