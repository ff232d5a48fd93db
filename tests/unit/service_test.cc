// Services invoked directly through the registry, as a slot does.
#include <gtest/gtest.h>

#include "services/registry.hpp"
#include "services/test_services.hpp"

namespace lrts {
namespace {

class FakeContext final : public TaskContext {
 public:
  const std::string& service_id() const override { return id_; }
  uint32_t attempt() const override { return 3; }
  ProgressBar create_progress(std::string_view, uint64_t, std::string_view) override {
    return ProgressBar();
  }
  ProgressBar& progress() override { return bar_; }

 private:
  ProgressBar bar_;
  std::string id_ = "0000000000000001-5";
};

// pack_map("k1", v1, "k2", v2, ...)
template <class... Args>
std::string pack_map(const Args&... args) {
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(sizeof...(Args) / 2);
  (pk.pack(args), ...);
  return {buf.data(), buf.size()};
}

TEST(ServiceTest, RegisteredServicesAreFoundByName) {
  EXPECT_NE(services::find_service("test.echo"), nullptr);
  EXPECT_EQ(services::find_service("nope"), nullptr);
  const auto names = registered_services();
  EXPECT_NE(std::find(names.begin(), names.end(), "test.throw"), names.end());
  // LRTS_SERVICE / LRTS_SERVICE_NO_FIELDS name the service too.
  EXPECT_EQ(test_services::EchoService().service_name(), "test.echo");
  EXPECT_EQ(test_services::NoopService().service_name(), "test.noop");
}

TEST(ServiceTest, FieldsTravelByNameAndResultsComeBackTyped) {
  test_services::EchoService original;
  original.text = "hi";
  original.numbers = {1, 2, 3};
  msgpack::sbuffer fields;
  original.lrts_pack_fields(fields);

  FakeContext ctx;
  const auto* type = services::find_service("test.echo");
  ASSERT_NE(type, nullptr);
  const std::string out = type->invoke(ctx, {fields.data(), fields.size()});
  auto oh = msgpack::unpack(out.data(), out.size());
  const auto r = oh.get().as<test_services::EchoResult>();
  EXPECT_EQ(r.text, "hi");
  EXPECT_EQ(r.numbers, (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(r.service_id, "0000000000000001-5");
  EXPECT_EQ(r.attempt, 3u);
}

TEST(ServiceTest, MissingFieldsKeepTheirDefaults) {
  FakeContext ctx;
  const std::string out = services::find_service("test.echo")->invoke(ctx, pack_map("text", "x"));
  auto oh = msgpack::unpack(out.data(), out.size());
  EXPECT_TRUE(oh.get().as<test_services::EchoResult>().numbers.empty());
}

TEST(ServiceTest, UnknownFieldIsNamed) {
  FakeContext ctx;
  try {
    services::find_service("test.echo")->invoke(ctx, pack_map("txt", "x"));
    FAIL() << "expected FieldsError";
  } catch (const FieldsError& e) {
    EXPECT_STREQ(e.what(), "unknown field 'txt' (the service declares: text, numbers)");
  }
}

TEST(ServiceTest, FieldOfTheWrongTypeIsNamed) {
  FakeContext ctx;
  try {
    services::find_service("test.sleep")->invoke(ctx, pack_map("ms", 1, "value", "x"));
    FAIL() << "expected FieldsError";
  } catch (const FieldsError& e) {
    EXPECT_STREQ(e.what(), "field 'value' has the wrong type (got \"x\")");
  }
}

TEST(ServiceTest, FieldsThatAreNotAMapAreRejected) {
  FakeContext ctx;
  msgpack::sbuffer buf;
  msgpack::pack(buf, 5);
  EXPECT_THROW(services::find_service("test.echo")->invoke(ctx, {buf.data(), buf.size()}),
               FieldsError);
  EXPECT_THROW(services::find_service("test.echo")->invoke(ctx, "\xc1"), FieldsError);
}

TEST(ServiceTest, ExceptionsFromRunPropagate) {
  FakeContext ctx;
  try {
    services::find_service("test.throw")->invoke(ctx, pack_map("message", "bad"));
    FAIL() << "expected the service's exception";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "bad");
  }
}

TEST(ServiceTest, VoidRunGivesNil) {
  FakeContext ctx;
  const std::string out = services::find_service("test.noop")->invoke(ctx, "");
  EXPECT_EQ(out, "\xc0");
}

TEST(ServiceResultTest, TypedAccessAndJson) {
  msgpack::sbuffer buf;
  msgpack::pack(buf, 54.0);
  ServiceResult ok("id-1", ServiceStatus::finished, {buf.data(), buf.size()}, 1, "w",
                   std::chrono::nanoseconds(1500));
  EXPECT_EQ(ok.service_result<double>(), 54.0);
  EXPECT_EQ(ok.service_result<int>(), 54);
  EXPECT_EQ(ok.service_result_json(), "54");
  EXPECT_THROW(ok.service_result<std::string>(), ResultError);
  EXPECT_EQ(ok.to_json(),
            R"({"service_id":"id-1","status":"finished","service_result":54,"attempt":1,)"
            R"("worker":"w","run_time_ms":0.002})");

  ServiceResult failed("id-2", ServiceStatus::failed, "it broke", 2, "", {});
  EXPECT_FALSE(failed.ok());
  EXPECT_EQ(failed.error(), "it broke");
  EXPECT_THROW(failed.service_result<double>(), ResultError);
  EXPECT_NE(failed.to_json().find(R"("error":"it broke")"), std::string::npos);
}

}  // namespace
}  // namespace lrts
