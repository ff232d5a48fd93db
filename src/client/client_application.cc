// ClientApplication.
//
// DESIGN
// User threads and one background I/O thread share a small state under `mu`: the outbox of new
// submissions, the set of tasks waiting for a result, and the results not yet handed out. The
// I/O thread alone owns the ZeroMQ socket. schedule_service takes the lock, appends, and wakes
// the I/O thread through an eventfd only when the outbox was empty, so a burst of a million
// calls costs a million appends and a handful of wake-ups; the I/O thread sends the outbox in
// batches.
//
// Reliability: every submission stays in `unacked_` (I/O thread only) until the scheduler
// acknowledges it (or its result arrives). Whenever the scheduler (re)welcomes us — first
// connect, or after it restarted and asked us to say hello again — everything unacknowledged is
// sent again; the scheduler ignores keys it already has. Results are acknowledged after they are
// stored, and a result for a key no longer pending is a duplicate and is dropped, so each result
// is handed out once.
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <limits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "net/endpoint.hpp"
#include "common/unique_fd.hpp"
#include "net/zmq_socket.hpp"
#include "lrts/client.hpp"
#include "tui/view.hpp"
#include "protocol/codec.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts {

using protocol::TaskKey;
using protocol::TaskKeyHash;

namespace {

constexpr size_t kMaxTasksPerSubmit = 4096;
constexpr size_t kMaxBytesPerSubmit = 4u << 20;
constexpr Duration kHelloRetry = seconds(2);
constexpr Duration kSubscribeRenewal = seconds(2);
constexpr size_t kMaxTasksWithProgress = 100'000;

struct Submission {
  uint64_t seq = 0;
  std::string name;
  std::string fields;
  uint32_t max_retries = 0;
  uint32_t timeout_ms = 0;
  bool acked = false;
};

uint64_t random_u64() {
  std::random_device rd;
  uint64_t v = 0;
  while (v == 0) v = (uint64_t{rd()} << 32) | rd();
  return v;
}

TaskKey parse_id(const std::string& id) {
  TaskKey key;
  if (!protocol::parse_service_id(id, &key)) {
    throw std::invalid_argument("'" + id + "' is not an lrts service id");
  }
  return key;
}

ServiceResult to_result(const protocol::AppResult& item) {
  const auto status = static_cast<uint8_t>(item.status) <= 3
                          ? static_cast<ServiceStatus>(item.status)
                          : ServiceStatus::failed;
  return ServiceResult(protocol::format_service_id(item.key), status, std::string(item.payload),
                       item.attempt, std::string(item.worker),
                       std::chrono::nanoseconds(static_cast<int64_t>(item.run_ns)));
}

}  // namespace

struct CompletionRange::State {
  ClientApplication::Impl* impl = nullptr;
  std::unordered_set<TaskKey, TaskKeyHash> wanted;  // not yet arrived
  std::deque<ServiceResult> arrived;                // arrived, not yet returned
  size_t remaining = 0;
  TimePoint deadline = TimePoint::max();
};

struct ClientApplication::Impl {
  ApplicationInformation info;
  std::string app_id;
  uint64_t session = random_u64();

  mutable std::mutex mu;
  std::condition_variable cv;
  uint64_t next_seq = 1;
  std::vector<Submission> outbox;
  std::vector<TaskKey> cancels;
  std::unordered_set<TaskKey, TaskKeyHash> pending;
  std::unordered_map<TaskKey, ServiceResult, TaskKeyHash> ready;
  std::vector<CompletionRange::State*> subscriptions;
  // Progress: the latest bars per task (bounded), callbacks, the terminal view.
  struct TaskBars {
    uint32_t attempt = 0;
    std::vector<ProgressSnapshot> bars;  // by bar number
  };
  std::unordered_map<TaskKey, TaskBars, TaskKeyHash> bars;
  std::deque<TaskKey> bars_order;  // first seen first
  std::vector<ProgressCallback> progress_callbacks;
  std::unique_ptr<tui::TerminalView> view;
  uint64_t scheduled = 0;
  uint64_t completed = 0;
  size_t unacked = 0;  // submissions sent but not yet acknowledged (mirrors the I/O thread)
  bool started = false;
  bool detach = false;  // stop without telling the scheduler to drop our work
  bool stopping = false;
  bool stopped = false;
  bool connected = false;
  std::string fatal;  // set when the connection cannot work at all

  UniqueFd wake{::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)};
  std::thread io;

  void wake_io() const {
    const uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake.get(), &one, sizeof one);
  }

  // Throws if waiting can never succeed. Call with mu held.
  void check_usable() const {
    if (!fatal.empty()) throw std::runtime_error("lrts application: " + fatal);
    if (stopped || stopping) throw std::runtime_error("lrts application is stopped");
    if (!started) throw std::logic_error("lrts application: call start_application() first");
  }

  // Blocks until pred() or the deadline. Call with the lock held.
  template <class Pred>
  void wait_until(std::unique_lock<std::mutex>& lock, TimePoint deadline, Pred pred,
                  const char* what) {
    while (!pred()) {
      check_usable();
      if (deadline == TimePoint::max()) {
        cv.wait(lock);
      } else if (cv.wait_until(lock, deadline) == std::cv_status::timeout && !pred()) {
        throw TimeoutError(std::string("timed out waiting for ") + what);
      }
    }
  }

  void io_main();
};

// ---- the I/O thread ---------------------------------------------------------------------------

namespace {

class IoLoop {
 public:
  explicit IoLoop(ClientApplication::Impl& impl) : impl_(impl) {}

  void run() {
    auto ep = net::connect_endpoint(impl_.info.scheduler_address, impl_.info.scheduler_port);
    if (!ep) return fail(ep.error());
    dealer_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    dealer_.set_int(ZMQ_SNDHWM, 0);
    dealer_.set_int(ZMQ_RCVHWM, 0);
    dealer_.set_int(ZMQ_RECONNECT_IVL, 100);
    dealer_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    if (auto s = dealer_.connect(ep->zmq); !s) return fail(s.error());
    send_hello(Clock::now());
    sessions_.insert(impl_.session);
    if (impl_.info.track_progress || impl_.info.show_progress) connect_progress();

    net::ZmqFrame frame;
    for (;;) {
      TimePoint now = Clock::now();
      zmq_pollitem_t items[3] = {{dealer_.get(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, impl_.wake.get(), ZMQ_POLLIN, 0},
                                 {progress_.get(), 0, ZMQ_POLLIN, 0}};
      const TimePoint deadline = std::min(next_heartbeat_, next_subscribe_);
      const long timeout = std::max<long>(0, to_ms(deadline - now) + 1);
      if (zmq_poll(items, progress_.get() ? 3 : 2, timeout) < 0 && zmq_errno() != EINTR) {
        return fail("poll failed: " + net::zmq_error_text());
      }
      now = Clock::now();
      if (items[1].revents & ZMQ_POLLIN) {
        uint64_t v;
        [[maybe_unused]] auto n = ::read(impl_.wake.get(), &v, sizeof v);
      }
      if (!take_work()) break;  // stopping
      for (int n = 0; n < 1024 && dealer_.recv(frame); ++n) on_message(frame.view(), now);
      if (progress_.get()) {
        for (int n = 0; n < 256 && progress_.recv(frame); ++n) on_progress(frame.view());
        if (now >= next_subscribe_) subscribe(now);
      }
      if (now >= next_heartbeat_) heartbeat(now);
    }
    if (impl_.detach) return;
    // Stopping: tell the scheduler to drop our work; give the message a moment to leave.
    buf_.clear();
    protocol::encode(protocol::AppBye{}, buf_);
    dealer_.send(buf_);
    dealer_.set_int(ZMQ_LINGER, 500);
  }

 private:
  void fail(const std::string& why) {
    LRTS_ERROR("{}", why);
    std::lock_guard lock(impl_.mu);
    impl_.fatal = why;
    impl_.cv.notify_all();
  }

  void connect_progress() {
    auto ep = net::connect_endpoint(impl_.info.progress_server_address, impl_.info.progress_server_port);
    if (!ep) {
      LRTS_WARN("progress: {}; progress is not followed", ep.error());
      return;
    }
    progress_ = net::ZmqSocket(ctx_, ZMQ_DEALER);
    progress_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    progress_.set_int(ZMQ_SNDHWM, 2);  // subscriptions wait for the server; at most two queue
    progress_.set_int(ZMQ_RECONNECT_IVL, 200);
    progress_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    if (auto s = progress_.connect(ep->zmq); !s) {
      LRTS_WARN("progress: {}", s.error());
      progress_.close();
      return;
    }
    next_subscribe_ = Clock::now();
  }

  // (Re)subscribes to our sessions' bars; renewed regularly so a restarted server learns of us.
  void subscribe(TimePoint now) {
    next_subscribe_ = now + kSubscribeRenewal;
    protocol::Subscribe sub;
    sub.application_id = impl_.app_id;
    sub.sessions.assign(sessions_.begin(), sessions_.end());
    buf_.clear();
    protocol::encode(sub, buf_);
    progress_.send(buf_);
  }

  void on_progress(std::string_view bytes) {
    auto decoded = protocol::decode<protocol::ToProgressSubscriber>(bytes);
    if (!decoded) {
      LRTS_WARN("progress: dropped a bad message: {}", decoded.error().text);
      return;
    }
    const auto* update = &std::get<protocol::ProgressUpdate>(*decoded);
    std::vector<ProgressSnapshot> changed;
    changed.reserve(update->bars.size());
    for (const auto& b : update->bars) {
      changed.push_back(tui::to_snapshot(b));
    }
    std::vector<ClientApplication::ProgressCallback> callbacks;
    {
      std::lock_guard lock(impl_.mu);
      for (size_t i = 0; i < changed.size(); ++i) store_bar(update->bars[i].key, changed[i]);
      callbacks = impl_.progress_callbacks;
      if (impl_.view) impl_.view->update(changed);
    }
    impl_.cv.notify_all();  // stop_application may wait for bars to settle
    for (const auto& cb : callbacks) cb(changed);
  }

  // Call with mu held.
  void store_bar(const TaskKey& key, const ProgressSnapshot& p) {
    auto [it, fresh] = impl_.bars.try_emplace(key);
    auto& tb = it->second;
    if (fresh) {
      impl_.bars_order.push_back(key);
      while (impl_.bars.size() > kMaxTasksWithProgress && !impl_.bars_order.empty()) {
        impl_.bars.erase(impl_.bars_order.front());
        impl_.bars_order.pop_front();
      }
    }
    if (p.attempt < tb.attempt) return;
    if (p.attempt > tb.attempt) {
      tb.bars.clear();  // a retry starts its bars again
      tb.attempt = p.attempt;
    }
    if (tb.bars.size() <= p.bar) tb.bars.resize(static_cast<size_t>(p.bar) + 1);
    tb.bars[p.bar] = p;
  }

  // Moves new submissions and cancellations out of the shared state and sends them.
  bool take_work() {
    std::vector<TaskKey> cancels;
    {
      std::lock_guard lock(impl_.mu);
      if (impl_.stopping) return false;
      fresh_.swap(impl_.outbox);
      cancels.swap(impl_.cancels);
      impl_.unacked += fresh_.size();
    }
    if (!fresh_.empty()) {
      const size_t first = unacked_.size();
      if (unacked_.empty()) base_seq_ = fresh_.front().seq;
      for (auto& s : fresh_) unacked_.push_back(std::move(s));
      unacked_count_ += fresh_.size();
      fresh_.clear();
      send_submissions(first);
    }
    if (!cancels.empty()) {
      cancels_.insert(cancels.begin(), cancels.end());  // until their results arrive
      buf_.clear();
      protocol::encode(protocol::Cancel{std::move(cancels)}, buf_);
      dealer_.send(buf_);
    }
    return true;
  }

  // Sends unacked_[from...] in batches.
  void send_submissions(size_t from) {
    protocol::Submit msg;
    msg.session = impl_.session;
    size_t i = from;
    while (i < unacked_.size()) {
      msg.names.clear();
      msg.tasks.clear();
      size_t bytes = 0;
      for (; i < unacked_.size() && msg.tasks.size() < kMaxTasksPerSubmit &&
             bytes < kMaxBytesPerSubmit;
           ++i) {
        const Submission& s = unacked_[i];
        if (s.acked) continue;
        uint32_t name = 0;
        while (name < msg.names.size() && msg.names[name] != s.name) ++name;
        if (name == msg.names.size()) msg.names.push_back(s.name);
        msg.tasks.push_back({s.seq, name, s.fields, 0, s.max_retries, s.timeout_ms});
        bytes += s.fields.size() + 16;
      }
      if (msg.tasks.empty()) continue;
      buf_.clear();
      protocol::encode(msg, buf_);
      dealer_.send(buf_);
    }
  }

  void mark_acked(uint64_t seq) {
    if (seq < base_seq_ || seq - base_seq_ >= unacked_.size()) return;
    Submission& s = unacked_[seq - base_seq_];
    if (s.acked) return;
    s.acked = true;
    --unacked_count_;
    while (!unacked_.empty() && unacked_.front().acked) {
      unacked_.pop_front();
      ++base_seq_;
    }
  }

  void publish_unacked() {
    std::lock_guard lock(impl_.mu);
    impl_.unacked = unacked_count_;
    impl_.cv.notify_all();
  }

  void send_hello(TimePoint now) {
    protocol::AppHello hello;
    hello.application_id = impl_.app_id;
    hello.session = impl_.session;
    hello.grace_ms =
        static_cast<uint64_t>(std::max<int64_t>(0, impl_.info.disconnect_grace.count()));
    hello.max_message = protocol::kDefaultMaxMessageBytes;
    buf_.clear();
    protocol::encode(hello, buf_);
    dealer_.send(buf_);
    last_hello_ = now;
    welcomed_ = false;
    next_heartbeat_ = now + heartbeat_;
  }

  void heartbeat(TimePoint now) {
    next_heartbeat_ = now + heartbeat_;
    // The scheduler answers one heartbeat in ten: silence past three of those means trouble.
    if (now - last_heard_ > std::max<Duration>(30 * heartbeat_, seconds(30))) set_connected(false);
    if (!welcomed_ && now - last_hello_ >= kHelloRetry) {
      send_hello(now);
      return;
    }
    buf_.clear();
    protocol::encode(protocol::AppHeartbeat{}, buf_);
    dealer_.send(buf_);
  }

  void set_connected(bool c) {
    std::lock_guard lock(impl_.mu);
    if (impl_.connected == c) return;
    impl_.connected = c;
    impl_.cv.notify_all();
    if (c) {
      LRTS_INFO("connected to the scheduler");
    } else {
      LRTS_WARN("scheduler not answering; work stays queued here until it does");
    }
  }

  void on_message(std::string_view bytes, TimePoint now) {
    auto decoded = protocol::decode<protocol::ToApp>(bytes);
    if (!decoded) {
      LRTS_WARN("dropped a bad message from the scheduler: {}", decoded.error().text);
      return;
    }
    last_heard_ = now;
    auto& msg = *decoded;
    if (auto* w = std::get_if<protocol::AppWelcome>(&msg)) {
      if (!w->known && ever_welcomed_) fail_forgotten();
      ever_welcomed_ = true;
      welcomed_ = true;
      epoch_ = w->scheduler_epoch;
      if (w->heartbeat_ms > 0) {
        heartbeat_ = milliseconds(w->heartbeat_ms);
        next_heartbeat_ = std::min(next_heartbeat_, now + heartbeat_);
      }
      if (!w->outstanding.empty()) {
        std::lock_guard lock(impl_.mu);
        for (const auto& key : w->outstanding) {
          if (!impl_.ready.count(key)) impl_.pending.insert(key);
          if (sessions_.insert(key.session).second && progress_.get()) next_subscribe_ = now;
        }
        LRTS_INFO("scheduler holds {} task(s) from an earlier run of this application",
                  w->outstanding.size());
      }
      set_connected(true);  // after the recovered ids are known
      send_submissions(0);  // whatever it may not have: it ignores what it has
      if (!cancels_.empty()) {  // cancels may have been lost with the connection
        buf_.clear();
        protocol::encode(protocol::Cancel{{cancels_.begin(), cancels_.end()}},
                         buf_);
        dealer_.send(buf_);
      }
    } else if (auto* ack = std::get_if<protocol::SubmitAck>(&msg)) {
      if (ack->session == impl_.session) {
        for (uint64_t seq : ack->seqs) mark_acked(seq);
        publish_unacked();
      }
    } else if (auto* results = std::get_if<protocol::AppResults>(&msg)) {
      on_results(*results);
    } else if (auto* hb = std::get_if<protocol::HeartbeatAck>(&msg)) {
      set_connected(true);
      if (hb->scheduler_epoch != epoch_ && now - last_hello_ > milliseconds(500)) send_hello(now);
    } else if (auto* e = std::get_if<protocol::ErrorMsg>(&msg)) {
      if (e->code == protocol::ErrorCode::kHelloRequired) {
        if (welcomed_ || now - last_hello_ > milliseconds(500)) send_hello(now);
      } else if (e->code == protocol::ErrorCode::kVersionMismatch) {
        fail("scheduler rejected this application: " + std::string(e->text));
      } else {
        LRTS_ERROR("scheduler reports: {}", e->text);
      }
    }
  }

  // The scheduler lost what it had accepted from us (it restarted without a journal, or dropped
  // us after our grace period): those tasks end as failed rather than leaving waiters hanging.
  // Submissions it never acknowledged are simply sent again.
  void fail_forgotten() {
    std::unordered_set<uint64_t> resent;
    for (const auto& s : unacked_) {
      if (!s.acked) resent.insert(s.seq);
    }
    size_t n = 0;
    {
      std::lock_guard lock(impl_.mu);
      for (auto it = impl_.pending.begin(); it != impl_.pending.end();) {
        const TaskKey key = *it;
        if (key.session == impl_.session && resent.count(key.seq)) {
          ++it;
          continue;
        }
        it = impl_.pending.erase(it);
        ServiceResult r(protocol::format_service_id(key), ServiceStatus::failed,
                        "lost: the scheduler no longer knows this task (it restarted without "
                        "--state-dir, or this application was away longer than its grace period)",
                        0, "", std::chrono::nanoseconds(0));
        route_locked(key, std::move(r));
        ++n;
      }
      impl_.cv.notify_all();
    }
    if (n) LRTS_ERROR("the scheduler has forgotten {} task(s) of this application", n);
  }

  // Hands a result to whoever waits for it. Call with mu held.
  void route_locked(const TaskKey& key, ServiceResult r) {
    for (auto* sub : impl_.subscriptions) {
      if (sub->wanted.erase(key)) {
        sub->arrived.push_back(std::move(r));
        return;
      }
    }
    impl_.ready.emplace(key, std::move(r));
  }

  void on_results(const protocol::AppResults& results) {
    protocol::Received ack;
    ack.keys.reserve(results.items.size());
    {
      std::lock_guard lock(impl_.mu);
      for (const auto& item : results.items) {
        ack.keys.push_back(item.key);
        cancels_.erase(item.key);
        if (impl_.pending.erase(item.key) == 0) continue;  // duplicate: handed out already
        route_locked(item.key, to_result(item));
        ++impl_.completed;
      }
      impl_.cv.notify_all();
      if (impl_.view) {
        impl_.view->set_extra(std::to_string(impl_.completed) + "/" +
                              std::to_string(impl_.scheduled) + " tasks done");
      }
    }
    for (const auto& key : ack.keys) {
      if (key.session == impl_.session) mark_acked(key.seq);
    }
    publish_unacked();
    buf_.clear();
    protocol::encode(ack, buf_);
    dealer_.send(buf_);
  }

  ClientApplication::Impl& impl_;
  net::ZmqContext ctx_;
  net::ZmqSocket dealer_{ctx_, ZMQ_DEALER};
  net::ZmqSocket progress_;  // to the progress server, when progress is followed
  std::unordered_set<uint64_t> sessions_;  // whose bars we follow
  TimePoint next_subscribe_ = TimePoint::max();
  std::string buf_;
  std::vector<Submission> fresh_;
  std::deque<Submission> unacked_;  // contiguous seqs from base_seq_
  uint64_t base_seq_ = 1;
  size_t unacked_count_ = 0;
  uint64_t epoch_ = 0;
  bool welcomed_ = false;
  bool ever_welcomed_ = false;
  Duration heartbeat_ = seconds(1);  // until the scheduler says otherwise
  std::unordered_set<TaskKey, TaskKeyHash> cancels_;  // sent, result not yet in
  TimePoint last_hello_{};
  TimePoint last_heard_ = Clock::now();
  TimePoint next_heartbeat_{};
};

}  // namespace

void ClientApplication::Impl::io_main() {
  try {
    IoLoop(*this).run();
  } catch (const std::exception& e) {
    std::lock_guard lock(mu);
    fatal = std::string("I/O thread failed: ") + e.what();
    cv.notify_all();
  }
}

// ---- ClientApplication --------------------------------------------------------------------

ClientApplication::ClientApplication(ApplicationInformation info) : impl_(std::make_unique<Impl>()) {
  impl_->info = std::move(info);
  impl_->app_id = impl_->info.application_id;
  if (impl_->app_id.empty()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "app-%016llx",
                  static_cast<unsigned long long>(random_u64()));
    impl_->app_id = buf;
  }
}

ClientApplication::~ClientApplication() { stop_application(); }

void ClientApplication::start_application() {
  std::lock_guard lock(impl_->mu);
  if (impl_->started) return;
  if (impl_->stopped) throw std::logic_error("lrts application: cannot start again after stop");
  impl_->started = true;
  if (impl_->info.show_progress) {
    impl_->view = std::make_unique<tui::TerminalView>();
    impl_->view->set_stage("Running");
    impl_->view->start();
  }
  impl_->io = std::thread([impl = impl_.get()] { impl->io_main(); });
}

void ClientApplication::stop_application() {
  {
    std::unique_lock lock(impl_->mu);
    if (!impl_->started || impl_->stopping) return;
    if (impl_->view) {
      // Results travel faster than progress: give the final state of finished tasks' bars a
      // moment to arrive, so the last frame shows where each task really ended.
      auto settled = [&] {
        for (const auto& [key, tb] : impl_->bars) {
          if (impl_->pending.count(key)) continue;
          for (const auto& b : tb.bars) {
            if (!b.service_id.empty() && !b.closed) return false;
          }
        }
        return true;
      };
      impl_->cv.wait_until(lock, Clock::now() + milliseconds(1000), settled);
    }
    impl_->stopping = true;
    impl_->cv.notify_all();
  }
  impl_->wake_io();
  if (impl_->io.joinable()) impl_->io.join();
  std::unique_ptr<tui::TerminalView> view;
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopped = true;
    impl_->cv.notify_all();
    view = std::move(impl_->view);
  }
  if (view) view->stop();  // the last frame stays on the terminal
}

void ClientApplication::detach_application() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->detach = true;
  }
  stop_application();
}

bool ClientApplication::flush(std::chrono::milliseconds timeout) {
  const TimePoint deadline = timeout == std::chrono::milliseconds::max()
                                 ? TimePoint::max()
                                 : Clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  try {
    impl_->wait_until(
        lock, deadline, [&] { return impl_->outbox.empty() && impl_->unacked == 0; },
        "acknowledgements");
  } catch (const TimeoutError&) {
    return false;
  }
  return true;
}

std::string ClientApplication::schedule_service(const Service& service,
                                                const TaskOptions& options) {
  msgpack::sbuffer buf;
  service.lrts_pack_fields(buf);
  return schedule_service(service.service_name(), std::string(buf.data(), buf.size()), options);
}

std::string ClientApplication::schedule_service(std::string_view service_name,
                                                std::string fields_msgpack,
                                                const TaskOptions& options) {
  if (service_name.empty()) throw std::invalid_argument("service name is empty");
  Submission s;
  s.name.assign(service_name);
  s.fields = std::move(fields_msgpack);
  s.max_retries = std::min<uint32_t>(options.max_retries, 1000);
  s.timeout_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(options.timeout.count(), 0, std::numeric_limits<uint32_t>::max()));
  bool was_empty;
  TaskKey key{impl_->session, 0};
  {
    std::lock_guard lock(impl_->mu);
    if (impl_->stopping || impl_->stopped) throw std::runtime_error("lrts application is stopped");
    key.seq = s.seq = impl_->next_seq++;
    impl_->pending.insert(key);
    ++impl_->scheduled;
    was_empty = impl_->outbox.empty();
    impl_->outbox.push_back(std::move(s));
  }
  if (was_empty) impl_->wake_io();
  return protocol::format_service_id(key);
}

ServiceResult ClientApplication::wait_for(const std::string& service_id) {
  return wait_for(service_id, std::chrono::milliseconds::max());
}

ServiceResult ClientApplication::wait_for(const std::string& service_id,
                                          std::chrono::milliseconds timeout) {
  const TaskKey key = parse_id(service_id);
  const TimePoint deadline = timeout == std::chrono::milliseconds::max()
                                 ? TimePoint::max()
                                 : Clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  if (!impl_->ready.count(key) && !impl_->pending.count(key)) {
    throw std::invalid_argument("unknown service id " + service_id +
                                " (not scheduled by this application, or already collected)");
  }
  impl_->wait_until(
      lock, deadline,
      [&] { return impl_->ready.count(key) != 0 || !impl_->pending.count(key); },
      service_id.c_str());
  auto it = impl_->ready.find(key);
  if (it == impl_->ready.end()) {
    throw std::invalid_argument("result of " + service_id + " was collected by another caller");
  }
  ServiceResult r = std::move(it->second);
  impl_->ready.erase(it);
  return r;
}

std::vector<ServiceResult> ClientApplication::wait_for_multi(
    const std::vector<std::string>& service_ids) {
  return wait_for_multi(service_ids, std::chrono::milliseconds::max());
}

std::vector<ServiceResult> ClientApplication::wait_for_multi(
    const std::vector<std::string>& service_ids, std::chrono::milliseconds timeout) {
  std::vector<TaskKey> keys;
  keys.reserve(service_ids.size());
  std::unordered_set<TaskKey, TaskKeyHash> seen;
  for (const auto& id : service_ids) {
    keys.push_back(parse_id(id));
    if (!seen.insert(keys.back()).second) {
      throw std::invalid_argument("service id " + id + " is listed twice");
    }
  }
  const TimePoint deadline = timeout == std::chrono::milliseconds::max()
                                 ? TimePoint::max()
                                 : Clock::now() + timeout;
  std::unique_lock lock(impl_->mu);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!impl_->ready.count(keys[i]) && !impl_->pending.count(keys[i])) {
      throw std::invalid_argument("unknown service id " + service_ids[i] +
                                  " (not scheduled by this application, or already collected)");
    }
  }
  size_t have = 0;
  impl_->wait_until(
      lock, deadline,
      [&] {
        for (; have < keys.size(); ++have) {
          if (!impl_->ready.count(keys[have])) {
            if (!impl_->pending.count(keys[have])) {
              throw std::invalid_argument("result of " + service_ids[have] +
                                          " was collected by another caller");
            }
            return false;
          }
        }
        return true;
      },
      "results");
  std::vector<ServiceResult> out;
  out.reserve(keys.size());
  for (const auto& key : keys) {
    auto it = impl_->ready.find(key);
    out.push_back(std::move(it->second));
    impl_->ready.erase(it);
  }
  return out;
}

CompletionRange ClientApplication::as_completed(const std::vector<std::string>& service_ids) {
  return as_completed(service_ids, std::chrono::milliseconds::max());
}

CompletionRange ClientApplication::as_completed(const std::vector<std::string>& service_ids,
                                                std::chrono::milliseconds timeout) {
  auto state = std::make_unique<CompletionRange::State>();
  state->impl = impl_.get();
  if (timeout != std::chrono::milliseconds::max()) state->deadline = Clock::now() + timeout;
  std::vector<TaskKey> keys;
  std::vector<std::string> ids;  // each once, in the order given
  keys.reserve(service_ids.size());
  std::unordered_set<TaskKey, TaskKeyHash> seen;
  for (const auto& id : service_ids) {
    const TaskKey key = parse_id(id);
    if (!seen.insert(key).second) continue;
    keys.push_back(key);
    ids.push_back(id);
  }
  std::lock_guard lock(impl_->mu);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!impl_->ready.count(keys[i]) && !impl_->pending.count(keys[i])) {
      throw std::invalid_argument("unknown service id " + ids[i] +
                                  " (not scheduled by this application, or already collected)");
    }
  }
  for (const auto& key : keys) {
    auto it = impl_->ready.find(key);
    if (it != impl_->ready.end()) {
      state->arrived.push_back(std::move(it->second));
      impl_->ready.erase(it);
    } else {
      state->wanted.insert(key);
    }
    ++state->remaining;
  }
  impl_->subscriptions.push_back(state.get());
  return CompletionRange(std::move(state));
}

bool ClientApplication::cancel(const std::string& service_id) {
  const TaskKey key = parse_id(service_id);
  {
    std::lock_guard lock(impl_->mu);
    if (!impl_->pending.count(key) || impl_->stopping) return false;
    impl_->cancels.push_back(key);
  }
  impl_->wake_io();
  return true;
}

std::vector<ProgressSnapshot> ClientApplication::progress(const std::string& service_id) const {
  const TaskKey key = parse_id(service_id);
  std::lock_guard lock(impl_->mu);
  auto it = impl_->bars.find(key);
  if (it == impl_->bars.end()) return {};
  std::vector<ProgressSnapshot> out;
  for (const auto& b : it->second.bars) {
    if (!b.service_id.empty()) out.push_back(b);
  }
  return out;
}

std::vector<ProgressSnapshot> ClientApplication::progress() const {
  std::lock_guard lock(impl_->mu);
  std::vector<ProgressSnapshot> out;
  for (const auto& key : impl_->bars_order) {
    auto it = impl_->bars.find(key);
    if (it == impl_->bars.end()) continue;
    for (const auto& b : it->second.bars) {
      if (!b.service_id.empty()) out.push_back(b);
    }
  }
  return out;
}

void ClientApplication::on_progress(ProgressCallback callback) {
  std::lock_guard lock(impl_->mu);
  impl_->progress_callbacks.push_back(std::move(callback));
}

void ClientApplication::set_stage(std::string stage) {
  std::lock_guard lock(impl_->mu);
  if (impl_->view) impl_->view->set_stage(std::move(stage));
}

const std::string& ClientApplication::application_id() const { return impl_->app_id; }

bool ClientApplication::connected() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connected;
}

bool ClientApplication::wait_connected(std::chrono::milliseconds timeout) {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] {
    return impl_->connected || !impl_->fatal.empty() || impl_->stopping;
  }) && impl_->connected;
}

std::vector<std::string> ClientApplication::pending_service_ids() const {
  std::lock_guard lock(impl_->mu);
  std::vector<TaskKey> keys(impl_->pending.begin(), impl_->pending.end());
  for (const auto& [key, r] : impl_->ready) keys.push_back(key);
  std::sort(keys.begin(), keys.end(), [](const TaskKey& a, const TaskKey& b) {
    return a.session != b.session ? a.session < b.session : a.seq < b.seq;
  });
  std::vector<std::string> out;
  out.reserve(keys.size());
  for (const auto& k : keys) out.push_back(protocol::format_service_id(k));
  return out;
}

// ---- CompletionRange ------------------------------------------------------------------------

CompletionRange::CompletionRange(std::unique_ptr<State> state) : state_(std::move(state)) {}
CompletionRange::CompletionRange(CompletionRange&&) noexcept = default;
CompletionRange& CompletionRange::operator=(CompletionRange&&) noexcept = default;

CompletionRange::~CompletionRange() {
  if (!state_) return;
  auto* impl = state_->impl;
  std::lock_guard lock(impl->mu);
  auto& subs = impl->subscriptions;
  subs.erase(std::remove(subs.begin(), subs.end(), state_.get()), subs.end());
  // Results that arrived for this range but were not taken stay collectable.
  for (auto& r : state_->arrived) {
    TaskKey key;
    if (protocol::parse_service_id(r.service_id(), &key)) impl->ready.emplace(key, std::move(r));
  }
}

std::optional<ServiceResult> CompletionRange::next() {
  State& s = *state_;
  std::unique_lock lock(s.impl->mu);
  if (s.remaining == 0) return std::nullopt;
  s.impl->wait_until(lock, s.deadline, [&] { return !s.arrived.empty(); }, "completed results");
  ServiceResult r = std::move(s.arrived.front());
  s.arrived.pop_front();
  --s.remaining;
  return r;
}

size_t CompletionRange::remaining() const {
  std::lock_guard lock(state_->impl->mu);
  return state_->remaining;
}

CompletionRange::iterator& CompletionRange::iterator::operator++() {
  auto next = range_->next();
  if (next) {
    current_ = std::move(*next);
  } else {
    range_ = nullptr;
  }
  return *this;
}

}  // namespace lrts
