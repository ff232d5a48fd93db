// The live progress view: a status line and one line per bar, as in
//
//   lrts | Stage: Waiting For Results | 00:41
//   #3 Doing Work  45%|██████████          | 20/42 [00:33<00:36, 0.61 iterations/s]
//
// The formatting functions are pure (tested on fixed inputs). TerminalView draws frames on a
// terminal, redrawing in place at most ~10 times a second; whatever the program prints to
// stdout/stderr meanwhile is shown above the bars. When the output is not a terminal it prints
// plain lines every few seconds instead of escape codes. TerminalView is thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "lrts/progress.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::tui {

// A bar as the progress server reports it, as applications see it.
ProgressSnapshot to_snapshot(const protocol::BarState& b);

// "00:00:33"; "1d 02:03:04" past a day; "?" when negative (unknown).
std::string format_hms(double seconds);
// "0.61 iterations/s", "12.3k it/s"; "? it/s" when unknown.
std::string format_rate(double rate, std::string_view unit);
// Display width of UTF-8 text (one column per code point).
size_t display_width(std::string_view utf8);
// One bar, fitted to `width` columns. `label_width` pads the label so bars line up.
std::string format_bar_line(const ProgressSnapshot& bar, size_t width, size_t label_width);
// The label of a bar: "#<task seq> <description>[ (attempt k)]".
std::string bar_label(const ProgressSnapshot& bar);
std::string format_status_line(std::string_view stage, double elapsed_seconds,
                               std::string_view extra, size_t width);

struct ViewOptions {
  size_t max_bar_lines = 20;            // more bars collapse into an aggregate line
  Duration redraw_interval = milliseconds(100);
  Duration plain_interval = seconds(5);  // when not a terminal
  Duration closed_linger = seconds(3);   // closed bars stay on screen this long
  bool capture_output = true;            // show program output above the bars
  int fd = 2;                            // where to draw
};

// What is on screen, and the frame it makes (pure).
class ViewModel {
 public:
  void apply(const std::vector<ProgressSnapshot>& changes, TimePoint now);
  // Frame lines for a terminal of the given size.
  std::vector<std::string> frame(std::string_view stage, double elapsed_seconds,
                                 std::string_view extra, size_t width, size_t height,
                                 size_t max_bar_lines, Duration closed_linger,
                                 TimePoint now) const;
  size_t open_bars() const;
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
  uint64_t finished_bars_ = 0;  // closed bars that left the screen
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
  // Extra text for the status line (e.g. "12/100 done").
  void set_extra(std::string extra);
  // What the connection is doing ("connecting to ..."); empty once connected.
  void set_connection(std::string text);
  bool is_terminal() const { return tty_; }

 private:
  void render_loop();
  void capture_loop(int fd);
  std::string draw_locked(TimePoint now, bool final);
  void write_out(const std::string& s) const;

  ViewOptions options_;
  bool tty_ = false;
  int out_fd_ = -1;  // the real terminal (a dup of options_.fd)
  TimePoint started_;

  std::mutex mu_;
  std::condition_variable cv_;
  ViewModel model_;
  std::string stage_ = "Starting";
  std::string extra_;
  std::string connection_;
  std::vector<std::string> pending_logs_;
  size_t lines_on_screen_ = 0;
  bool dirty_ = true;
  bool running_ = false;
  bool stopping_ = false;

  struct Capture {
    int target = -1;   // 1 or 2
    int saved = -1;    // the original, restored at stop
    int read_end = -1;
    std::thread reader;
  };
  std::vector<std::unique_ptr<Capture>> captures_;
  int capture_stop_ = -1;  // eventfd: readers drain what is there and end (a child process may
                           // still hold the pipe open, so they cannot wait for end of file)
  std::thread renderer_;
};

}  // namespace lrts::tui
