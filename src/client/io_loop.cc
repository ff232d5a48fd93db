#include "client/io_loop.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <unordered_set>

#include "common/log.hpp"
#include "net/endpoint.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "protocol/progress_messages.hpp"

namespace lrts::client {

namespace {
constexpr Duration kSubscribeRenewal = seconds(2);
// The most an application that stops waits for its collections to be confirmed.
constexpr Duration kLeaveWait = seconds(2);
}  // namespace

// ---- Outbox ---------------------------------------------------------------------------------

Outbox::Outbox() : wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

void Outbox::submit(Submission s) {
  bool was_empty;
  {
    MutexLock lock(mu_);
    was_empty = submissions_.empty();
    submissions_.push_back(std::move(s));
  }
  if (was_empty) wake();  // a burst of calls costs appends, not syscalls
}

void Outbox::cancel(const TaskKey& key) {
  {
    MutexLock lock(mu_);
    cancels_.push_back(key);
  }
  wake();
}

void Outbox::stop(bool detach) {
  {
    MutexLock lock(mu_);
    stopping_ = true;
    detach_ = detach_ || detach;
  }
  wake();
}

void Outbox::wake() const {
  const uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
}

void Outbox::drain_wake() const {
  uint64_t v;
  [[maybe_unused]] auto n = ::read(wake_.get(), &v, sizeof v);
}

Outbox::Work Outbox::take() {
  MutexLock lock(mu_);
  Work w;
  w.submissions.swap(submissions_);
  w.cancels.swap(cancels_);
  w.stopping = stopping_;
  w.detach = detach_;
  return w;
}

bool Outbox::empty() const {
  MutexLock lock(mu_);
  return submissions_.empty();
}

// ---- the loop -------------------------------------------------------------------------------

namespace {

class IoLoop final : public SessionLink {
 public:
  explicit IoLoop(IoContext c)
      : c_(std::move(c)),
        core_(SessionOptions{c_.application_id, c_.session,
                             static_cast<uint64_t>(
                                 std::max<int64_t>(0, c_.info.disconnect_grace.count())),
                             protocol::kDefaultMaxMessageBytes, c_.info.collect_only},
              *this) {}

  void run() {
    auto ep = net::connect_endpoint(c_.info.scheduler_address, c_.info.scheduler_port);
    if (!ep) return fatal(ep.error());
    dealer_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    dealer_.set_int(ZMQ_SNDHWM, 0);
    dealer_.set_int(ZMQ_RCVHWM, 0);
    dealer_.set_int(ZMQ_RECONNECT_IVL, 100);
    dealer_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    if (c_.auth) net::secure_client(dealer_, *c_.auth);
    handshakes_ = std::make_unique<net::HandshakeGuard>(ctx_, dealer_, ep->zmq, "the scheduler");
    if (auto s = dealer_.connect(ep->zmq); !s) return fatal(s.error());
    endpoint_ = ep->zmq;
    sessions_.insert(c_.session);
    if (c_.info.track_progress || c_.info.show_progress) connect_progress();
    if (c_.view) c_.view->set_connection("connecting to the scheduler at " + endpoint_ + " ...");

    net::ZmqFrame frame;
    for (;;) {
      TimePoint now = Clock::now();
      Outbox::Work work = c_.outbox->take();
      if (!work.submissions.empty() && first_work_ == TimePoint{}) first_work_ = now;
      for (auto& s : work.submissions) {
        ++scheduled_;
        core_.submit(std::move(s));
      }
      if (!work.cancels.empty()) core_.cancel(work.cancels);
      core_.collected(c_.board->take_collected());
      if (work.stopping) {
        // Before leaving, wait a moment (connected only) until the scheduler confirms the
        // results the user has: a run that starts right after this one with the same id must
        // not be handed them again.
        if (leave_by_ == TimePoint{}) {
          leave_by_ = now + kLeaveWait;
          core_.flush(now);
        }
        if (core_.collections_confirmed() || !core_.session().welcomed() || now >= leave_by_) {
          if (work.detach) {
            core_.flush(now);
            core_.detach();
          } else {
            core_.bye();
          }
          dealer_.set_int(ZMQ_LINGER, 500);  // give the goodbye a moment to leave
          return;
        }
      }
      core_.on_tick(now);
      core_.flush(now);
      if (progress_.get() && now >= next_subscribe_) subscribe(now);
      update_view(now);

      void* mon = handshakes_ ? handshakes_->monitor_socket() : nullptr;
      void* pmon = progress_handshakes_ ? progress_handshakes_->monitor_socket() : nullptr;
      zmq_pollitem_t items[5] = {{dealer_.get(), 0, ZMQ_POLLIN, 0},
                                 {nullptr, c_.outbox->wake_fd(), ZMQ_POLLIN, 0},
                                 {mon, mon ? 0 : -1, mon ? short{ZMQ_POLLIN} : short{0}, 0},
                                 {progress_.get(), 0, ZMQ_POLLIN, 0},
                                 {pmon, pmon ? 0 : -1, pmon ? short{ZMQ_POLLIN} : short{0}, 0}};
      TimePoint deadline = std::min(core_.next_deadline(), next_subscribe_);
      if (handshakes_) deadline = std::min(deadline, handshakes_->next_deadline());
      if (progress_handshakes_) {
        deadline = std::min(deadline, progress_handshakes_->next_deadline());
      }
      if (leave_by_ != TimePoint{}) deadline = std::min(deadline, leave_by_);
      if (c_.view && shown_outstanding_ > 0) deadline = std::min(deadline, next_view_);
      const long timeout =
          deadline == TimePoint::max() ? -1 : std::max<long>(0, to_ms(deadline - now) + 1);
      if (zmq_poll(items, progress_.get() ? 5 : 3, timeout) < 0 && zmq_errno() != EINTR) {
        return fatal("poll failed: " + net::zmq_error_text());
      }
      now = Clock::now();
      if (items[1].revents & ZMQ_POLLIN) c_.outbox->drain_wake();
      if (handshakes_) {
        if (items[2].revents & ZMQ_POLLIN) handshakes_->on_readable(now);
        handshakes_->on_tick(now);
      }
      if (progress_handshakes_ && progress_.get()) {
        if (items[4].revents & ZMQ_POLLIN) progress_handshakes_->on_readable(now);
        progress_handshakes_->on_tick(now);
      }
      for (int n = 0; n < 1024 && dealer_.recv(frame); ++n) {
        auto decoded = protocol::decode<protocol::ToApp>(frame.view());
        if (decoded) {
          core_.on_message(*decoded, now);
        } else {
          core_.on_bad_message(decoded.error(), now);
        }
      }
      if (progress_.get()) {
        for (int n = 0; n < 256 && progress_.recv(frame); ++n) on_progress(frame.view());
      }
    }
  }

  // ---- SessionLink ----
  void send(const protocol::ToScheduler& message) override {
    buf_.clear();
    protocol::encode(message, buf_);
    dealer_.send(buf_);
  }
  void deliver(const TaskKey& key, ServiceResult result) override {
    ++completed_;
    if (!result.ok()) ++failed_;
    c_.board->deliver(key, std::move(result));
  }
  void adopt(const std::vector<TaskKey>& keys) override {
    c_.board->adopt(keys);
    adopted_ += keys.size();
    if (first_work_ == TimePoint{}) first_work_ = Clock::now();
    for (const TaskKey& k : keys) {
      if (sessions_.insert(k.session).second && progress_.get()) next_subscribe_ = Clock::now();
    }
  }
  void connected(bool ready) override {
    if (ready) {
      LRTS_INFO("connected to the scheduler at {}", endpoint_);
      if (c_.view) c_.view->set_connection("");
    } else if (c_.view) {
      c_.view->set_connection("scheduler at " + endpoint_ + " not answering ...");
    }
    c_.board->set_connected(ready);
  }
  void acknowledged(uint64_t total) override { c_.board->set_acknowledged(total); }
  void fatal(const std::string& why) override {
    LRTS_ERROR("{}", why);
    c_.board->fail(why);
  }

 private:
  void connect_progress() {
    auto ep = net::connect_endpoint(c_.info.progress_server_address, c_.info.progress_server_port);
    if (!ep) {
      LRTS_WARN("progress: {}; progress is not followed", ep.error());
      return;
    }
    progress_ = net::ZmqSocket(ctx_, ZMQ_DEALER);
    progress_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    progress_.set_int(ZMQ_SNDHWM, 2);  // subscriptions wait for the server; at most two queue
    progress_.set_int(ZMQ_RECONNECT_IVL, 200);
    progress_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    if (c_.auth) net::secure_client(progress_, *c_.auth);
    progress_handshakes_ =
        std::make_unique<net::HandshakeGuard>(ctx_, progress_, ep->zmq, "the progress server");
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
    sub.application_id = c_.application_id;
    sub.sessions.assign(sessions_.begin(), sessions_.end());
    if (sub.sessions.size() > protocol::kMaxSubscribedSessions) {
      sub.sessions.resize(protocol::kMaxSubscribedSessions);
    }
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
    const auto& update = std::get<protocol::ProgressUpdate>(*decoded);
    std::vector<ProgressSnapshot> changed = c_.progress->apply(update.bars);
    if (c_.view) c_.view->update(changed);
    for (const auto& cb : c_.progress->callbacks()) cb(changed);
  }

  void counts(uint64_t running, uint64_t) override { running_ = running; }

  // The status line: ok · failed · running · queued, the overall rate and ETA. Set when a count
  // moves, and every second while tasks are outstanding (the ETA moves with the clock).
  void update_view(TimePoint now) {
    if (!c_.view) return;
    const uint64_t outstanding =
        scheduled_ + adopted_ > completed_ ? scheduled_ + adopted_ - completed_ : 0;
    const uint64_t running = std::min(running_, outstanding);
    const bool moved = completed_ != shown_completed_ || outstanding != shown_outstanding_ ||
                       running != shown_running_;
    if (!moved && (outstanding == 0 || now < next_view_)) return;
    shown_completed_ = completed_;
    shown_outstanding_ = outstanding;
    shown_running_ = running;
    next_view_ = now + seconds(1);
    tui::TaskCounts tc;
    tc.ok = completed_ - failed_;
    tc.failed = failed_;
    tc.running = running;
    tc.queued = outstanding - running;
    if (completed_ > 0 && first_work_ != TimePoint{}) {
      const double secs = std::chrono::duration<double>(now - first_work_).count();
      if (secs > 0) tc.rate = static_cast<double>(completed_) / secs;
      if (tc.rate > 0) tc.eta_seconds = static_cast<double>(outstanding) / tc.rate;
    }
    c_.view->set_fields(tui::task_fields(tc));
  }

  IoContext c_;
  SessionCore core_;
  net::ZmqContext ctx_;
  net::ZmqSocket dealer_{ctx_, ZMQ_DEALER};
  std::unique_ptr<net::HandshakeGuard> handshakes_;  // failed handshakes said and retried
  std::unique_ptr<net::HandshakeGuard> progress_handshakes_;
  net::ZmqSocket progress_;                // to the progress server, when progress is followed
  std::unordered_set<uint64_t> sessions_;  // whose bars we follow
  TimePoint next_subscribe_ = TimePoint::max();
  std::string endpoint_;
  std::string buf_;
  uint64_t scheduled_ = 0, adopted_ = 0, completed_ = 0, failed_ = 0, running_ = 0;
  uint64_t shown_completed_ = UINT64_MAX, shown_outstanding_ = 0, shown_running_ = 0;
  TimePoint leave_by_{};    // stopping: leave by then, confirmed or not
  TimePoint first_work_{};  // the first submission or adopted task: the rate counts from it
  TimePoint next_view_{};
};

}  // namespace

void run_io(IoContext context) {
  auto board = context.board;
  try {
    IoLoop(std::move(context)).run();
  } catch (const std::exception& e) {
    board->fail(std::string("I/O thread failed: ") + e.what());
  }
}

}  // namespace lrts::client
