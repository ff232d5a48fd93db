// One JSON object per line, in the format the peer benchmarks print, for bench/report.py.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace lrts::bench {

inline void json_line(const std::string& system, const std::string& workload, double value,
                      const std::string& unit, long long n,
                      const std::map<std::string, double>& extra = {},
                      const std::vector<double>& runs = {}, const std::string& note = "") {
  std::printf(
      "{\"system\": \"%s\", \"workload\": \"%s\", \"value\": %.6g, \"unit\": \"%s\", "
      "\"n\": %lld",
      system.c_str(), workload.c_str(), value, unit.c_str(), n);
  for (const auto& [k, v] : extra) std::printf(", \"%s\": %.6g", k.c_str(), v);
  if (!runs.empty()) {
    std::printf(", \"runs\": [");
    for (size_t i = 0; i < runs.size(); ++i) std::printf("%s%.6g", i ? ", " : "", runs[i]);
    std::printf("]");
  }
  if (!note.empty()) std::printf(", \"note\": \"%s\"", note.c_str());
  std::printf("}\n");
  std::fflush(stdout);
}

// CPU seconds (user + system) a process has used so far, from /proc.
inline double cpu_seconds(int pid) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE* f = std::fopen(path, "re");
  if (!f) return -1;
  char buf[1024];
  const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long utime = 0, stime = 0;
  // Fields after the command: state ppid ... utime(14) stime(15), counted from "state" = 3.
  int field = 2;
  for (const char* q = p + 1; *q; ++q) {
    if (*q == ' ') {
      ++field;
      if (field == 14) utime = std::strtoull(q + 1, nullptr, 10);
      if (field == 15) {
        stime = std::strtoull(q + 1, nullptr, 10);
        break;
      }
    }
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace lrts::bench
