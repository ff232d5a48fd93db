#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "protocol/messages.hpp"
#include "protocol/msgpack_io.hpp"
#include "protocol/slot_codec.hpp"

namespace lrts::protocol {
namespace {

std::vector<std::string> sample_messages() {
  std::vector<std::string> out;
  auto add = [&](auto&& encode_fn) {
    out.emplace_back();
    encode_fn(out.back());
  };
  add([](std::string& b) { encode(AppHello{"app-1", 77, 5000}, b); });
  add([](std::string& b) {
    Submit s;
    s.session = 77;
    s.names = {"svc.a", "svc.b"};
    s.tasks = {{1, 0, "\x81\xa1" "a\x01", 3, 0}, {2, 1, "", 0, 1000}};
    encode(s, b);
  });
  add([](std::string& b) { encode(KeyList{MsgType::kAckResults, {{1, 2}, {3, 4}}}, b); });
  add([](std::string& b) { encode(Empty{MsgType::kAppHeartbeat}, b); });
  add([](std::string& b) {
    WorkerHello h;
    h.worker_uid = 9;
    h.name = "w";
    h.slots = 2;
    h.capacity = 4;
    h.services = {"svc.a"};
    h.running = {{{1, 2}, 1}};
    encode(h, b);
  });
  add([](std::string& b) { encode(WorkerHeartbeat{12}, b); });
  add([](std::string& b) {
    Results r;
    r.capacity = 3;
    r.items = {{{1, 2}, 1, TaskStatus::kFinished, "\xcb\x40\x4b\0\0\0\0\0\0", "", 1234},
               {{1, 3}, 2, TaskStatus::kLost, "killed", "", 0}};
    encode(r, MsgType::kWorkerResults, b);
  });
  add([](std::string& b) { encode(WorkerBye{{{{5, 6}, 2}}}, b); });
  return out;
}

TEST(CodecTest, RoundTripsSubmit) {
  Submit s;
  s.session = 0xfeedULL;
  s.names = {"Multiplication Service Example"};
  const std::string big(1000, 'x');  // outlives the views in `s`
  s.tasks = {{41, 0, "fields", 5, 250}, {42, 0, big, 0, 0}};
  std::string buf;
  encode(s, buf);
  auto decoded = decode_to_scheduler(buf);
  ASSERT_TRUE(decoded.ok()) << decoded.error();
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
  a.tasks = {{{1, 2}, 3, 1, "f", 9}};
  std::string buf;
  encode(a, buf);
  auto decoded = decode_to_worker(buf);
  ASSERT_TRUE(decoded.ok()) << decoded.error();
  const auto& d = std::get<Assign>(*decoded);
  ASSERT_EQ(d.tasks.size(), 1u);
  EXPECT_EQ(d.tasks[0].key, (TaskKey{1, 2}));
  EXPECT_EQ(d.tasks[0].attempt, 3u);
  EXPECT_EQ(d.names[d.tasks[0].name_index], "y");

  Results r;
  r.items = {{{7, 8}, 2, TaskStatus::kFailed, "it broke", "worker-1", 55}};
  buf.clear();
  encode(r, MsgType::kResults, buf);
  auto app = decode_to_app(buf);
  ASSERT_TRUE(app.ok()) << app.error();
  const auto& items = std::get<Results>(*app).items;
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].status, TaskStatus::kFailed);
  EXPECT_EQ(items[0].payload, "it broke");
  EXPECT_EQ(items[0].worker, "worker-1");
  EXPECT_EQ(items[0].run_ns, 55u);
}

TEST(CodecTest, EverySampleDecodesAndEveryTruncationIsRejected) {
  for (const auto& msg : sample_messages()) {
    ASSERT_TRUE(decode_to_scheduler(msg).ok()) << decode_to_scheduler(msg).error();
    for (size_t n = 0; n < msg.size(); ++n) {
      EXPECT_FALSE(decode_to_scheduler(msg.substr(0, n)).ok()) << "prefix " << n;
    }
  }
}

TEST(CodecTest, TrailingBytesAreRejected) {
  std::string buf;
  encode(WorkerHeartbeat{1}, buf);
  buf.push_back('\x00');
  auto d = decode_to_scheduler(buf);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("trailing"), std::string::npos);
}

TEST(CodecTest, OtherProtocolVersionIsNamedInTheError) {
  std::string buf;
  mp::Writer w(buf);
  w.array(2);
  w.uint(kVersion + 1);
  w.uint(static_cast<uint8_t>(MsgType::kAppHeartbeat));
  auto d = decode_to_scheduler(buf);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("protocol version 2"), std::string::npos) << d.error();
}

TEST(CodecTest, OversizedMessageIsRejectedBeforeDecoding) {
  std::string buf;
  encode(Empty{MsgType::kAppHeartbeat}, buf);
  auto d = decode_to_scheduler(buf, buf.size() - 1);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.error().find("exceeds the limit"), std::string::npos);
}

TEST(CodecTest, MessageForAnotherPeerIsRejected) {
  std::string buf;
  encode(Assign{}, buf);
  EXPECT_FALSE(decode_to_scheduler(buf).ok());
  EXPECT_FALSE(decode_to_app(buf).ok());
  EXPECT_TRUE(decode_to_worker(buf).ok());
}

TEST(CodecTest, OutOfRangeNameIndexIsRejected) {
  Submit s;
  s.session = 1;
  s.names = {"only"};
  s.tasks = {{1, 1, "", 0, 0}};
  std::string buf;
  encode(s, buf);
  EXPECT_FALSE(decode_to_scheduler(buf).ok());
}

TEST(CodecTest, MutatedMessagesNeverCrashTheDecoders) {
  std::mt19937_64 rng(7);
  const auto samples = sample_messages();
  size_t accepted = 0, rejected = 0;
  for (int i = 0; i < 50000; ++i) {
    std::string msg = samples[rng() % samples.size()];
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) msg[rng() % msg.size()] = static_cast<char>(rng());
    const bool ok = decode_to_scheduler(msg).ok();
    (void)decode_to_app(msg);
    (void)decode_to_worker(msg);
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
  batch.bars.push_back({{1, 2}, 3, 0, "Doing Work", "iterations", 20, 42, false, 1500, 0, -1});
  std::string buf;
  encode(batch, buf);
  auto d = decode_to_progress_server(buf);
  ASSERT_TRUE(d.ok()) << d.error();
  const auto& b = std::get<ProgressBatch>(*d);
  EXPECT_EQ(b.batch_seq, 9u);
  ASSERT_EQ(b.bars.size(), 1u);
  EXPECT_EQ(b.bars[0].description, "Doing Work");
  EXPECT_EQ(b.bars[0].total, 42u);

  ProgressUpdate up;
  up.server_epoch = 5;
  up.snapshot = true;
  up.bars.push_back({{1, 2}, 3, 1, "x", "it", 1, 0, true, 10, 2.5, -1});
  buf.clear();
  encode(up, buf);
  auto u = decode_progress_update(buf);
  ASSERT_TRUE(u.ok()) << u.error();
  EXPECT_TRUE(u->snapshot);
  EXPECT_DOUBLE_EQ(u->bars.at(0).rate, 2.5);
  EXPECT_TRUE(u->bars.at(0).closed);

  buf.clear();
  encode(ProgressAck{9, 5}, buf);
  auto a = decode_progress_ack(buf);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->server_epoch, 5u);
  EXPECT_FALSE(decode_progress_ack(buf.substr(0, buf.size() - 1)).ok());
}

TEST(SlotCodecTest, FramesSurviveArbitrarySplits) {
  std::string stream;
  SlotRun run;
  run.tasks = {{1, "svc", "fields", "id-1", 1}, {2, "svc", std::string(5000, 'z'), "id-2", 2}};
  encode_frame(run, stream);
  SlotResults res;
  res.items.push_back({1, TaskStatus::kFinished, "ok", 10, {}});
  res.items[0].bars.push_back({{}, 0, 2, "Doing Work", "it", 20, 42, true, 1500});
  encode_frame(res, stream);

  std::mt19937 rng(3);
  for (int trial = 0; trial < 50; ++trial) {
    FrameBuffer fb(1 << 20);
    std::vector<std::string> frames;
    size_t off = 0;
    while (off < stream.size()) {
      const size_t n = std::min<size_t>(1 + rng() % 700, stream.size() - off);
      std::memcpy(fb.prepare(n), stream.data() + off, n);
      fb.commit(n);
      off += n;
      std::string_view body;
      while (*fb.next(&body)) frames.emplace_back(body);
    }
    ASSERT_EQ(frames.size(), 2u);
    auto d = decode_to_slot(frames[0], 1 << 20);
    ASSERT_TRUE(d.ok()) << d.error();
    ASSERT_EQ(d->tasks.size(), 2u);
    EXPECT_EQ(d->tasks[1].fields.size(), 5000u);
    EXPECT_EQ(d->tasks[1].attempt, 2u);
    auto r = decode_from_slot(frames[1], 1 << 20);
    ASSERT_TRUE(r.ok()) << r.error();
    const auto& item = std::get<SlotResults>(*r).items[0];
    EXPECT_EQ(item.payload, "ok");
    ASSERT_EQ(item.bars.size(), 1u);
    EXPECT_EQ(item.bars[0].description, "Doing Work");
    EXPECT_EQ(item.bars[0].count, 20u);
    EXPECT_EQ(item.bars[0].total, 42u);
    EXPECT_TRUE(item.bars[0].closed);
  }
}

TEST(SlotCodecTest, OversizedFrameIsAnError) {
  FrameBuffer fb(16);
  const char header[4] = {'\x00', '\x01', '\x00', '\x00'};  // 256 bytes announced
  std::memcpy(fb.prepare(4), header, 4);
  fb.commit(4);
  std::string_view body;
  EXPECT_FALSE(fb.next(&body).ok());
}

}  // namespace
}  // namespace lrts::protocol
