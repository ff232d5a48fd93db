// The live progress view: a status line and one line per bar, as in
//
//   lrts | Stage: Waiting For Results | 00:41
//   #3 Doing Work  45%|██████████          | 20/42 [00:33<00:36, 0.61 iterations/s]
//
// The text is made in tui/format.hpp (pure functions). TerminalView draws frames on a
// terminal, redrawing in place at most ~10 times a second; whatever the program prints to
// stdout/stderr meanwhile is shown above the bars. When the output is not a terminal it prints
// plain lines every few seconds instead of escape codes. TerminalView is thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "common/unique_fd.hpp"
#include "lrts/progress.hpp"
#include "tui/format.hpp"

namespace lrts::tui {

struct ViewOptions {
  size_t max_bar_lines = 20;  // more bars collapse into an aggregate line
  Duration redraw_interval = milliseconds(100);
  Duration plain_interval = seconds(5);  // when not a terminal
  Duration closed_linger = seconds(3);   // closed bars stay on screen this long
  bool capture_output = true;            // show program output above the bars
  int fd = 2;                            // where to draw
};

// Bars by status, those that left the screen included.
struct BarCounts {
  uint64_t running = 0, done = 0, failed = 0, lost = 0, cancelled = 0, timed_out = 0;
  // "3 running · 10 done · 1 failed" (statuses with no bar left out, running always shown).
  std::string text() const;
};

// What is on screen, and the frame it makes (pure).
class ViewModel {
 public:
  void apply(const std::vector<ProgressSnapshot>& changes, TimePoint now);
  // Frame lines for a terminal of the given size.
  std::vector<std::string> frame(std::string_view stage, double elapsed_seconds,
                                 const std::vector<StatusField>& fields, size_t width,
                                 size_t height, size_t max_bar_lines, Duration closed_linger,
                                 TimePoint now) const;
  size_t open_bars() const;
  BarCounts counts() const;
  // Forgets closed bars older than `keep` (they stay in the totals).
  void prune(TimePoint now, Duration keep);

 private:
  struct Shown {
    ProgressSnapshot bar;
    TimePoint closed_at{};
    uint64_t order = 0;  // first appearance
  };
  std::map<std::pair<std::string, uint32_t>, Shown> bars_;  // (service id, bar)
  std::map<std::string, uint32_t> attempt_of_;
  uint64_t next_order_ = 0;
  BarCounts gone_;  // closed bars that left the screen
  uint64_t finished_count_ = 0;
  uint64_t finished_total_ = 0;
};

class TerminalView {
 public:
  explicit TerminalView(ViewOptions options = {});
  ~TerminalView();
  TerminalView(const TerminalView&) = delete;
  TerminalView& operator=(const TerminalView&) = delete;

  void start();
  // Draws the last frame and gives the terminal back.
  void stop();
  void update(const std::vector<ProgressSnapshot>& changes);
  void set_stage(std::string stage);
  // The status line's fields after stage and time, most important first (say, task counts).
  void set_fields(std::vector<StatusField> fields);
  // Without fields, the status line counts the bars on screen by status.
  void count_bars(bool on);
  // What the connection is doing ("connecting to ..."); empty once connected.
  void set_connection(std::string text);
  bool is_terminal() const { return tty_; }

 private:
  void render_loop();
  void capture_loop(int fd);
  std::string draw_locked(TimePoint now, bool final) LRTS_REQUIRES(mu_);
  void write_out(const std::string& s) const;

  ViewOptions options_;
  bool tty_ = false;
  UniqueFd out_fd_;  // the real terminal (a dup of options_.fd)
  TimePoint started_;

  Mutex mu_;
  CondVar cv_;
  ViewModel model_ LRTS_GUARDED_BY(mu_);
  std::string stage_ LRTS_GUARDED_BY(mu_) = "Starting";
  std::vector<StatusField> fields_ LRTS_GUARDED_BY(mu_);
  bool count_bars_ LRTS_GUARDED_BY(mu_) = false;
  std::string connection_ LRTS_GUARDED_BY(mu_);
  std::vector<std::string> pending_logs_ LRTS_GUARDED_BY(mu_);
  std::vector<std::string> on_screen_ LRTS_GUARDED_BY(mu_);  // the frame drawn last
  bool dirty_ LRTS_GUARDED_BY(mu_) = true;
  bool running_ LRTS_GUARDED_BY(mu_) = false;
  bool stopping_ LRTS_GUARDED_BY(mu_) = false;

  struct Capture {
    int target = -1;  // 1 or 2
    UniqueFd saved;   // the original, restored at stop
    UniqueFd read_end;
    std::thread reader;
  };
  std::vector<std::unique_ptr<Capture>> captures_;
  UniqueFd capture_stop_;  // eventfd: readers drain what is there and end (a child process may
                           // still hold the pipe open, so they cannot wait for end of file)
  std::thread renderer_;
};

}  // namespace lrts::tui
