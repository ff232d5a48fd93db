// Bytes: an immutable byte range that shares ownership of the buffer it points into, so that a
// payload (task fields, a result) can be held by several owners — a queue, a stream being sent,
// a frame being written — without being copied. Copies are cheap (a reference count); the bytes
// never change. Not thread-safe to mutate one Bytes object from several threads; distinct copies
// may be used by distinct threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace lrts {

class Bytes {
 public:
  Bytes() = default;
  explicit Bytes(std::string s) {
    auto owner = std::make_shared<const std::string>(std::move(s));
    view_ = *owner;
    owner_ = std::move(owner);
  }
  // A part of a buffer someone already shares.
  Bytes(std::shared_ptr<const std::string> owner, std::string_view part)
      : owner_(std::move(owner)), view_(part) {}

  std::string_view view() const { return view_; }
  const char* data() const { return view_.data(); }
  size_t size() const { return view_.size(); }
  bool empty() const { return view_.empty(); }
  // A copy of the bytes, for APIs that take ownership of a string.
  std::string str() const { return std::string(view_); }

 private:
  std::shared_ptr<const std::string> owner_;
  std::string_view view_;
};

}  // namespace lrts
