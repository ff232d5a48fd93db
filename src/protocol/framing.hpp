// Framing for byte streams (the worker <-> slot socketpair): each frame is a 4-byte
// little-endian length, then one message. FrameWriter queues frames and writes them without
// blocking; large binaries are written from where they already are (writev), never copied into
// the frame. FrameBuffer cuts what arrives into frames; a large frame gets a buffer of its own,
// which the receiver can take over (so a 1 GiB result is not copied to be kept).
// Neither is thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/bytes.hpp"
#include "common/result.hpp"
#include "protocol/codec.hpp"

namespace lrts::protocol {

inline constexpr size_t kFrameHeaderBytes = 4;
// Binaries at least this large are written in place rather than copied into a frame.
inline constexpr size_t kExternalBinBytes = 64u << 10;
// Frames at least this large get a buffer of their own on the receiving side.
inline constexpr size_t kLargeFrameBytes = 1u << 20;

class FrameWriter {
 public:
  // Queues one frame. `keep` holds the memory of any large binary in `m` until it is written.
  template <class M>
  void push(const M& m, std::vector<Bytes> keep = {}) {
    Frame f;
    f.head.append(kFrameHeaderBytes, '\0');
    encode(m, f.head, &f.external, kExternalBinBytes);
    finish(std::move(f), std::move(keep));
  }
  // Writes as much as the descriptor takes now. False on an error other than "try again".
  bool write_some(int fd);
  // Writes everything, blocking (for a slot, whose socket is blocking).
  bool write_all(int fd);
  bool empty() const { return frames_.empty(); }
  size_t queued_bytes() const { return queued_; }
  void clear();

 private:
  struct Frame {
    std::string head;
    std::vector<mp::External> external;
    std::vector<Bytes> keep;
    size_t total = 0;  // bytes of the whole frame
    size_t done = 0;   // bytes written so far
  };
  void finish(Frame f, std::vector<Bytes> keep);
  std::deque<Frame> frames_;
  size_t queued_ = 0;
};

class FrameBuffer {
 public:
  explicit FrameBuffer(size_t max_frame) : max_frame_(max_frame) {}
  // Reads what is available from `fd` (non-blocking or blocking: one read call when blocking).
  // Returns bytes read; 0 at end of file; -1 with errno on error.
  long read_from(int fd);
  // The next complete frame body, if any. The view stays valid until the next read_from() or
  // take_large(). Fails if a frame announces more than max_frame bytes.
  Result<bool> next(std::string_view* body);
  // After next() returned a large frame (body.size() >= kLargeFrameBytes): its buffer, which
  // the views into body point into. Call at most once per frame.
  std::shared_ptr<const std::string> take_large();

 private:
  std::string buf_;
  size_t start_ = 0;
  size_t size_ = 0;  // bytes in use in buf_, from 0
  size_t max_frame_;
  // A large frame being received into a buffer of its own.
  std::shared_ptr<std::string> large_;
  size_t large_have_ = 0;
  bool large_ready_ = false;
  std::shared_ptr<std::string> large_done_;
};

}  // namespace lrts::protocol
