// A slot process on its own, spoken to over its socket as the worker does: tasks handed out and
// recalled at every moment must each come back exactly once, as a result or as recalled.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <map>

#include "common/process.hpp"
#include "common/unique_fd.hpp"
#include "protocol/codec.hpp"
#include "protocol/framing.hpp"
#include "protocol/slot_messages.hpp"
#include "services/test_services.hpp"
#include "support/harness.hpp"

namespace lrts::testing {
namespace {

class SlotProcess {
 public:
  SlotProcess() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return;
    fd_.reset(sv[0]);
    UniqueFd theirs(sv[1]);
    SpawnOptions so;
    so.argv = {lrts_bin(), "--lrts-slot", "3", "--service-lib", test_services_lib()};
    so.fds = {{theirs.get(), 3}};
    so.new_process_group = true;
    if (auto child = ChildProcess::spawn(so)) proc_ = std::move(*child);
  }

  template <class M>
  bool send(const M& m) {
    protocol::FrameWriter out;
    out.push(m);
    return out.write_all(fd_.get());
  }

  // The next message from the slot, or nothing within `timeout`.
  std::optional<protocol::FromSlot> next(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      std::string_view body;
      auto got = in_.next(&body);
      if (!got) return std::nullopt;
      if (*got) {
        // Decoded from a copy: views into the read buffer end with the next read.
        held_.emplace_back(body);
        auto msg = protocol::decode<protocol::FromSlot>(held_.back(), 1u << 20);
        if (!msg) return std::nullopt;
        return *msg;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_.get(), POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      if (in_.read_from(fd_.get()) <= 0) return std::nullopt;
    }
  }

  bool started() const { return fd_.valid() && proc_.pid() > 0; }

 private:
  UniqueFd fd_;
  ChildProcess proc_;
  protocol::FrameBuffer in_{1u << 20};
  std::deque<std::string> held_;
};

TEST(SlotTest, TasksRecalledAtEveryMomentComeBackExactlyOnce) {
  SlotProcess slot;
  ASSERT_TRUE(slot.started());
  auto hello = slot.next(20s);
  ASSERT_TRUE(hello && std::holds_alternative<protocol::SlotHello>(*hello));
  ASSERT_TRUE(std::get<protocol::SlotHello>(*hello).error.empty());

  constexpr uint32_t kRounds = 3000;
  std::map<uint32_t, int> answers;  // ref -> times answered
  for (uint32_t round = 0; round < kRounds; ++round) {
    // Two tasks, the second recalled at once: the recall meets it waiting, starting, running or
    // done, and it must come back exactly once either way. The first must always finish.
    const uint32_t a = 2 * round, b = 2 * round + 1;
    protocol::SlotRun run;
    for (uint32_t ref : {a, b}) {
      run.tasks.push_back({ref, "test.noop", "\x80", "id", 1});
    }
    ASSERT_TRUE(slot.send(run));
    // The recall follows after 0 to 63 µs, so over the rounds it lands at every point of the
    // first task's run and of the slot's turn to the second one.
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(round % 64);
    while (std::chrono::steady_clock::now() < until) {
    }
    ASSERT_TRUE(slot.send(protocol::SlotRecall{{b}}));
    while (answers[a] == 0 || answers[b] == 0) {
      auto msg = slot.next(10s);
      ASSERT_TRUE(msg) << "round " << round << ": task " << (answers[a] ? b : a)
                       << " never came back";
      if (auto* r = std::get_if<protocol::SlotResults>(&*msg)) {
        for (const auto& item : r->items) {
          EXPECT_EQ(item.status, protocol::TaskStatus::kFinished) << item.payload;
          ++answers[item.ref];
        }
      } else if (auto* back = std::get_if<protocol::SlotRecalled>(&*msg)) {
        for (uint32_t ref : back->refs) ++answers[ref];
      }
    }
    ASSERT_EQ(answers[a], 1) << "round " << round;
    ASSERT_EQ(answers[b], 1) << "round " << round;
  }
}

TEST(SlotTest, AResultDoesNotWaitForTheLongTaskThatRunsAfterIt) {
  SlotProcess slot;
  ASSERT_TRUE(slot.started());
  ASSERT_TRUE(slot.next(20s));  // hello
  test_services::SleepService long_one;
  long_one.ms = 1500;
  msgpack::sbuffer fields;
  long_one.lrts_pack_fields(fields);
  protocol::SlotRun run;
  run.tasks.push_back({1, "test.noop", "\x80", "quick", 1});
  run.tasks.push_back({2, "test.sleep", std::string_view(fields.data(), fields.size()), "long", 1});
  ASSERT_TRUE(slot.send(run));
  // The quick task's result comes on its own, while the long one still runs.
  auto first = slot.next(20s);
  ASSERT_TRUE(first && std::holds_alternative<protocol::SlotResults>(*first));
  const auto& items = std::get<protocol::SlotResults>(*first).items;
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].ref, 1u);
  auto second = slot.next(20s);
  ASSERT_TRUE(second && std::holds_alternative<protocol::SlotResults>(*second));
  EXPECT_EQ(std::get<protocol::SlotResults>(*second).items.at(0).ref, 2u);
}

}  // namespace
}  // namespace lrts::testing
