// What daemons count for operators: histograms, a per-second window for "the last minute", and
// the Prometheus text exposition format
// (https://prometheus.io/docs/instrumenting/exposition_formats/). Plain values owned by one thread;
// a daemon renders them into text on its own loop and hands the text to its HTTP thread
// (net/http_server.hpp), so nothing here is shared.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"

namespace lrts::metrics {

// Seconds, from a millisecond to a day: queue waits and run times of long tasks.
inline constexpr std::array<double, 14> kSecondsBuckets = {
    0.001, 0.005, 0.025, 0.1, 0.5, 1, 5, 30, 60, 300, 1800, 3600, 21600, 86400};

class Histogram {
 public:
  void observe(double seconds);
  uint64_t count() const { return count_; }
  double sum() const { return sum_; }
  // Cumulative count of observations <= kSecondsBuckets[i].
  uint64_t cumulative(size_t i) const;

 private:
  std::array<uint64_t, kSecondsBuckets.size()> buckets_{};
  uint64_t count_ = 0;
  double sum_ = 0;
};

// Counts per second over the last minute (a ring of 60 one-second cells).
class MinuteWindow {
 public:
  void add(TimePoint now, uint64_t n = 1);
  uint64_t last_minute(TimePoint now) const;

 private:
  void advance(TimePoint now) const;
  mutable std::array<uint64_t, 60> cells_{};
  mutable int64_t second_ = 0;  // the cell index's absolute second
};

// Builds one exposition: each family's # HELP and # TYPE once, then its samples.
class TextWriter {
 public:
  // Label pairs, already valid names; values are escaped here.
  using Labels = std::vector<std::pair<std::string_view, std::string_view>>;
  void counter(std::string_view name, std::string_view help, double value,
               const Labels& labels = {});
  void gauge(std::string_view name, std::string_view help, double value, const Labels& labels = {});
  void histogram(std::string_view name, std::string_view help, const Histogram& h);
  // The next samples of a family already started (other label values).
  void sample(std::string_view name, double value, const Labels& labels);
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void family(std::string_view name, std::string_view help, std::string_view type);
  std::string out_;
  std::string last_family_;
};

}  // namespace lrts::metrics
