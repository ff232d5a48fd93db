// LRTS_CHECK: an invariant that must hold in every build. When it does not, the process says
// where and why on stderr and aborts (a core dump for the post-mortem), rather than run on with
// state it no longer understands. For conditions that depend on the outside world (input, peers,
// files) use errors, never a check.
#pragma once

namespace lrts::detail {

[[noreturn]] void check_failed(const char* file, int line, const char* condition,
                               const char* why) noexcept;

}  // namespace lrts::detail

#define LRTS_CHECK(condition, why)                                       \
  do {                                                                   \
    if (!(condition)) [[unlikely]] {                                     \
      ::lrts::detail::check_failed(__FILE__, __LINE__, #condition, why); \
    }                                                                    \
  } while (false)
