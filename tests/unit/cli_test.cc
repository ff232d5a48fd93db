#include <gtest/gtest.h>

#include "common/cpu.hpp"
#include "flags/flags.hpp"
#include "net/endpoint.hpp"

namespace lrts {
namespace {

std::vector<std::string> normalize(std::vector<std::string> args) {
  std::vector<char*> argv = {const_cast<char*>("lrts")};
  for (auto& a : args) argv.push_back(a.data());
  return flags::normalize(static_cast<int>(argv.size()), argv.data());
}

TEST(CliTest, SeedSingleDashFlagsBecomeGnuFlags) {
  EXPECT_EQ(normalize({"worker", "-scheduler-port", "5555", "-max-jobs", "-1", "-timeout", "1"}),
            (std::vector<std::string>{"worker", "--scheduler-port", "5555", "--max-jobs", "-1",
                                      "--timeout", "1"}));
  EXPECT_EQ(normalize({"--port", "1", "-h", "-3", "-max-jobs=-2", "{\"a\":-1}"}),
            (std::vector<std::string>{"--port", "1", "-h", "-3", "--max-jobs=-2", "{\"a\":-1}"}));
}

TEST(CliTest, MaxJobsFollowsTheOriginalRules) {
  const int physical = physical_cores();
  const int logical = logical_cores();
  EXPECT_GE(logical, physical);
  EXPECT_EQ(resolve_max_jobs(7), 7);
  EXPECT_EQ(resolve_max_jobs(-1), std::max(1, physical));
  EXPECT_EQ(resolve_max_jobs(-2), std::max(1, logical));
  EXPECT_EQ(resolve_max_jobs(-3), std::max(1, physical - 1));
  EXPECT_EQ(resolve_max_jobs(-4), std::max(1, logical - 1));
  EXPECT_EQ(resolve_max_jobs(0), 0);
  EXPECT_EQ(resolve_max_jobs(-5), 0);
}

TEST(NetTest, EndpointsAreCheckedAndFormatted) {
  auto ok = net::connect_endpoint("127.0.0.1", 5555);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->zmq, "tcp://127.0.0.1:5555");
  auto v6 = net::connect_endpoint("::1", 5555);
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->zmq, "tcp://[::1]:5555");
  EXPECT_TRUE(v6->ipv6);
  EXPECT_FALSE(net::connect_endpoint("127.0.0.1", 70000).ok());
  auto bad = net::connect_endpoint("no-such-host.invalid", 5555);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().find("cannot resolve"), std::string::npos);
  auto any = net::bind_endpoint("*", 1234);
  ASSERT_TRUE(any.ok());
  EXPECT_EQ(any->zmq, "tcp://*:1234");
}

}  // namespace
}  // namespace lrts
