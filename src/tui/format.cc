#include "tui/format.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace lrts::tui {

namespace {

constexpr const char* kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
constexpr const char* kFull = "█";

std::string pad(std::string_view s, size_t width) {
  std::string out = fit(s, width);
  const size_t w = display_width(out);
  if (w < width) out.append(width - w, ' ');
  return out;
}

std::string count_text(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(n));
  return buf;
}

std::string task_number(const std::string& service_id) {
  const auto dash = service_id.rfind('-');
  return dash == std::string::npos ? service_id : service_id.substr(dash + 1);
}

// The bar itself, `cells` columns wide, `frac` of it full.
std::string bar_body(double frac, size_t cells) {
  const double filled = frac * static_cast<double>(cells);
  const auto full = static_cast<size_t>(filled);
  std::string body;
  for (size_t i = 0; i < full; ++i) body += kFull;
  size_t drawn = full;
  if (full < cells) {
    const auto eighth = static_cast<size_t>((filled - static_cast<double>(full)) * 8);
    if (eighth > 0) {
      body += kEighths[eighth];
      ++drawn;
    }
  }
  body.append(cells - drawn, ' ');
  return body;
}

// Length of the UTF-8 sequence starting at s[i], or 0 when it is malformed.
size_t utf8_sequence(std::string_view s, size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t len;
  unsigned char lo = 0x80, hi = 0xbf;  // range of the second byte
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;  // overlong
    if (c == 0xed) hi = 0x9f;  // surrogates
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf)) return 0;
  }
  return len;
}

// C1 controls (U+0080..U+009F) and the bidirectional overrides and isolates, which reorder
// what follows them on screen.
bool hidden_control(std::string_view seq) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(seq[k]); };
  if (seq.size() == 2) return b(0) == 0xc2 && b(1) <= 0x9f;
  if (seq.size() == 3 && b(0) == 0xe2) {
    if (b(1) == 0x80 && b(2) >= 0xaa && b(2) <= 0xae) return true;  // U+202A..U+202E
    if (b(1) == 0x81 && b(2) >= 0xa6 && b(2) <= 0xa9) return true;  // U+2066..U+2069
  }
  return false;
}

}  // namespace

BarStatus status_of(protocol::BarPhase phase) {
  switch (phase) {
    case protocol::BarPhase::kOpen:
      return BarStatus::running;
    case protocol::BarPhase::kDone:
      return BarStatus::done;
    case protocol::BarPhase::kFailed:
      return BarStatus::failed;
    case protocol::BarPhase::kLost:
      return BarStatus::lost;
    case protocol::BarPhase::kCancelled:
      return BarStatus::cancelled;
    case protocol::BarPhase::kTimedOut:
      return BarStatus::timed_out;
  }
  return BarStatus::done;
}

ProgressSnapshot to_snapshot(const protocol::BarState& b) {
  ProgressSnapshot p;
  p.service_id = protocol::format_service_id(b.key);
  p.attempt = b.attempt;
  p.bar = b.bar_no;
  p.description = printable(b.description);
  p.unit = printable(b.unit);
  p.count = b.count;
  p.total = b.total;
  p.closed = b.closed();
  p.status = status_of(b.phase);
  p.rate = b.rate;
  p.eta_seconds = b.eta_seconds;
  p.elapsed_seconds = static_cast<double>(b.elapsed_ms) / 1000.0;
  return p;
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      if (c >= 0x20 && c != 0x7f) out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    const size_t len = utf8_sequence(s, i);
    if (len == 0) {
      ++i;  // a stray byte: dropped
      continue;
    }
    const std::string_view seq = s.substr(i, len);
    if (!hidden_control(seq)) out.append(seq);
    i += len;
  }
  return out;
}

std::string format_hms(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds) || seconds > 1e15) return "?";
  auto total = static_cast<uint64_t>(seconds);
  const uint64_t days = total / 86400;
  total %= 86400;
  char buf[48];
  if (days > 0) {
    std::snprintf(buf, sizeof buf, "%llud %02llu:%02llu:%02llu",
                  static_cast<unsigned long long>(days),
                  static_cast<unsigned long long>(total / 3600),
                  static_cast<unsigned long long>(total / 60 % 60),
                  static_cast<unsigned long long>(total % 60));
  } else {
    std::snprintf(buf, sizeof buf, "%02llu:%02llu:%02llu",
                  static_cast<unsigned long long>(total / 3600),
                  static_cast<unsigned long long>(total / 60 % 60),
                  static_cast<unsigned long long>(total % 60));
  }
  return buf;
}

std::string format_rate(double rate, std::string_view unit) {
  const std::string u = unit.empty() ? std::string("it") : std::string(unit);
  if (!(rate > 0) || std::isinf(rate)) return "? " + u + "/s";
  char buf[48];
  static const char* const kSuffix[] = {"", "k", "M", "G", "T"};
  int s = 0;
  double r = rate;
  while (r >= 1000 && s < 4) {
    r /= 1000;
    ++s;
  }
  const char* fmt = r >= 100 ? "%.0f%s %s/s" : r >= 10 ? "%.1f%s %s/s" : "%.2f%s %s/s";
  std::snprintf(buf, sizeof buf, fmt, r, kSuffix[s], u.c_str());
  return buf;
}

size_t display_width(std::string_view s) {
  size_t w = 0;
  for (char ch : s) {
    if ((static_cast<unsigned char>(ch) & 0xc0) != 0x80) ++w;  // count lead bytes only
  }
  return w;
}

std::string fit(std::string_view s, size_t width) {
  std::string out;
  size_t cols = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80           ? 1
                       : (c >> 5) == 0x6  ? 2
                       : (c >> 4) == 0xe  ? 3
                       : (c >> 3) == 0x1e ? 4
                                          : 1;
    if (cols + 1 > width) break;
    out.append(s.substr(i, len));
    i += len;
    ++cols;
  }
  return out;
}

std::string bar_label(const ProgressSnapshot& bar) {
  std::string label = std::string(1, '#').append(task_number(bar.service_id));
  label.append(" ").append(bar.description);
  if (bar.attempt > 1) label += " (attempt " + std::to_string(bar.attempt) + ")";
  return label;
}

std::string format_bar_line(const ProgressSnapshot& bar, size_t width, size_t label_width) {
  const std::string label = pad(bar_label(bar), std::min(label_width, width));
  const bool frozen = bar.status != BarStatus::running && bar.status != BarStatus::done;
  const std::string status = to_string(bar.status);
  const std::string elapsed = format_hms(bar.elapsed_seconds);
  const std::string rate = format_rate(bar.rate, bar.unit);
  auto fits = [&](const std::string& line) { return display_width(line) <= width; };
  // The label gives way last: cut it so that `rest` still fits.
  auto with_short_label = [&](const std::string& rest) {
    const size_t room = width > display_width(rest) ? width - display_width(rest) : 0;
    return fit(fit(bar_label(bar), room) + rest, width);
  };
  if (bar.total == 0) {
    const std::string count =
        " " + count_text(bar.count) + " " + (bar.unit.empty() ? "it" : bar.unit);
    const std::vector<std::string> tails = {
        frozen ? " [" + elapsed + ", " + status + "]" : " [" + elapsed + ", " + rate + "]",
        frozen ? " [" + status + "]" : " [" + elapsed + "]", frozen ? " " + status : ""};
    for (const auto& tail : tails) {
      if (fits(label + count + tail)) return label + count + tail;
    }
    return with_short_label(" " + count_text(bar.count) + tails.back());
  }
  const double frac =
      std::min(1.0, static_cast<double>(bar.count) / static_cast<double>(bar.total));
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
  const std::string counts = count_text(bar.count) + "/" + count_text(bar.total);
  const double eta = bar.closed ? 0 : bar.eta_seconds;
  const std::vector<std::string> rights = {
      frozen ? "| " + counts + " [" + elapsed + ", " + status + "]"
             : "| " + counts + " [" + elapsed + "<" + format_hms(eta) + ", " + rate + "]",
      frozen ? "| " + counts + " [" + status + "]"
             : "| " + counts + " [" + elapsed + "<" + format_hms(eta) + "]",
      frozen ? "| " + counts + " " + status : "| " + counts};
  const std::string left = label + " " + pct + " |";
  constexpr size_t kMinBar = 4;
  for (const auto& right : rights) {
    const size_t used = display_width(left) + display_width(right);
    if (used + kMinBar <= width) return left + bar_body(frac, width - used) + right;
  }
  // No room for the bar: the numbers alone, then the label shortened.
  const std::string bare = " " + std::string(pct) + " " + counts + (frozen ? " " + status : "");
  if (fits(label + bare)) return label + bare;
  return with_short_label(" " + std::string(pct) + (frozen ? " " + status : ""));
}

std::string format_status_line(std::string_view stage, double elapsed_seconds,
                               const std::vector<StatusField>& fields, size_t width) {
  const std::string time = format_hms(elapsed_seconds);
  auto line = [&](const std::string& head, size_t n, bool short_forms) {
    std::string l = head;
    for (size_t i = 0; i < n; ++i) {
      const StatusField& f = fields[i];
      l += " | " + (short_forms && !f.short_text.empty() ? f.short_text : f.text);
    }
    return l;
  };
  const std::string full_head = "lrts | Stage: " + std::string(stage) + " | " + time;
  std::vector<std::string> candidates;
  for (size_t n = fields.size(); n > 0; --n) candidates.push_back(line(full_head, n, false));
  candidates.push_back(full_head);
  if (!fields.empty()) {
    const std::string head = std::string(stage) + " | " + time;
    candidates.insert(candidates.end() - 1,
                      {line(head, 1, false), line(head, 1, true), line(time, 1, true)});
    std::string only = fields[0].short_text.empty() ? fields[0].text : fields[0].short_text;
    candidates.insert(candidates.end() - 1, only);
  }
  for (const auto& c : candidates) {
    if (display_width(c) <= width) return c;
  }
  return fit(fields.empty() ? full_head : candidates[candidates.size() - 2], width);
}

std::vector<StatusField> task_fields(const TaskCounts& c) {
  const auto n = [](uint64_t v) { return count_text(v); };
  std::vector<StatusField> out;
  out.push_back(
      {n(c.ok) + " ok · " + n(c.failed) + " failed · " + n(c.running) + " running · " +
           n(c.queued) + " queued",
       n(c.ok) + " ok " + n(c.failed) + " fail " + n(c.running) + " run " + n(c.queued) + " q"});
  if (c.running + c.queued > 0 && c.eta_seconds >= 0) {
    out.push_back({"ETA " + format_hms(c.eta_seconds), ""});
  }
  if (c.rate > 0) out.push_back({format_rate(c.rate, "tasks"), ""});
  return out;
}

size_t rows_used(const std::vector<std::string>& lines, size_t width) {
  size_t rows = 0;
  for (const auto& l : lines) {
    const size_t w = display_width(l);
    rows += width == 0 || w == 0 ? 1 : (w + width - 1) / width;
  }
  return rows;
}

}  // namespace lrts::tui
