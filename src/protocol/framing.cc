#include "protocol/framing.hpp"

#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace lrts::protocol {

namespace {

constexpr size_t kReadChunk = 64u << 10;
constexpr int kMaxIov = 64;

// The pieces of a frame in order, starting `skip` bytes in; appends at most `room` iovecs.
template <class Frame>
int frame_iovecs(const Frame& f, size_t skip, iovec* iov, int room) {
  int n = 0;
  size_t pos = 0;  // position in the frame
  size_t head_at = 0;
  auto add = [&](const char* p, size_t len) {
    if (len == 0 || n >= room) return;
    if (pos + len <= skip) {
      pos += len;
      return;
    }
    const size_t off = skip > pos ? skip - pos : 0;
    iov[n++] = {const_cast<char*>(p + off), len - off};
    pos += len;
  };
  for (const auto& e : f.external) {
    add(f.head.data() + head_at, e.at - head_at);
    add(e.bytes.data(), e.bytes.size());
    head_at = e.at;
  }
  add(f.head.data() + head_at, f.head.size() - head_at);
  return n;
}

}  // namespace

void FrameWriter::finish(Frame f, std::vector<Bytes> keep) {
  size_t total = f.head.size();
  for (const auto& e : f.external) total += e.bytes.size();
  const uint64_t len = total - kFrameHeaderBytes;
  for (size_t i = 0; i < 4; ++i) f.head[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  f.total = total;
  f.keep = std::move(keep);
  queued_ += total;
  frames_.push_back(std::move(f));
}

bool FrameWriter::write_some(int fd) {
  while (!frames_.empty()) {
    iovec iov[kMaxIov];
    int n = 0;
    for (const Frame& f : frames_) {
      if (n >= kMaxIov) break;
      n += frame_iovecs(f, f.done, iov + n, kMaxIov - n);
    }
    const ssize_t w = ::writev(fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
    size_t left = static_cast<size_t>(w);
    queued_ -= left;
    while (left > 0 && !frames_.empty()) {
      Frame& f = frames_.front();
      const size_t take = std::min(left, f.total - f.done);
      f.done += take;
      left -= take;
      if (f.done == f.total) frames_.pop_front();
    }
  }
  return true;
}

bool FrameWriter::write_all(int fd) {
  while (!frames_.empty()) {
    const size_t before = queued_;
    if (!write_some(fd)) return false;
    if (queued_ == before && !frames_.empty()) {
      // A blocking socket that took nothing: an error shows up on the next write.
      const Frame& f = frames_.front();
      iovec iov[1];
      if (frame_iovecs(f, f.done, iov, 1) == 0) return false;
      const ssize_t w = ::write(fd, iov[0].iov_base, iov[0].iov_len);
      if (w < 0 && errno != EINTR) return false;
      if (w > 0) {
        queued_ -= static_cast<size_t>(w);
        frames_.front().done += static_cast<size_t>(w);
        if (frames_.front().done == frames_.front().total) frames_.pop_front();
      }
    }
  }
  return true;
}

void FrameWriter::clear() {
  frames_.clear();
  queued_ = 0;
}

long FrameBuffer::read_from(int fd) {
  if (large_ && !large_ready_) {
    const size_t want = large_->size() - large_have_;
    const ssize_t n = ::read(fd, large_->data() + large_have_, want);
    if (n > 0) {
      large_have_ += static_cast<size_t>(n);
      if (large_have_ == large_->size()) large_ready_ = true;
    }
    return n;
  }
  if (start_ > 0 && start_ == size_) {
    start_ = size_ = 0;
  } else if (start_ > 0 && start_ >= buf_.size() / 2) {
    std::memmove(buf_.data(), buf_.data() + start_, size_ - start_);
    size_ -= start_;
    start_ = 0;
  }
  if (buf_.size() < size_ + kReadChunk) buf_.resize(std::max(size_ + kReadChunk, buf_.size() * 2));
  const ssize_t n = ::read(fd, buf_.data() + size_, kReadChunk);
  if (n > 0) size_ += static_cast<size_t>(n);
  return n;
}

Result<bool> FrameBuffer::next(std::string_view* body) {
  large_done_.reset();  // the previous large frame, if nobody took it
  if (large_ready_) {
    large_done_ = std::move(large_);
    large_ready_ = false;
    large_have_ = 0;
    *body = *large_done_;
    return true;
  }
  if (large_) return false;  // still arriving
  const size_t avail = size_ - start_;
  if (avail < kFrameHeaderBytes) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + start_);
  const size_t len = static_cast<size_t>(p[0]) | (static_cast<size_t>(p[1]) << 8) |
                     (static_cast<size_t>(p[2]) << 16) | (static_cast<size_t>(p[3]) << 24);
  if (len > max_frame_) {
    return make_error("frame of " + std::to_string(len) + " bytes exceeds the limit of " +
                      std::to_string(max_frame_));
  }
  if (avail >= kFrameHeaderBytes + len) {
    *body = std::string_view(buf_.data() + start_ + kFrameHeaderBytes, len);
    start_ += kFrameHeaderBytes + len;
    return true;
  }
  if (len < kLargeFrameBytes) return false;
  // A large frame: the rest goes straight into a buffer of its own.
  large_ = std::make_shared<std::string>();
  large_->resize(len);
  large_have_ = avail - kFrameHeaderBytes;
  std::memcpy(large_->data(), buf_.data() + start_ + kFrameHeaderBytes, large_have_);
  start_ = size_ = 0;
  if (large_have_ == len) return next(body);
  return false;
}

std::shared_ptr<const std::string> FrameBuffer::take_large() { return std::move(large_done_); }

}  // namespace lrts::protocol
