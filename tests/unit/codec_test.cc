// The wire codec: every message kind round-trips through its one description, and decoders
// reject truncations, trailing bytes, other versions, messages meant for another receiver, and
// values outside their limits, without ever crashing on mutated input.
#include "protocol/codec.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "protocol/framing.hpp"
#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/slot_messages.hpp"

namespace lrts::protocol {
namespace {

// One filled-in sample of each message a scheduler accepts.
std::vector<std::string> scheduler_samples() {
  std::vector<std::string> out;
  auto add = [&](const auto& m) { encode(m, out.emplace_back()); };
  add(AppHello{"app-1", 77, 5000, 1 << 20});
  Submit s;
  s.session = 77;
  s.names = {"svc.a", "svc.b"};
  s.tasks = {{1, 0,
              "\x81\xa1"
              "a\x01",
              0, 3, 0},
             {2, 1, "", 9, 0, 1000}};
  add(s);
  add(Received{{{1, 2}, {3, 4}}});
  add(Cancel{{{1, 2}}});
  add(Collected{{{5, 6}}});
  add(AppHeartbeat{});
  add(AppBye{});
  add(Detach{});
  WorkerHello h;
  h.worker_uid = 9;
  h.name = "w";
  h.slots = 2;
  h.capacity = 4;
  h.max_message = 1 << 20;
  h.services = {"svc.a"};
  h.held = {{{1, 2}, 1}};
  add(h);
  add(WorkerHeartbeat{12});
  WorkerResults r;
  r.capacity = 3;
  r.items = {{{1, 2}, 1, TaskStatus::kFinished, "\xcb\x40\x4b\0\0\0\0\0\0", 0, 1234},
             {{1, 3}, 2, TaskStatus::kLost, "killed", 0, 0}};
  add(r);
  add(WorkerBye{{{{5, 6}, 2}}});
  add(WorkerReturn{{{{5, 7}, 1}}});
  add(Chunk{4, 10, 0, "abc"});
  add(ChunkAck{4, 3});
  return out;
}

TEST(CodecTest, RoundTripsSubmit) {
  Submit s;
  s.session = 0xfeedULL;
  s.names = {"Multiplication Service Example"};
  const std::string big(1000, 'x');  // outlives the views in `s`
  s.tasks = {{41, 0, "fields", 0, 5, 250}, {42, 0, big, 0, 0, 0}};
  std::string buf;
  encode(s, buf);
  auto decoded = decode<ToScheduler>(buf);
  ASSERT_TRUE(decoded.ok()) << decoded.error().text;
  const auto& d = std::get<Submit>(*decoded);
  EXPECT_EQ(d.session, s.session);
  ASSERT_EQ(d.names.size(), 1u);
  EXPECT_EQ(d.names[0], s.names[0]);
  ASSERT_EQ(d.tasks.size(), 2u);
  EXPECT_EQ(d.tasks[1].seq, 42u);
  EXPECT_EQ(d.tasks[1].fields, std::string(1000, 'x'));
  EXPECT_EQ(d.tasks[0].max_retries, 5u);
  EXPECT_EQ(d.tasks[0].timeout_ms, 250u);
}

TEST(CodecTest, RoundTripsAssignAndResultsToApplication) {
  Assign a;
  a.names = {"x", "y"};
  a.apps = {"app"};
  a.tasks = {{{1, 2}, 3, 1, 0, "f", 0, 9}};
  std::string buf;
  encode(a, buf);
  auto decoded = decode<ToWorker>(buf);
  ASSERT_TRUE(decoded.ok()) << decoded.error().text;
  const auto& d = std::get<Assign>(*decoded);
  ASSERT_EQ(d.tasks.size(), 1u);
  EXPECT_EQ(d.tasks[0].key, (TaskKey{1, 2}));
  EXPECT_EQ(d.tasks[0].attempt, 3u);
  EXPECT_EQ(d.names[d.tasks[0].name_index], "y");
  EXPECT_EQ(d.apps[d.tasks[0].app_index], "app");

  AppResults r;
  r.items = {{{7, 8}, 2, TaskStatus::kFailed, "it broke", 0, "worker-1", 55}};
  buf.clear();
  encode(r, buf);
  auto app = decode<ToApp>(buf);
  ASSERT_TRUE(app.ok()) << app.error().text;
  const auto& items = std::get<AppResults>(*app).items;
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].status, TaskStatus::kFailed);
  EXPECT_EQ(items[0].payload, "it broke");
  EXPECT_EQ(items[0].worker, "worker-1");
  EXPECT_EQ(items[0].run_ns, 55u);
}

TEST(CodecTest, EverySampleDecodesAndEveryTruncationIsRejected) {
  for (const auto& msg : scheduler_samples()) {
    auto d = decode<ToScheduler>(msg);
    ASSERT_TRUE(d.ok()) << d.error().text;
    for (size_t n = 0; n < msg.size(); ++n) {
      EXPECT_FALSE(decode<ToScheduler>(msg.substr(0, n)).ok()) << "prefix " << n;
    }
  }
}

TEST(CodecTest, TrailingBytesAreRejected) {
  std::string buf;
  encode(WorkerHeartbeat{1}, buf);
  buf.push_back('\x00');
  auto d = decode<ToScheduler>(buf);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, DecodeCode::kMalformed);
  EXPECT_NE(d.error().text.find("trailing"), std::string::npos);
}

TEST(CodecTest, OtherProtocolVersionHasItsOwnCode) {
  std::string buf;
  mp::Writer w(buf);
  w.array(2);
  w.uint(kVersion + 1);
  w.uint(static_cast<uint8_t>(MsgType::kAppHeartbeat));
  auto d = decode<ToScheduler>(buf);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, DecodeCode::kVersion);
  EXPECT_NE(d.error().text.find("protocol version " + std::to_string(kVersion + 1)),
            std::string::npos)
      << d.error().text;
}

TEST(CodecTest, OversizedMessageIsRejectedBeforeDecoding) {
  std::string buf;
  encode(AppHeartbeat{}, buf);
  auto d = decode<ToScheduler>(buf, buf.size() - 1);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.error().code, DecodeCode::kTooLarge);
}

TEST(CodecTest, MessageForAnotherReceiverIsRejected) {
  std::string buf;
  encode(Assign{}, buf);
  EXPECT_EQ(decode<ToScheduler>(buf).error().code, DecodeCode::kUnexpected);
  EXPECT_EQ(decode<ToApp>(buf).error().code, DecodeCode::kUnexpected);
  EXPECT_TRUE(decode<ToWorker>(buf).ok());
}

TEST(CodecTest, OutOfRangeIndexesAndValuesAreRejected) {
  Submit s;
  s.session = 1;
  s.names = {"only"};
  s.tasks = {{1, 1, "", 0, 0, 0}};
  std::string buf;
  encode(s, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());

  s.tasks = {{1, 0, "", 0, kMaxRetries + 1, 0}};
  buf.clear();
  encode(s, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());

  Assign a;
  a.names = {"x"};
  a.tasks = {{{1, 2}, 1, 0, 0, "", 0, 0}};  // no application ids for app_index 0
  buf.clear();
  encode(a, buf);
  EXPECT_FALSE(decode<ToWorker>(buf).ok());
}

TEST(CodecTest, TextOverItsLimitIsRejected) {
  const std::string long_id(kMaxAppIdBytes + 1, 'a');
  std::string buf;
  encode(AppHello{long_id, 1, 0, 0}, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());
  buf.clear();
  encode(AppHello{"", 1, 0, 0}, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());

  WorkerHello h;
  h.name = "w";
  const std::string long_name(kMaxNameBytes + 1, 's');
  h.services = {long_name};
  buf.clear();
  encode(h, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());
}

TEST(CodecTest, ChunksMustStayInsideTheirStream) {
  std::string buf;
  encode(Chunk{1, 4, 2, "abc"}, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());
  buf.clear();
  encode(Chunk{0, 4, 0, "ab"}, buf);
  EXPECT_FALSE(decode<ToScheduler>(buf).ok());
  buf.clear();
  encode(Chunk{1, 4, 2, "ab"}, buf);
  EXPECT_TRUE(decode<ToScheduler>(buf).ok());
}

TEST(CodecTest, MutatedMessagesNeverCrashTheDecoders) {
  std::mt19937_64 rng(7);
  const auto samples = scheduler_samples();
  size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string msg = samples[rng() % samples.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) msg[rng() % msg.size()] = static_cast<char>(rng());
    const bool ok = decode<ToScheduler>(msg).ok();
    (void)decode<ToApp>(msg);
    (void)decode<ToWorker>(msg);
    (void)decode<ToProgressServer>(msg);
    (void)decode<FromSlot>(msg);
    (ok ? accepted : rejected)++;
  }
  // Both outcomes occur: mutations of payload bytes still decode, structural ones do not.
  EXPECT_GT(accepted, 0u);
  EXPECT_GT(rejected, 0u);
}

TEST(CodecTest, ServiceIdsRoundTripAndRejectOtherSpellings) {
  const TaskKey key{0x00ab00cd00ef0012ULL, 98765};
  const std::string id = format_service_id(key);
  EXPECT_EQ(id, "00ab00cd00ef0012-98765");
  TaskKey back;
  ASSERT_TRUE(parse_service_id(id, &back));
  EXPECT_EQ(back, key);
  for (const char* bad : {"", "abc", "00ab00cd00ef0012", "00ab00cd00ef0012-", "00AB00CD00EF0012-1",
                          "00ab00cd00ef0012-01", "00ab00cd00ef0012-1x", "g0ab00cd00ef0012-1"}) {
    EXPECT_FALSE(parse_service_id(bad, &back)) << bad;
  }
}

TEST(CodecTest, RoundTripsProgressMessages) {
  ProgressBatch batch;
  batch.batch_seq = 9;
  batch.worker = "w1";
  batch.owners = {{77, "app-x"}};
  batch.bars.push_back(
      {{1, 2}, 3, 0, "Doing Work", "iterations", 20, 42, BarPhase::kOpen, 1500, 0, -1});
  std::string buf;
  encode(batch, buf);
  auto d = decode<ToProgressServer>(buf);
  ASSERT_TRUE(d.ok()) << d.error().text;
  const auto& b = std::get<ProgressBatch>(*d);
  EXPECT_EQ(b.batch_seq, 9u);
  ASSERT_EQ(b.owners.size(), 1u);
  EXPECT_EQ(b.owners[0].application_id, "app-x");
  ASSERT_EQ(b.bars.size(), 1u);
  EXPECT_EQ(b.bars[0].description, "Doing Work");
  EXPECT_EQ(b.bars[0].total, 42u);

  ProgressUpdate up;
  up.server_epoch = 5;
  up.snapshot = true;
  up.bars.push_back({{1, 2}, 3, 1, "x", "it", 1, 0, BarPhase::kFailed, 10, 2.5, -1});
  buf.clear();
  encode(up, buf);
  auto u = decode<ToProgressSubscriber>(buf);
  ASSERT_TRUE(u.ok()) << u.error().text;
  const auto& got = std::get<ProgressUpdate>(*u);
  EXPECT_TRUE(got.snapshot);
  EXPECT_DOUBLE_EQ(got.bars.at(0).rate, 2.5);
  EXPECT_EQ(got.bars.at(0).phase, BarPhase::kFailed);
  EXPECT_TRUE(got.bars.at(0).closed());

  buf.clear();
  encode(ProgressAck{9, 5}, buf);
  auto a = decode<ToProgressWorker>(buf);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(std::get<ProgressAck>(*a).server_epoch, 5u);
  EXPECT_FALSE(decode<ToProgressWorker>(buf.substr(0, buf.size() - 1)).ok());
}

// Writes `stream` into a socketpair in random pieces and reads frames from the other end.
std::vector<std::string> frames_through_socket(const std::string& stream, size_t max_frame,
                                               std::mt19937& rng) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  FrameBuffer fb(max_frame);
  std::vector<std::string> frames;
  size_t off = 0;
  while (off < stream.size()) {
    const size_t n = std::min<size_t>(1 + rng() % 700, stream.size() - off);
    EXPECT_EQ(::write(sv[0], stream.data() + off, n), static_cast<ssize_t>(n));
    off += n;
    EXPECT_GT(fb.read_from(sv[1]), 0);
    std::string_view body;
    for (;;) {
      auto got = fb.next(&body);
      EXPECT_TRUE(got.ok());
      if (!got.ok() || !*got) break;
      frames.emplace_back(body);
    }
  }
  ::close(sv[0]);
  ::close(sv[1]);
  return frames;
}

// What a FrameWriter queued, as one string (written through a socketpair).
std::string written(FrameWriter& fw) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  std::string out;
  while (!fw.empty()) {
    EXPECT_TRUE(fw.write_some(sv[0]));
    char buf[65536];
    const ssize_t n = ::read(sv[1], buf, sizeof buf);
    if (n > 0) out.append(buf, static_cast<size_t>(n));
  }
  for (;;) {
    char buf[65536];
    ::shutdown(sv[0], SHUT_WR);
    const ssize_t n = ::read(sv[1], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(sv[0]);
  ::close(sv[1]);
  return out;
}

TEST(SlotCodecTest, FramesSurviveArbitrarySplits) {
  FrameWriter fw;
  SlotRun run;
  const std::string big(100'000, 'z');  // written in place, not copied into the frame
  run.tasks = {{1, "svc", "fields", "id-1", 1}, {2, "svc", big, "id-2", 2}};
  fw.push(run);
  SlotResults res;
  res.items.push_back({1, TaskStatus::kFinished, "ok", 10, {}});
  res.items[0].bars.push_back({{}, 0, 2, "Doing Work", "it", 20, 42, BarPhase::kDone, 1500});
  fw.push(res);
  const std::string stream = written(fw);

  std::mt19937 rng(3);
  for (int trial = 0; trial < 20; ++trial) {
    auto frames = frames_through_socket(stream, 1 << 20, rng);
    ASSERT_EQ(frames.size(), 2u);
    auto d = decode<ToSlot>(frames[0], 1 << 20);
    ASSERT_TRUE(d.ok()) << d.error().text;
    const auto& got = std::get<SlotRun>(*d);
    ASSERT_EQ(got.tasks.size(), 2u);
    EXPECT_EQ(got.tasks[1].fields, big);
    EXPECT_EQ(got.tasks[1].attempt, 2u);
    auto r = decode<FromSlot>(frames[1], 1 << 20);
    ASSERT_TRUE(r.ok()) << r.error().text;
    const auto& item = std::get<SlotResults>(*r).items[0];
    EXPECT_EQ(item.payload, "ok");
    ASSERT_EQ(item.bars.size(), 1u);
    EXPECT_EQ(item.bars[0].description, "Doing Work");
    EXPECT_EQ(item.bars[0].count, 20u);
    EXPECT_EQ(item.bars[0].total, 42u);
    EXPECT_TRUE(item.bars[0].closed());
  }
}

TEST(SlotCodecTest, ALargeFrameArrivesInABufferItsReceiverCanKeep) {
  FrameWriter fw;
  SlotResults res;
  const std::string big(3u << 20, 'q');
  res.items.push_back({7, TaskStatus::kFinished, big, 1, {}});
  fw.push(res);
  fw.push(SlotRecalled{{1, 2}});
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
  FrameBuffer fb(8u << 20);
  std::vector<std::string> small;
  std::shared_ptr<const std::string> kept;
  std::string_view payload;
  bool shut = false;
  for (;;) {
    ASSERT_TRUE(fw.write_some(sv[0]));
    if (fw.empty() && !shut) {
      ::shutdown(sv[0], SHUT_WR);
      shut = true;
    }
    const long n = fb.read_from(sv[1]);
    if (n == 0) break;
    if (n < 0) {
      ASSERT_EQ(errno, EAGAIN);
      continue;
    }
    std::string_view body;
    while (*fb.next(&body)) {
      auto m = decode<FromSlot>(body, 8u << 20);
      ASSERT_TRUE(m.ok()) << m.error().text;
      if (auto* r = std::get_if<SlotResults>(&*m)) {
        payload = r->items.at(0).payload;
        kept = fb.take_large();
      } else {
        small.emplace_back(body);
      }
    }
  }
  ::close(sv[0]);
  ::close(sv[1]);
  ASSERT_TRUE(kept);
  EXPECT_EQ(payload.size(), big.size());
  EXPECT_EQ(payload, big);  // the view is into the kept buffer
  EXPECT_GE(payload.data(), kept->data());
  EXPECT_EQ(small.size(), 1u);
}

TEST(SlotCodecTest, OversizedFrameIsAnError) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  const char header[4] = {'\x00', '\x01', '\x00', '\x00'};  // 256 bytes announced
  ASSERT_EQ(::write(sv[0], header, 4), 4);
  FrameBuffer fb(16);
  ASSERT_EQ(fb.read_from(sv[1]), 4);
  std::string_view body;
  EXPECT_FALSE(fb.next(&body).ok());
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace
}  // namespace lrts::protocol
