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
  EXPECT_EQ(format_status_line("Waiting For Results", 41, "", 80),
            "lrts | Stage: Waiting For Results | 00:00:41");
  EXPECT_EQ(format_status_line("X", 1, "3/9 tasks done", 80), "lrts | Stage: X | 00:00:01 | 3/9 tasks done");
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
  const auto lines = model.frame("Running", 3, "", 100, 50, 20, 3s, now);
  ASSERT_EQ(lines.size(), 21u);  // status + aggregate + 19 bars
  EXPECT_EQ(lines[1], "... 281 more bar(s); 300 running, 0 done; all bars 1500/3000 (50%)");
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
  const auto lines = model.frame("Running", 1, "", 100, 50, 20, 3s, now);
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
  EXPECT_EQ(model.frame("S", 1, "", 100, 50, 20, 3s, now).size(), 2u);
  now += 5s;
  model.prune(now, 3s);
  EXPECT_EQ(model.frame("S", 1, "", 100, 50, 20, 3s, now).size(), 1u);
  EXPECT_EQ(model.open_bars(), 0u);
}

}  // namespace
}  // namespace lrts::tui
