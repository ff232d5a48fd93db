#include "tui/view.hpp"

#include <gtest/gtest.h>

namespace lrts::tui {
namespace {

using namespace std::chrono_literals;

ProgressSnapshot bar(uint64_t count, uint64_t total, double elapsed, double eta, double rate) {
  ProgressSnapshot s;
  s.service_id = "00000000000000ab-3";
  s.attempt = 1;
  s.description = "Doing Work";
  s.unit = "iterations";
  s.count = count;
  s.total = total;
  s.elapsed_seconds = elapsed;
  s.eta_seconds = eta;
  s.rate = rate;
  return s;
}

TEST(ViewFormatTest, Durations) {
  EXPECT_EQ(format_hms(0), "00:00:00");
  EXPECT_EQ(format_hms(33.9), "00:00:33");
  EXPECT_EQ(format_hms(3600 + 62), "01:01:02");
  EXPECT_EQ(format_hms(86400 * 2 + 3661), "2d 01:01:01");
  EXPECT_EQ(format_hms(-1), "?");
}

TEST(ViewFormatTest, Rates) {
  EXPECT_EQ(format_rate(0.61, "iterations"), "0.61 iterations/s");
  EXPECT_EQ(format_rate(12.34, "it"), "12.3 it/s");
  EXPECT_EQ(format_rate(950, "it"), "950 it/s");
  EXPECT_EQ(format_rate(1234, "it"), "1.23k it/s");
  EXPECT_EQ(format_rate(12'345, "it"), "12.3k it/s");
  EXPECT_EQ(format_rate(4.2e9, ""), "4.20G it/s");
  EXPECT_EQ(format_rate(0, "files"), "? files/s");
}

TEST(ViewFormatTest, BarLineLikeTheOriginal) {
  const std::string line = format_bar_line(bar(20, 42, 33, 36, 0.61), 90, 13);
  EXPECT_EQ(line,
            "#3 Doing Work  47% |███████████▍            | 20/42 "
            "[00:00:33<00:00:36, 0.61 iterations/s]");
  EXPECT_EQ(display_width(line), 90u);
}

TEST(ViewFormatTest, BarLineFitsNarrowTerminals) {
  for (size_t width : {120u, 80u, 60u, 40u, 20u}) {
    EXPECT_LE(display_width(format_bar_line(bar(20, 42, 33, 36, 0.61), width, 13)), width) << width;
  }
}

TEST(ViewFormatTest, UnknownTotalShowsCountAndRateOnly) {
  EXPECT_EQ(format_bar_line(bar(1234, 0, 5, -1, 246.8), 80, 13),
            "#3 Doing Work 1234 iterations [00:00:05, 247 iterations/s]");
}

TEST(ViewFormatTest, UnknownEtaAndRetriedAttempt) {
  ProgressSnapshot s = bar(1, 10, 2, -1, 0);
  s.attempt = 2;
  const std::string line = format_bar_line(s, 100, 0);
  EXPECT_EQ(bar_label(s), "#3 Doing Work (attempt 2)");
  EXPECT_NE(line.find("[00:00:02<?, ? iterations/s]"), std::string::npos) << line;
}

TEST(ViewFormatTest, StatusLine) {
  EXPECT_EQ(format_status_line("Waiting For Results", 41, {}, 80),
            "lrts | Stage: Waiting For Results | 00:00:41");
  EXPECT_EQ(format_status_line("X", 1, {{"3 running", ""}}, 80),
            "lrts | Stage: X | 00:00:01 | 3 running");
}

TEST(ViewFormatTest, StatusLineCountsEveryOutcomeWithRateAndEta) {
  TaskCounts c;
  c.ok = 196;
  c.failed = 4;
  c.running = 0;
  c.queued = 0;
  // Everything done: 4 failures are not hidden behind "200/200".
  EXPECT_EQ(format_status_line("Running", 10, task_fields(c), 120),
            "lrts | Stage: Running | 00:00:10 | 196 ok · 4 failed · 0 running · 0 queued");
  c = {12, 1, 4, 83, 2.5, 34.8};
  EXPECT_EQ(format_status_line("Running", 41, task_fields(c), 120),
            "lrts | Stage: Running | 00:00:41 | 12 ok · 1 failed · 4 running · 83 queued | ETA "
            "00:00:34 | 2.50 tasks/s");
}

TEST(ViewFormatTest, ANarrowStatusLineDropsTheLeastUsefulPartsFirst) {
  const TaskCounts c{12, 1, 4, 83, 2.5, 34.8};
  const auto fields = task_fields(c);
  // Rate first, then the ETA, then the prefix, then the long form of the counts.
  EXPECT_EQ(format_status_line("Running", 41, fields, 95),
            "lrts | Stage: Running | 00:00:41 | 12 ok · 1 failed · 4 running · 83 queued | ETA "
            "00:00:34");
  EXPECT_EQ(format_status_line("Running", 41, fields, 80),
            "lrts | Stage: Running | 00:00:41 | 12 ok · 1 failed · 4 running · 83 queued");
  EXPECT_EQ(format_status_line("Running", 41, fields, 64),
            "Running | 00:00:41 | 12 ok · 1 failed · 4 running · 83 queued");
  EXPECT_EQ(format_status_line("Running", 41, fields, 50),
            "Running | 00:00:41 | 12 ok 1 fail 4 run 83 q");
  // At 40 columns the counts stay.
  EXPECT_EQ(format_status_line("Running", 41, fields, 40), "00:00:41 | 12 ok 1 fail 4 run 83 q");
  EXPECT_EQ(format_status_line("Running", 41, fields, 30), "12 ok 1 fail 4 run 83 q");
  for (size_t w = 1; w < 130; ++w) {
    EXPECT_LE(display_width(format_status_line("Running", 41, fields, w)), w) << w;
  }
}

TEST(ViewFormatTest, FrozenBarsSayHowTheyEndedInsteadOfARateAndEta) {
  ProgressSnapshot s = bar(20, 42, 33, 36, 0.61);
  s.closed = true;
  for (auto [status, word] : {std::pair{BarStatus::failed, "failed"},
                              {BarStatus::lost, "lost"},
                              {BarStatus::cancelled, "cancelled"},
                              {BarStatus::timed_out, "timed out"}}) {
    s.status = status;
    const std::string line = format_bar_line(s, 90, 13);
    EXPECT_NE(line.find("| 20/42 [00:00:33, " + std::string(word) + "]"), std::string::npos)
        << line;
    EXPECT_EQ(line.find("iterations/s"), std::string::npos) << line;
    // However narrow, the outcome stays on the line.
    EXPECT_NE(format_bar_line(s, 30, 13).find(word), std::string::npos)
        << format_bar_line(s, 30, 13);
  }
}

TEST(ViewFormatTest, NarrowBarLinesDropWholeFieldsNotHalves) {
  const ProgressSnapshot s = bar(20, 42, 33, 36, 0.61);
  // The rate goes first, then the times: never "[00:00:33<00:0".
  const std::string at60 = format_bar_line(s, 60, 13);
  EXPECT_NE(at60.find("| 20/42 [00:00:33<00:00:36]"), std::string::npos) << at60;
  const std::string at40 = format_bar_line(s, 40, 13);
  EXPECT_NE(at40.find("| 20/42"), std::string::npos) << at40;
  EXPECT_EQ(at40.find('['), std::string::npos) << at40;
  for (size_t w = 1; w < 130; ++w) EXPECT_LE(display_width(format_bar_line(s, w, 13)), w) << w;
}

TEST(ViewFormatTest, ControlCharactersNeverReachTheTerminal) {
  // OSC 0 (window title), OSC 52 (clipboard), CSI, C1 controls, bidi overrides, bad UTF-8.
  EXPECT_EQ(printable("a\x1b]0;pwned\x07"
                      "b"),
            "a]0;pwnedb");
  EXPECT_EQ(printable("\x1b]52;c;ZWNobyBoaQ==\x07x"), "]52;c;ZWNobyBoaQ==x");
  EXPECT_EQ(printable("\x1b[2J\r\n\t\x7f"), "[2J");
  EXPECT_EQ(printable("\xc2\x9b"
                      "31m"),
            "31m");                                      // C1 CSI
  EXPECT_EQ(printable("x\xe2\x80\xaey"), "xy");          // right-to-left override
  EXPECT_EQ(printable("\xff\xfe ok \xc3"), " ok ");      // malformed UTF-8
  EXPECT_EQ(printable("Grüße 進捗 ✓"), "Grüße 進捗 ✓");  // text stays
  protocol::BarState b;
  b.description = "evil\x1b]52;c;AAAA\x07";
  b.unit = "\x1b[31mred";
  const ProgressSnapshot p = to_snapshot(b);
  EXPECT_EQ(p.description.find('\x1b'), std::string::npos);
  EXPECT_EQ(p.unit.find('\x1b'), std::string::npos);
}

TEST(ViewFormatTest, RowsOfAFrameAfterTheTerminalGotNarrower) {
  const std::vector<std::string> frame = {std::string(79, 'a'), std::string(79, 'b'), "c"};
  EXPECT_EQ(rows_used(frame, 80), 3u);
  EXPECT_EQ(rows_used(frame, 40), 5u);  // each long line now wraps onto two rows
}

TEST(ViewModelTest, ManyBarsCollapseIntoAnAggregateLine) {
  ViewModel model;
  const TimePoint now{};
  std::vector<ProgressSnapshot> bars;
  for (int i = 0; i < 300; ++i) {
    ProgressSnapshot s = bar(5, 10, 1, 1, 5);
    s.service_id = "00000000000000ab-" + std::to_string(i + 1);
    bars.push_back(s);
  }
  model.apply(bars, now);
  const auto lines = model.frame("Running", 3, {}, 100, 50, 20, 3s, now);
  ASSERT_EQ(lines.size(), 21u);  // status + aggregate + 19 bars
  EXPECT_EQ(lines[1], "... 281 more bar(s); 300 running; all bars 1500/3000 (50%)");
  EXPECT_EQ(lines.back().rfind("#300 ", 0), 0u) << lines.back();  // the most recent ones
}

TEST(ViewModelTest, RetryReplacesTheEarlierAttemptsBars) {
  ViewModel model;
  const TimePoint now{};
  ProgressSnapshot first = bar(7, 10, 1, 1, 1);
  model.apply({first}, now);
  ProgressSnapshot retry = bar(0, 10, 0, -1, 0);
  retry.attempt = 2;
  model.apply({retry}, now);
  model.apply({first}, now);  // a late update of attempt 1 is ignored
  const auto lines = model.frame("Running", 1, {}, 100, 50, 20, 3s, now);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_NE(lines[1].find("(attempt 2)"), std::string::npos);
  EXPECT_NE(lines[1].find(" 0/10 "), std::string::npos) << lines[1];
}

TEST(ViewModelTest, ClosedBarsLeaveAfterTheirLingerButStayInTotals) {
  ViewModel model;
  TimePoint now{};
  ProgressSnapshot done = bar(10, 10, 1, 0, 10);
  done.closed = true;
  model.apply({done}, now);
  EXPECT_EQ(model.frame("S", 1, {}, 100, 50, 20, 3s, now).size(), 2u);
  now += 5s;
  model.prune(now, 3s);
  EXPECT_EQ(model.frame("S", 1, {}, 100, 50, 20, 3s, now).size(), 1u);
  EXPECT_EQ(model.open_bars(), 0u);
}

TEST(ViewModelTest, FailedLostAndCancelledBarsAreCountedApart) {
  ViewModel model;
  TimePoint now{};
  std::vector<ProgressSnapshot> bars;
  const BarStatus statuses[] = {BarStatus::running, BarStatus::running, BarStatus::done,
                                BarStatus::failed,  BarStatus::lost,    BarStatus::cancelled};
  for (size_t i = 0; i < std::size(statuses); ++i) {
    ProgressSnapshot s = bar(5, 10, 1, 1, 5);
    s.service_id = "00000000000000ab-" + std::to_string(i + 1);
    s.status = statuses[i];
    s.closed = statuses[i] != BarStatus::running;
    bars.push_back(s);
  }
  model.apply(bars, now);
  EXPECT_EQ(model.counts().text(), "2 running · 1 done · 1 failed · 1 lost · 1 cancelled");
  EXPECT_EQ(model.open_bars(), 2u);
  now += 10s;
  model.prune(now, 3s);  // off the screen, still counted
  EXPECT_EQ(model.counts().text(), "2 running · 1 done · 1 failed · 1 lost · 1 cancelled");
}

}  // namespace
}  // namespace lrts::tui
