#include "protocol/msgpack_io.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "protocol/json.hpp"

namespace lrts::protocol::mp {
namespace {

TEST(MsgpackIoTest, RoundTripsIntegersAtEveryEncodingBoundary) {
  const uint64_t uints[] = {0,
                            1,
                            127,
                            128,
                            255,
                            256,
                            65535,
                            65536,
                            0xffffffffULL,
                            0x100000000ULL,
                            std::numeric_limits<uint64_t>::max()};
  const int64_t sints[] = {0,
                           -1,
                           -32,
                           -33,
                           -128,
                           -129,
                           -32768,
                           -32769,
                           std::numeric_limits<int32_t>::min(),
                           std::numeric_limits<int64_t>::min(),
                           std::numeric_limits<int64_t>::max()};
  std::string buf;
  Writer w(buf);
  for (uint64_t v : uints) w.uint(v);
  for (int64_t v : sints) w.sint(v);
  Reader r(buf);
  for (uint64_t v : uints) EXPECT_EQ(r.uint(), v);
  for (int64_t v : sints) EXPECT_EQ(r.sint(), v);
  EXPECT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r.at_end());
}

TEST(MsgpackIoTest, RoundTripsStringsBinariesAndContainers) {
  const std::string lengths[] = {std::string(),         std::string(31, 'a'),
                                 std::string(32, 'b'),  std::string(255, 'c'),
                                 std::string(256, 'd'), std::string(70000, 'e')};
  std::string buf;
  Writer w(buf);
  w.array(static_cast<uint32_t>(std::size(lengths)) * 2);
  for (const auto& s : lengths) {
    w.str(s);
    w.bin(s);
  }
  w.map(1);
  w.str("k");
  w.f64(2.5);
  w.boolean(true);
  w.nil();
  Reader r(buf);
  EXPECT_EQ(r.array(), std::size(lengths) * 2);
  for (const auto& s : lengths) {
    EXPECT_EQ(r.str(), s);
    EXPECT_EQ(r.bin(), s);
  }
  EXPECT_EQ(r.map(), 1u);
  EXPECT_EQ(r.str(), "k");
  EXPECT_EQ(r.f64(), 2.5);
  EXPECT_TRUE(r.boolean());
  r.nil();
  EXPECT_TRUE(r.ok()) << r.error();
  EXPECT_TRUE(r.at_end());
}

TEST(MsgpackIoTest, EveryTruncationFailsCleanly) {
  std::string buf;
  Writer w(buf);
  w.array(3);
  w.uint(123456789);
  w.str("hello world, a string of some length");
  w.bin(std::string(300, 'x'));
  for (size_t n = 0; n < buf.size(); ++n) {
    Reader r(buf.data(), n);
    r.array();
    r.uint();
    r.str();
    r.bin();
    EXPECT_FALSE(r.ok()) << "prefix of " << n << " bytes decoded";
  }
}

TEST(MsgpackIoTest, RejectsContainerCountsLargerThanTheMessage) {
  const std::string huge_array = "\xdd\xff\xff\xff\xff";  // array of 4 billion, no elements
  Reader r(huge_array);
  EXPECT_EQ(r.array(), 0u);
  EXPECT_FALSE(r.ok());
  const std::string huge_str =
      "\xdb\x7f\xff\xff\xff"
      "abc";
  Reader r2(huge_str);
  EXPECT_TRUE(r2.str().empty());
  EXPECT_FALSE(r2.ok());
}

TEST(MsgpackIoTest, RejectsNestingDeeperThanTheLimit) {
  std::string deep(Reader::kMaxDepth + 5, '\x91');  // [[[[...
  deep.push_back('\x01');
  Reader r(deep);
  r.skip();
  EXPECT_FALSE(r.ok());
  EXPECT_STREQ(r.error(), "nesting too deep");
}

TEST(MsgpackIoTest, WrongTypeSetsStickyError) {
  std::string buf;
  Writer w(buf);
  w.str("not a number");
  w.uint(5);
  Reader r(buf);
  EXPECT_EQ(r.uint(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.uint(), 0u);  // everything after an error reads as zero
}

TEST(MsgpackIoTest, RawReturnsOneWholeObject) {
  std::string buf;
  Writer w(buf);
  w.map(2);
  w.str("a");
  w.array(2);
  w.uint(1);
  w.uint(2);
  w.str("b");
  w.nil();
  w.uint(7);
  Reader r(buf);
  const std::string_view raw = r.raw();
  EXPECT_EQ(raw.size(), buf.size() - 1);
  EXPECT_EQ(r.uint(), 7u);
  EXPECT_TRUE(r.ok());
}

TEST(MsgpackIoTest, RandomGarbageNeverCrashesTheReader) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    Reader r(junk);
    while (r.ok() && !r.at_end()) r.skip();
    (void)to_json(junk);
  }
  SUCCEED();
}

TEST(JsonTest, ConvertsValuesToJson) {
  std::string buf;
  Writer w(buf);
  w.map(4);
  w.str("n");
  w.sint(-3);
  w.str("f");
  w.f64(0.1);
  w.str("s");
  w.str("q\"\n");
  w.str("l");
  w.array(2);
  w.boolean(false);
  w.nil();
  auto json = to_json(buf);
  ASSERT_TRUE(json.ok()) << json.error();
  EXPECT_EQ(*json, R"({"n":-3,"f":0.1,"s":"q\"\n","l":[false,null]})");
  EXPECT_FALSE(to_json("\xc1").ok());
}

}  // namespace
}  // namespace lrts::protocol::mp
