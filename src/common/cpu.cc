#include "common/cpu.hpp"

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
    case -1: return std::max(1, physical_cores());
    case -2: return std::max(1, logical_cores());
    case -3: return std::max(1, physical_cores() - 1);
    case -4: return std::max(1, logical_cores() - 1);
    default: return 0;
  }
}

}  // namespace lrts
