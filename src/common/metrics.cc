#include "common/metrics.hpp"

#include <cmath>
#include <cstdio>

namespace lrts::metrics {

void Histogram::observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN or a clock step
  for (size_t i = 0; i < kSecondsBuckets.size(); ++i) {
    if (seconds <= kSecondsBuckets[i]) {
      ++buckets_[i];
      break;
    }
  }
  ++count_;
  sum_ += seconds;
}

uint64_t Histogram::cumulative(size_t i) const {
  uint64_t n = 0;
  for (size_t j = 0; j <= i && j < buckets_.size(); ++j) n += buckets_[j];
  return n;
}

void MinuteWindow::advance(TimePoint now) const {
  const int64_t sec = std::chrono::duration_cast<seconds>(now.time_since_epoch()).count();
  if (sec <= second_) return;
  if (sec - second_ >= static_cast<int64_t>(cells_.size())) {
    cells_.fill(0);
  } else {
    for (int64_t s = second_ + 1; s <= sec; ++s) cells_[static_cast<size_t>(s) % cells_.size()] = 0;
  }
  second_ = sec;
}

void MinuteWindow::add(TimePoint now, uint64_t n) {
  advance(now);
  cells_[static_cast<size_t>(second_) % cells_.size()] += n;
}

uint64_t MinuteWindow::last_minute(TimePoint now) const {
  advance(now);
  uint64_t total = 0;
  for (uint64_t c : cells_) total += c;
  return total;
}

namespace {

void append_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "NaN";
  } else if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
  } else if (v == std::floor(v) && std::fabs(v) < 1e15) {
    out += std::to_string(static_cast<int64_t>(v));
  } else {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    out += buf;
  }
}

void append_labels(std::string& out, const TextWriter::Labels& labels) {
  if (labels.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k;
    out += "=\"";
    for (char c : v) {
      if (c == '\\' || c == '"') {
        out += '\\';
        out += c;
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += c;
      }
    }
    out += '"';
  }
  out += '}';
}

}  // namespace

void TextWriter::family(std::string_view name, std::string_view help, std::string_view type) {
  if (last_family_ == name) return;
  last_family_.assign(name);
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += help;
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void TextWriter::sample(std::string_view name, double value, const Labels& labels) {
  out_ += name;
  append_labels(out_, labels);
  out_ += ' ';
  append_value(out_, value);
  out_ += '\n';
}

void TextWriter::counter(std::string_view name, std::string_view help, double value,
                         const Labels& labels) {
  family(name, help, "counter");
  sample(name, value, labels);
}

void TextWriter::gauge(std::string_view name, std::string_view help, double value,
                       const Labels& labels) {
  family(name, help, "gauge");
  sample(name, value, labels);
}

void TextWriter::histogram(std::string_view name, std::string_view help, const Histogram& h) {
  family(name, help, "histogram");
  const std::string bucket = std::string(name) + "_bucket";
  char le[32];
  for (size_t i = 0; i < kSecondsBuckets.size(); ++i) {
    std::snprintf(le, sizeof le, "%g", kSecondsBuckets[i]);
    sample(bucket, static_cast<double>(h.cumulative(i)), {{"le", le}});
  }
  sample(bucket, static_cast<double>(h.count()), {{"le", "+Inf"}});
  sample(std::string(name) + "_sum", h.sum(), {});
  sample(std::string(name) + "_count", static_cast<double>(h.count()), {});
}

}  // namespace lrts::metrics
