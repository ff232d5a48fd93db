#include "common/metrics.hpp"

#include <gtest/gtest.h>

namespace lrts::metrics {
namespace {

TEST(MetricsTest, HistogramBucketsAreCumulative) {
  Histogram h;
  h.observe(0.0005);
  h.observe(2);
  h.observe(1e9);  // past the last bucket: only +Inf and the count
  h.observe(-1);   // a clock step counts as zero
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.cumulative(0), 2u);  // 0.001
  EXPECT_EQ(h.cumulative(6), 3u);  // 5 s
  EXPECT_EQ(h.cumulative(kSecondsBuckets.size() - 1), 3u);
  EXPECT_DOUBLE_EQ(h.sum(), 0.0005 + 2 + 1e9);
}

TEST(MetricsTest, MinuteWindowForgetsWhatIsOlderThanAMinute) {
  MinuteWindow w;
  const TimePoint t0 = TimePoint{} + std::chrono::hours(1);
  w.add(t0, 5);
  w.add(t0 + seconds(30), 2);
  EXPECT_EQ(w.last_minute(t0 + seconds(59)), 7u);
  EXPECT_EQ(w.last_minute(t0 + seconds(61)), 2u);
  EXPECT_EQ(w.last_minute(t0 + seconds(3600)), 0u);
}

TEST(MetricsTest, TextFormatHasHelpTypeOnceAndEscapedLabels) {
  TextWriter w;
  w.counter("lrts_x_total", "Xs.", 3, {{"kind", "a\"b\\c\nd"}});
  w.sample("lrts_x_total", 4, {{"kind", "e"}});
  w.gauge("lrts_y", "Ys.", 0.25);
  Histogram h;
  h.observe(0.01);
  w.histogram("lrts_z_seconds", "Zs.", h);
  const std::string t = w.text();
  EXPECT_NE(t.find("# HELP lrts_x_total Xs.\n# TYPE lrts_x_total counter\n"
                   "lrts_x_total{kind=\"a\\\"b\\\\c\\nd\"} 3\nlrts_x_total{kind=\"e\"} 4\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("lrts_y 0.25\n"), std::string::npos);
  EXPECT_NE(t.find("lrts_z_seconds_bucket{le=\"0.025\"} 1\n"), std::string::npos) << t;
  EXPECT_NE(t.find("lrts_z_seconds_bucket{le=\"+Inf\"} 1\nlrts_z_seconds_sum 0.01\n"
                   "lrts_z_seconds_count 1\n"),
            std::string::npos)
      << t;
}

}  // namespace
}  // namespace lrts::metrics
