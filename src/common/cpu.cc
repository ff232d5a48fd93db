#include "common/cpu.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace lrts {

int logical_cores() {
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  if (n < 1) n = static_cast<long>(std::thread::hardware_concurrency());
  return n < 1 ? 1 : static_cast<int>(n);
}

int physical_cores() {
  // Distinct (package, core) pairs among online CPUs; falls back to the logical count.
  std::set<std::pair<std::string, std::string>> cores;
  const int logical = logical_cores();
  for (int cpu = 0; cpu < 4096 && static_cast<int>(cores.size()) < logical; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core(base + "core_id"), pkg(base + "physical_package_id");
    if (!core || !pkg) {
      if (cpu > logical * 4) break;
      continue;
    }
    std::string c, p;
    core >> c;
    pkg >> p;
    cores.emplace(p, c);
  }
  if (cores.empty()) return logical;
  return std::min(static_cast<int>(cores.size()), logical);
}

int resolve_max_jobs(int requested) {
  if (requested > 0) return requested;
  switch (requested) {
    case -1:
      return std::max(1, physical_cores());
    case -2:
      return std::max(1, logical_cores());
    case -3:
      return std::max(1, physical_cores() - 1);
    case -4:
      return std::max(1, logical_cores() - 1);
    default:
      return 0;
  }
}

int max_slots() {
  long cap = std::max(256, 16 * logical_cores());
  rlimit rl{};
  if (::getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    cap = std::min<long>(cap, static_cast<long>(rl.rlim_cur / 2));
  }
  // Each slot holds a socket and a memory file open in the worker.
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_max != RLIM_INFINITY) {
    cap = std::min<long>(cap, static_cast<long>(rl.rlim_max / 4));
  }
  return static_cast<int>(std::max<long>(1, cap));
}

}  // namespace lrts
