#include "common/check.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace lrts::detail {

void check_failed(const char* file, int line, const char* condition, const char* why) noexcept {
  std::fprintf(stderr, "lrts: internal check failed at %s:%d: %s (%s); aborting (pid %d)\n", file,
               line, condition, why, static_cast<int>(::getpid()));
  std::fflush(stderr);
  std::abort();
}

}  // namespace lrts::detail
