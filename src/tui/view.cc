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

namespace {

void count_status(BarCounts& c, BarStatus s) {
  switch (s) {
    case BarStatus::running:
      ++c.running;
      break;
    case BarStatus::done:
      ++c.done;
      break;
    case BarStatus::failed:
      ++c.failed;
      break;
    case BarStatus::lost:
      ++c.lost;
      break;
    case BarStatus::cancelled:
      ++c.cancelled;
      break;
    case BarStatus::timed_out:
      ++c.timed_out;
      break;
  }
}

}  // namespace

std::string BarCounts::text() const {
  std::string t = std::to_string(running) + " running";
  const std::pair<uint64_t, const char*> rest[] = {{done, "done"},
                                                   {failed, "failed"},
                                                   {lost, "lost"},
                                                   {cancelled, "cancelled"},
                                                   {timed_out, "timed out"}};
  for (const auto& [n, name] : rest) {
    if (n) t += " · " + std::to_string(n) + " " + name;
  }
  return t;
}

BarCounts ViewModel::counts() const {
  BarCounts c = gone_;
  for (const auto& [k, s] : bars_) count_status(c, s.bar.status);
  return c;
}

void ViewModel::prune(TimePoint now, Duration keep) {
  for (auto it = bars_.begin(); it != bars_.end();) {
    const Shown& s = it->second;
    if (s.bar.closed && now - s.closed_at >= keep) {
      count_status(gone_, s.bar.status);
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
                                          const std::vector<StatusField>& fields, size_t width,
                                          size_t height, size_t max_bar_lines,
                                          Duration closed_linger, TimePoint now) const {
  std::vector<std::string> lines;
  lines.push_back(format_status_line(stage, elapsed_seconds, fields, width));
  // On screen: open bars, and closed ones for a little while.
  std::vector<const Shown*> open, recent;
  uint64_t sum_count = finished_count_, sum_total = finished_total_;
  for (const auto& [k, s] : bars_) {
    sum_count += s.bar.total ? std::min(s.bar.count, s.bar.total) : 0;
    sum_total += s.bar.total;
    if (!s.bar.closed) {
      open.push_back(&s);
    } else if (now - s.closed_at < closed_linger) {
      recent.push_back(&s);
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
    shown.assign(
        recent.end() - static_cast<std::ptrdiff_t>(std::min(recent.size(), keep - from_open)),
        recent.end());
    shown.insert(shown.end(), open.end() - static_cast<std::ptrdiff_t>(from_open), open.end());
    const size_t hidden = open.size() + recent.size() - shown.size();
    const int pct = sum_total ? static_cast<int>(100.0 * static_cast<double>(sum_count) /
                                                 static_cast<double>(sum_total))
                              : 0;
    lines.push_back(fit("... " + std::to_string(hidden) + " more bar(s); " + counts().text() +
                            "; all bars " + std::to_string(sum_count) + "/" +
                            std::to_string(sum_total) + " (" + std::to_string(pct) + "%)",
                        width));
  }
  std::sort(shown.begin(), shown.end(), by_order);
  size_t label_width = 0;
  for (const Shown* s : shown)
    label_width = std::max(label_width, display_width(bar_label(s->bar)));
  label_width = std::min<size_t>(label_width, std::max<size_t>(10, width / 3));
  for (const Shown* s : shown) lines.push_back(format_bar_line(s->bar, width, label_width));
  return lines;
}

// ---- TerminalView ---------------------------------------------------------------------------

TerminalView::TerminalView(ViewOptions options) : options_(options) {}

TerminalView::~TerminalView() { stop(); }

void TerminalView::start() {
  MutexLock lock(mu_);
  if (running_) return;
  running_ = true;
  started_ = Clock::now();
  out_fd_.reset(::fcntl(options_.fd, F_DUPFD_CLOEXEC, 10));
  tty_ = out_fd_.valid() && ::isatty(out_fd_.get());
  if (tty_ && options_.capture_output) {
    std::fflush(stdout);
    std::fflush(stderr);
    capture_stop_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    for (int target : {1, 2}) {
      if (!::isatty(target)) continue;
      int p[2];
      if (::pipe2(p, O_CLOEXEC) != 0) continue;
      auto cap = std::make_unique<Capture>();
      cap->target = target;
      cap->saved.reset(::fcntl(target, F_DUPFD_CLOEXEC, 10));
      cap->read_end.reset(p[0]);
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
    MutexLock lock(mu_);
    if (!running_ || stopping_) return;
    stopping_ = true;
    cv_.notify_all();
  }
  renderer_.join();
  // Give the program its output back; the readers drain the pipes and end.
  std::fflush(stdout);
  std::fflush(stderr);
  for (auto& cap : captures_) {
    ::dup2(cap->saved.get(), cap->target);
    cap->saved.reset();
  }
  if (capture_stop_.valid()) {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(capture_stop_.get(), &one, sizeof one);
  }
  for (auto& cap : captures_) {
    cap->reader.join();
  }
  captures_.clear();
  capture_stop_.reset();
  std::string out;
  {
    MutexLock lock(mu_);
    out = draw_locked(Clock::now(), true);
  }
  if (tty_) out += "\x1b[?25h";
  write_out(out);
  out_fd_.reset();
  MutexLock lock(mu_);
  running_ = false;
}

void TerminalView::update(const std::vector<ProgressSnapshot>& changes) {
  MutexLock lock(mu_);
  model_.apply(changes, Clock::now());
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::set_stage(std::string stage) {
  MutexLock lock(mu_);
  stage_ = std::move(stage);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::set_fields(std::vector<StatusField> fields) {
  MutexLock lock(mu_);
  fields_ = std::move(fields);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::count_bars(bool on) {
  MutexLock lock(mu_);
  count_bars_ = on;
  dirty_ = true;
}

void TerminalView::set_connection(std::string text) {
  MutexLock lock(mu_);
  if (connection_ == text) return;
  connection_ = std::move(text);
  dirty_ = true;
  cv_.notify_all();
}

void TerminalView::render_loop() {
  mu_.lock();
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
      cv_.wait_until(mu_, due);
      continue;  // re-evaluate: woken by a change, new output, stop, or the deadline
    }
    std::string out = draw_locked(now, false);
    last_draw = now;
    mu_.unlock();
    write_out(out);
    mu_.lock();
  }
  mu_.unlock();
}

std::string TerminalView::draw_locked(TimePoint now, bool final) {
  size_t width = 100, height = 40;
  winsize ws{};
  if (tty_ && ::ioctl(out_fd_.get(), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) {
    width = ws.ws_col;
    height = ws.ws_row > 0 ? ws.ws_row : height;
  }
  const double elapsed = std::chrono::duration<double>(now - started_).count();
  if (!final) model_.prune(now, options_.closed_linger);
  // Connecting comes first; without fields of its own, the view counts its bars.
  std::vector<StatusField> fields;
  if (!connection_.empty()) fields.push_back({connection_, ""});
  if (fields_.empty() && count_bars_) {
    const BarCounts c = model_.counts();
    fields.push_back({c.text() + " bar(s)", std::to_string(c.running) + " run"});
  }
  fields.insert(fields.end(), fields_.begin(), fields_.end());
  // One column short of the edge: a full-width line would wrap on some terminals.
  auto lines =
      model_.frame(stage_, elapsed, fields, tty_ ? width - 1 : 100, height, options_.max_bar_lines,
                   final ? seconds(3600) : options_.closed_linger, now);
  dirty_ = false;
  std::string out;
  if (!tty_) {
    for (const auto& l : lines) out += "[lrts] " + l + "\n";
    return out;
  }
  // Back to the top of the last frame. A terminal made narrower since has wrapped its lines onto
  // more rows: count them at the new width, or a stale line stays above the frame.
  if (const size_t rows = rows_used(on_screen_, width); rows > 0) {
    out += "\x1b[" + std::to_string(rows) + "F";
  }
  if (!pending_logs_.empty()) {
    out += "\x1b[J";
    for (const auto& l : pending_logs_) out += l + "\n";
    pending_logs_.clear();
  }
  for (const auto& l : lines) out += l + "\x1b[K\n";
  out += "\x1b[J";
  on_screen_ = std::move(lines);
  return out;
}

void TerminalView::capture_loop(int fd) {
  std::string partial;
  char buf[4096];
  bool stopping = false;
  for (;;) {
    if (!stopping) {
      pollfd fds[2] = {{fd, POLLIN, 0}, {capture_stop_.get(), POLLIN, 0}};
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
      MutexLock lock(mu_);
      for (auto& l : lines) pending_logs_.push_back(std::move(l));
      cv_.notify_all();
    }
  }
  if (!partial.empty()) {
    MutexLock lock(mu_);
    pending_logs_.push_back(std::move(partial));
  }
}

void TerminalView::write_out(const std::string& s) const {
  size_t off = 0;
  while (off < s.size() && out_fd_.valid()) {
    const ssize_t n = ::write(out_fd_.get(), s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

}  // namespace lrts::tui
