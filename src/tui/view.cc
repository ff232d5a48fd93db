#include "tui/view.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>

namespace lrts::tui {

namespace {

constexpr const char* kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
constexpr const char* kFull = "█";

// Cuts UTF-8 text to at most `width` columns.
std::string fit(std::string_view s, size_t width) {
  std::string out;
  size_t cols = 0;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 1;
    if (cols + 1 > width) break;
    out.append(s.substr(i, len));
    i += len;
    ++cols;
  }
  return out;
}

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

}  // namespace

ProgressSnapshot to_snapshot(const protocol::BarState& b) {
  ProgressSnapshot p;
  p.service_id = protocol::format_service_id(b.key);
  p.attempt = b.attempt;
  p.bar = b.bar_no;
  p.description = b.description;
  p.unit = b.unit;
  p.count = b.count;
  p.total = b.total;
  p.closed = b.closed();
  p.rate = b.rate;
  p.eta_seconds = b.eta_seconds;
  p.elapsed_seconds = static_cast<double>(b.elapsed_ms) / 1000.0;
  return p;
}

std::string format_hms(double seconds) {
  if (!(seconds >= 0) || std::isinf(seconds)) return "?";
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

std::string bar_label(const ProgressSnapshot& bar) {
  std::string label = std::string(1, '#').append(task_number(bar.service_id));
  label.append(" ").append(bar.description);
  if (bar.attempt > 1) label += " (attempt " + std::to_string(bar.attempt) + ")";
  return label;
}

std::string format_bar_line(const ProgressSnapshot& bar, size_t width, size_t label_width) {
  const std::string label = pad(bar_label(bar), label_width);
  const std::string elapsed = format_hms(bar.elapsed_seconds);
  const std::string rate = format_rate(bar.rate, bar.unit);
  if (bar.total == 0) {
    const std::string line = label + " " + count_text(bar.count) + " " +
                             (bar.unit.empty() ? "it" : bar.unit) + " [" + elapsed + ", " + rate +
                             "]";
    return fit(line, width);
  }
  const double frac = std::min(1.0, static_cast<double>(bar.count) / static_cast<double>(bar.total));
  char pct[8];
  std::snprintf(pct, sizeof pct, "%3d%%", static_cast<int>(frac * 100));
  const double eta = bar.closed ? 0 : bar.eta_seconds;
  const std::string left = label + " " + pct + " |";
  const std::string right = "| " + count_text(bar.count) + "/" + count_text(bar.total) + " [" +
                            elapsed + "<" + format_hms(eta) + ", " + rate + "]";
  const size_t used = display_width(left) + display_width(right);
  if (used + 4 > width) return fit(label + " " + pct + " " + right.substr(2), width);
  const size_t bar_width = width - used;
  const double cells = frac * static_cast<double>(bar_width);
  const auto full = static_cast<size_t>(cells);
  std::string body;
  for (size_t i = 0; i < full; ++i) body += kFull;
  size_t drawn = full;
  if (full < bar_width) {
    const auto eighth = static_cast<size_t>((cells - static_cast<double>(full)) * 8);
    if (eighth > 0) {
      body += kEighths[eighth];
      ++drawn;
    }
  }
  body.append(bar_width - drawn, ' ');
  return left + body + right;
}

std::string format_status_line(std::string_view stage, double elapsed_seconds,
                               std::string_view extra, size_t width) {
  std::string line = "lrts | Stage: " + std::string(stage) + " | " + format_hms(elapsed_seconds);
  if (!extra.empty()) line += " | " + std::string(extra);
  return fit(line, width);
}

// ---- ViewModel ------------------------------------------------------------------------------

void ViewModel::apply(const std::vector<ProgressSnapshot>& changes, TimePoint now) {
  for (const auto& c : changes) {
    auto at = attempt_of_.find(c.service_id);
    if (at != attempt_of_.end() && c.attempt < at->second) continue;  // an older attempt
    if (at != attempt_of_.end() && c.attempt > at->second) {
      // A retry: the bars of the earlier attempt leave, the new ones start from zero.
      for (auto it = bars_.lower_bound({c.service_id, 0});
           it != bars_.end() && it->first.first == c.service_id;) {
        it = bars_.erase(it);
      }
    }
    attempt_of_[c.service_id] = c.attempt;
    auto [it, fresh] = bars_.try_emplace({c.service_id, c.bar});
    Shown& s = it->second;
    if (fresh) s.order = next_order_++;
    s.bar = c;
    if (c.closed && s.closed_at == TimePoint{}) s.closed_at = now;
  }
}

void ViewModel::prune(TimePoint now, Duration keep) {
  for (auto it = bars_.begin(); it != bars_.end();) {
    const Shown& s = it->second;
    if (s.bar.closed && now - s.closed_at >= keep) {
      ++finished_bars_;
      finished_count_ += s.bar.total ? std::min(s.bar.count, s.bar.total) : 0;
      finished_total_ += s.bar.total;
      it = bars_.erase(it);
    } else {
      ++it;
    }
  }
  // Tasks whose bars are all gone need no attempt number any more.
  for (auto it = attempt_of_.begin(); it != attempt_of_.end();) {
    auto b = bars_.lower_bound({it->first, 0});
    it = (b == bars_.end() || b->first.first != it->first) ? attempt_of_.erase(it) : std::next(it);
  }
}

size_t ViewModel::open_bars() const {
  size_t n = 0;
  for (const auto& [k, s] : bars_) n += s.bar.closed ? 0 : 1;
  return n;
}

std::vector<std::string> ViewModel::frame(std::string_view stage, double elapsed_seconds,
                                          std::string_view extra, size_t width, size_t height,
                                          size_t max_bar_lines, Duration closed_linger,
                                          TimePoint now) const {
  std::vector<std::string> lines;
  lines.push_back(format_status_line(stage, elapsed_seconds, extra, width));
  // On screen: open bars, and closed ones for a little while.
  std::vector<const Shown*> open, recent;
  uint64_t sum_count = finished_count_, sum_total = finished_total_, closed_total = finished_bars_;
  for (const auto& [k, s] : bars_) {
    sum_count += s.bar.total ? std::min(s.bar.count, s.bar.total) : 0;
    sum_total += s.bar.total;
    if (!s.bar.closed) {
      open.push_back(&s);
    } else {
      ++closed_total;
      if (now - s.closed_at < closed_linger) recent.push_back(&s);
    }
  }
  auto by_order = [](const Shown* a, const Shown* b) { return a->order < b->order; };
  std::sort(open.begin(), open.end(), by_order);
  std::sort(recent.begin(), recent.end(), by_order);
  const size_t room = std::max<size_t>(1, std::min(max_bar_lines, height > 2 ? height - 2 : 1));
  std::vector<const Shown*> shown;
  if (open.size() + recent.size() <= room) {
    shown = recent;
    shown.insert(shown.end(), open.begin(), open.end());
  } else {
    // Too many: one aggregate line, then the most recent bars, open ones first.
    const size_t keep = room - 1;
    const size_t from_open = std::min(open.size(), keep);
    shown.assign(recent.end() - static_cast<std::ptrdiff_t>(std::min(recent.size(), keep - from_open)),
                 recent.end());
    shown.insert(shown.end(), open.end() - static_cast<std::ptrdiff_t>(from_open), open.end());
    char agg[200];
    const size_t hidden = open.size() + recent.size() - shown.size();
    std::snprintf(agg, sizeof agg, "... %zu more bar(s); %zu running, %llu done; all bars %s/%s (%d%%)",
                  hidden, open.size(), static_cast<unsigned long long>(closed_total),
                  count_text(sum_count).c_str(), count_text(sum_total).c_str(),
                  sum_total ? static_cast<int>(100.0 * static_cast<double>(sum_count) /
                                               static_cast<double>(sum_total))
                            : 0);
    lines.push_back(fit(agg, width));
  }
  std::sort(shown.begin(), shown.end(), by_order);
  size_t label_width = 0;
  for (const Shown* s : shown) label_width = std::max(label_width, display_width(bar_label(s->bar)));
  label_width = std::min<size_t>(label_width, std::max<size_t>(10, width / 3));
  for (const Shown* s : shown) lines.push_back(format_bar_line(s->bar, width, label_width));
  return lines;
}

// ---- TerminalView ---------------------------------------------------------------------------

TerminalView::TerminalView(ViewOptions options) : options_(options) {}

TerminalView::~TerminalView() { stop(); }

void TerminalView::start() {
  std::lock_guard lock(mu_);
  if (running_) return;
  running_ = true;
  started_ = Clock::now();
  out_fd_ = ::fcntl(options_.fd, F_DUPFD_CLOEXEC, 10);
  tty_ = out_fd_ >= 0 && ::isatty(out_fd_);
  if (tty_ && options_.capture_output) {
    std::fflush(stdout);
    std::fflush(stderr);
    capture_stop_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    for (int target : {1, 2}) {
      if (!::isatty(target)) continue;
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) continue;
      auto cap = std::make_unique<Capture>();
      cap->target = target;
      cap->saved = ::fcntl(target, F_DUPFD_CLOEXEC, 10);
      cap->read_end = p[0];
      ::dup3(p[1], target, 0);  // target keeps no CLOEXEC: it is the program's own fd 1/2
      ::close(p[1]);
      cap->reader = std::thread([this, fd = p[0]] { capture_loop(fd); });
      captures_.push_back(std::move(cap));
    }
    // Keep stdout line-buffered although it is now a pipe (it was a terminal; we flushed it).
    std::setvbuf(stdout, nullptr, _IOLBF, 0);
  }
  if (tty_) write_out("\x1b[?25l");  // hide the cursor while drawing
  renderer_ = std::thread([this] { render_loop(); });
}

void TerminalView::stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_ || stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  renderer_.join();
  // Give the program its output back; the readers drain the pipes and end.
  std::fflush(stdout);
  std::fflush(stderr);
  for (auto& cap : captures_) {
    ::dup2(cap->saved, cap->target);
    ::close(cap->saved);
  }
  if (capture_stop_ >= 0) {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(capture_stop_, &one, sizeof one);
  }
  for (auto& cap : captures_) {
    cap->reader.join();
    ::close(cap->read_end);
  }
  captures_.clear();
  if (capture_stop_ >= 0) ::close(capture_stop_);
  capture_stop_ = -1;
  std::string out;
  {
    std::lock_guard lock(mu_);
    out = draw_locked(Clock::now(), true);
  }
  if (tty_) out += "\x1b[?25h";
  write_out(out);
  ::close(out_fd_);
  out_fd_ = -1;
  std::lock_guard lock(mu_);
  running_ = false;
}

void TerminalView::update(const std::vector<ProgressSnapshot>& changes) {
  std::lock_guard lock(mu_);
  model_.apply(changes, Clock::now());
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::set_stage(std::string stage) {
  std::lock_guard lock(mu_);
  stage_ = std::move(stage);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::set_extra(std::string extra) {
  std::lock_guard lock(mu_);
  if (extra_ == extra) return;
  extra_ = std::move(extra);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::set_connection(std::string text) {
  std::lock_guard lock(mu_);
  if (connection_ == text) return;
  connection_ = std::move(text);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::render_loop() {
  std::unique_lock lock(mu_);
  TimePoint last_draw{};
  while (!stopping_) {
    // A terminal: program output at once, changes at most every redraw_interval, and once a
    // second for the clock. Plain output: changes at most every plain_interval.
    TimePoint due;
    if (tty_) {
      due = !pending_logs_.empty() ? TimePoint{}
                                   : last_draw + (dirty_ ? options_.redraw_interval : seconds(1));
    } else {
      due = dirty_ ? last_draw + options_.plain_interval : TimePoint::max();
    }
    const TimePoint now = Clock::now();
    if (now < due) {
      if (due == TimePoint::max()) {
        cv_.wait(lock);
      } else {
        cv_.wait_until(lock, due);
      }
      continue;  // re-evaluate: woken by a change, new output, stop, or the deadline
    }
    std::string out = draw_locked(now, false);
    last_draw = now;
    lock.unlock();
    write_out(out);
    lock.lock();
  }
}

std::string TerminalView::draw_locked(TimePoint now, bool final) {
  size_t width = 100, height = 40;
  winsize ws{};
  if (tty_ && ::ioctl(out_fd_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    width = ws.ws_col;
    height = ws.ws_row > 0 ? ws.ws_row : height;
  }
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  if (!final) model_.prune(now, options_.closed_linger);
  // One column short of the edge: a full-width line would wrap on some terminals.
  const std::string extra = connection_.empty() ? extra_
                                                : extra_.empty() ? connection_
                                                                 : connection_ + " | " + extra_;
  auto lines = model_.frame(stage_, elapsed, extra, tty_ ? width - 1 : 100, height,
                            options_.max_bar_lines, final ? seconds(3600) : options_.closed_linger,
                            now);
  dirty_ = false;
  std::string out;
  if (!tty_) {
    for (const auto& l : lines) out += "[lrts] " + l + "\n";
    return out;
  }
  if (lines_on_screen_ > 0) out += "\x1b[" + std::to_string(lines_on_screen_) + "F";
  if (!pending_logs_.empty()) {
    out += "\x1b[J";
    for (const auto& l : pending_logs_) out += l + "\n";
    pending_logs_.clear();
  }
  for (const auto& l : lines) out += l + "\x1b[K\n";
  out += "\x1b[J";
  lines_on_screen_ = lines.size();
  return out;
}

void TerminalView::capture_loop(int fd) {
  std::string partial;
  char buf[4096];
  bool stopping = false;
  for (;;) {
    if (!stopping) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {capture_stop_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0 && errno == EINTR) continue;
      if (fds[1].revents & POLLIN) {
        stopping = true;  // from now on: read what is there, then end
        ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      }
    }
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // end of file, or (stopping) nothing more waiting
    partial.append(buf, static_cast<size_t>(n));
    std::vector<std::string> lines;
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      lines.push_back(partial.substr(start, nl - start));
    }
    partial.erase(0, start);
    if (!lines.empty()) {
      std::lock_guard lock(mu_);
      for (auto& l : lines) pending_logs_.push_back(std::move(l));
      cv_.notify_all();
    }
  }
  if (!partial.empty()) {
    std::lock_guard lock(mu_);
    pending_logs_.push_back(std::move(partial));
  }
}

void TerminalView::write_out(const std::string& s) const {
  size_t off = 0;
  while (off < s.size() && out_fd_ >= 0) {
    const ssize_t n = ::write(out_fd_, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace lrts::tui
