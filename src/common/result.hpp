// Result<T>: a value or an error message a user can act on. Errors that come from the
// environment (bad input, unreachable peer, failed syscall) are values of this type; broken
// invariants are LRTS_CHECKs instead (using the value of an error is one).
#pragma once

#include <string>
#include <utility>
#include <variant>

#include "common/check.hpp"

namespace lrts {

struct Error {
  std::string message;
};

// A value or an error of a domain's own type E (a code and a text, say).
template <class T, class E>
class [[nodiscard]] Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Expected(E error) : v_(std::move(error)) {}  // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & {
    LRTS_CHECK(ok(), "the value of an error result was used");
    return std::get<0>(v_);
  }
  const T& value() const& {
    LRTS_CHECK(ok(), "the value of an error result was used");
    return std::get<0>(v_);
  }
  T&& value() && {
    LRTS_CHECK(ok(), "the value of an error result was used");
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  const E& error() const {
    LRTS_CHECK(!ok(), "the error of a good result was asked for");
    return std::get<1>(v_);
  }

 private:
  std::variant<T, E> v_;
};

// A value or an Error; error() is its message.
template <class T>
class [[nodiscard]] Result : public Expected<T, Error> {
 public:
  using Expected<T, Error>::Expected;
  const std::string& error() const { return Expected<T, Error>::error().message; }
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(std::move(error.message)), ok_(false) {}  // NOLINT
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const std::string& error() const { return error_; }

 private:
  std::string error_;
  bool ok_ = true;
};

using Status = Result<void>;

inline Error make_error(std::string message) { return Error{std::move(message)}; }

}  // namespace lrts
