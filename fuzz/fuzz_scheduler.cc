// The scheduler's core fed with what hostile peers may send: each message of the input is
// [peer byte][length byte][bytes], decoded as the server would and handed to the core, with the
// clock moving on. The peer byte also picks the sender's key (none, a worker key, one of two
// application keys, a viewer, an admin), as --auth would. The core never crashes and its invariant
// checks (LRTS_CHECK) hold.
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/codec.hpp"
#include "scheduler/blob_store.hpp"
#include "scheduler/core.hpp"

namespace {

class NullTransport final : public lrts::scheduler::Transport {
 public:
  void send_app(const lrts::scheduler::PeerId&, const lrts::protocol::ToApp& m) override {
    buf_.clear();
    lrts::protocol::encode(m, buf_);
  }
  void send_worker(const lrts::scheduler::PeerId&, const lrts::protocol::ToWorker& m) override {
    buf_.clear();
    lrts::protocol::encode(m, buf_);
  }

 private:
  std::string buf_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace std::chrono_literals;
  NullTransport transport;
  lrts::scheduler::MemoryBlobStore blobs;
  lrts::scheduler::CoreOptions options;
  options.epoch = 1;
  options.worker_timeout = 2s;
  options.app_timeout = 2s;
  options.app_grace = 5s;
  options.hoard_timeout = 3s;
  options.max_worker_capacity = 64;
  static const lrts::scheduler::Caller kCallers[] = {{},
                                                     {"w1", true, false, false, false},
                                                     {"a1", false, true, false, false},
                                                     {"a2", false, true, false, false},
                                                     {"v1", false, false, true, false},
                                                     {"op", false, false, true, true}};
  lrts::scheduler::SchedulerCore core(options, transport, blobs);
  lrts::TimePoint now{};
  core.restore({}, now);
  size_t at = 0;
  while (at + 2 <= size) {
    const std::string peer(1, static_cast<char>('a' + data[at] % 8));
    const lrts::scheduler::Caller& caller = kCallers[(data[at] / 8) % 6];
    const size_t len = data[at + 1];
    at += 2;
    const std::string_view bytes(reinterpret_cast<const char*>(data + at),
                                 std::min(len, size - at));
    at += bytes.size();
    auto msg = lrts::protocol::decode<lrts::protocol::ToScheduler>(bytes, 1u << 20);
    if (msg) {
      core.on_message(peer, *msg, now, caller);
    } else {
      core.on_bad_message(peer, msg.error(), now);
    }
    now += std::chrono::milliseconds(data[at - 1 - bytes.size()] % 8 * 100);
    core.on_tick(now);
    core.flush(now);
  }
  now += 60s;
  core.on_tick(now);
  core.flush(now);
  return 0;
}
