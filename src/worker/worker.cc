#include "worker/worker.hpp"

#include <signal.h>
#include <unistd.h>

#include <random>
#include <unordered_map>

#include "common/cpu.hpp"
#include "common/log.hpp"
#include "net/endpoint.hpp"
#include "common/process.hpp"
#include "common/signals.hpp"
#include "net/zmq_socket.hpp"
#include "worker/progress_link.hpp"
#include "worker/slot_pool.hpp"
#include "protocol/codec.hpp"

namespace lrts::worker {


namespace {

constexpr size_t kMaxResultsPerMessage = 4096;

std::string default_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return std::string(host) + ":" + std::to_string(::getpid());
}

class Worker {
 public:
  Worker(const WorkerOptions& options, int slots, const net::Endpoint& progress_endpoint)
      : options_(options),
        pool_(SlotPoolOptions{slots, options.executable, options.service_libs,
                              options.max_message_bytes, options.bars_per_slot,
                              options.max_job_memory}),
        name_(options.name.empty() ? default_name() : options.name),
        progress_(ctx_, ProgressLinkOptions{progress_endpoint.zmq, progress_endpoint.ipv6, name_,
                                            options.progress_floor, options.progress_ceiling}) {
    std::random_device rd;
    uid_ = (uint64_t{rd()} << 32) | rd();
  }

  int run() {
    SignalPipe signals{SIGINT, SIGTERM, SIGCHLD};
    auto services = pool_.start(options_.slot_start_timeout);
    if (!services) {
      LRTS_ERROR("{}", services.error());
      return 1;
    }
    services_ = std::move(*services);
    auto ep = net::connect_endpoint(options_.scheduler_address, options_.scheduler_port);
    if (!ep) {
      LRTS_ERROR("{}", ep.error());
      return 1;
    }
    dealer_.set_int(ZMQ_IPV6, ep->ipv6 ? 1 : 0);
    dealer_.set_int(ZMQ_SNDHWM, 0);  // results are never dropped here; they wait for the link
    dealer_.set_int(ZMQ_RCVHWM, 0);
    dealer_.set_int(ZMQ_RECONNECT_IVL, 100);
    dealer_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    if (auto s = dealer_.connect(ep->zmq); !s) {
      LRTS_ERROR("{}", s.error());
      return 1;
    }
    LRTS_INFO("worker '{}' with {} slot(s) and {} service(s), scheduler at {}", name_,
              pool_.slot_count(), services_.size(), ep->zmq);
    send_hello(Clock::now());

    std::vector<zmq_pollitem_t> items;
    net::ZmqFrame frame;
    TimePoint next_stats = Clock::now() + kStatsInterval;
    for (;;) {
      TimePoint now = Clock::now();
      // A scan waits for the progress link to be able to send (an acknowledgement wakes us
      // through the socket before that).
      const TimePoint scan_at = std::max(next_scan_, progress_.send_allowed_at());
      TimePoint deadline = std::min({next_heartbeat_, pool_.next_deadline(),
                                     progress_.next_deadline(), scan_at, next_stats,
                                     drain_deadline_});
      items.clear();
      items.push_back({dealer_.get(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, signals.fd(), ZMQ_POLLIN, 0});
      items.push_back({progress_.socket(), 0, ZMQ_POLLIN, 0});
      pool_.add_poll_items(items);
      const long timeout = deadline == TimePoint::max()
                               ? -1
                               : std::max<long>(0, to_ms(deadline - now) + 1);
      if (zmq_poll(items.data(), static_cast<int>(items.size()), timeout) < 0 &&
          zmq_errno() != EINTR) {
        LRTS_ERROR("poll failed: {}", net::zmq_error_text());
        return 1;
      }
      now = Clock::now();
      if (items[1].revents & ZMQ_POLLIN) {
        for (int sig : signals.drain()) {
          if (sig == SIGCHLD) {
            pool_.reap(outcomes_);
          } else if (draining_ || !options_.finish_on_stop) {
            LRTS_INFO("received {}; worker stopping now", sig == SIGINT ? "SIGINT" : "SIGTERM");
            return shutdown();
          } else {
            start_drain(now, sig);
          }
        }
      }
      if (items[2].revents & ZMQ_POLLIN) progress_.on_readable(now);
      pool_.on_poll(items.data() + 3, outcomes_);
      for (int n = 0; n < 1024 && dealer_.recv(frame); ++n) on_message(frame.view(), now);
      pool_.dispatch(now);
      hand_back_surplus(now);
      send_outcomes();
      sample_progress(now);
      if (now >= next_heartbeat_) heartbeat(now);
      if (now >= next_stats) {
        next_stats = now + kStatsInterval;
        log_stats();
      }
      if (draining_) {
        if (pool_.size() == 0 && outcomes_.empty() && pending_.empty()) {
          buf_.clear();
          protocol::encode(protocol::WorkerBye{}, buf_);
          send(buf_);
          dealer_.set_int(ZMQ_LINGER, 1000);
          LRTS_INFO("drained: every task finished and delivered; worker stopped");
          return 0;
        }
        if (now >= drain_deadline_) {
          LRTS_WARN("drain timeout passed with {} task(s) unfinished", pool_.size());
          return shutdown();
        }
      }
    }
  }

 private:
  void send(const std::string& msg) {
    if (dealer_.send(msg) != net::SendResult::kSent) {
      LRTS_WARN("could not queue a message for the scheduler");
    }
  }

  uint32_t capacity() const { return draining_ ? 0 : pool_.capacity(); }

  // Tasks this worker holds beyond its current capacity (tasks turned out longer than thought)
  // go back to the scheduler, at most every 100 ms, so idle workers can take them.
  void hand_back_surplus(TimePoint now) {
    if (now < next_surplus_check_) return;
    next_surplus_check_ = now + milliseconds(100);
    protocol::WorkerReturn ret;
    ret.returned = pool_.take_surplus();
    if (ret.returned.empty()) return;
    buf_.clear();
    protocol::encode(ret, buf_);
    send(buf_);
    heartbeat(now);  // the smaller capacity, at once
  }

  // First stop signal: take no new work, hand back what has not started, finish the rest.
  void start_drain(TimePoint now, int sig) {
    draining_ = true;
    if (options_.drain_timeout.count() > 0) drain_deadline_ = now + options_.drain_timeout;
    protocol::WorkerReturn ret;
    ret.returned = pool_.take_queued();
    buf_.clear();
    protocol::encode(ret, buf_);
    send(buf_);
    heartbeat(now);  // capacity 0 from now on
    LRTS_INFO("received {}; draining: handed back {} queued task(s), finishing {} running (send "
              "it again to stop at once)",
              sig == SIGINT ? "SIGINT" : "SIGTERM", ret.returned.size(), pool_.size());
  }

  void send_hello(TimePoint now) {
    protocol::WorkerHello hello;
    hello.worker_uid = uid_;
    hello.name = name_;
    hello.slots = static_cast<uint32_t>(pool_.slot_count());
    hello.capacity = capacity();
    hello.max_message = options_.max_message_bytes;
    for (const auto& s : services_) hello.services.push_back(s);
    // Only what runs here: finished results are sent again after the welcome and settle
    // themselves (a finished result is accepted from any attempt; a lost one only if current).
    hello.held = pool_.held();
    buf_.clear();
    protocol::encode(hello, buf_);
    send(buf_);
    last_hello_ = now;
    next_heartbeat_ = now + heartbeat_interval_;
  }

  void heartbeat(TimePoint now) {
    next_heartbeat_ = now + heartbeat_interval_;
    // The scheduler answers one heartbeat in ten: silence past three of those means trouble.
    if (now - last_heard_ > std::max<Duration>(30 * heartbeat_interval_, seconds(30)) &&
        !scheduler_silent_) {
      scheduler_silent_ = true;
      LRTS_WARN("scheduler not answering; tasks keep running and results wait for it");
    }
    if (!welcomed_ && now - last_hello_ >= seconds(2)) {
      send_hello(now);  // the first hello may have gone to a scheduler that died since
      return;
    }
    buf_.clear();
    protocol::encode(protocol::WorkerHeartbeat{capacity()}, buf_);
    send(buf_);
  }

  void on_message(std::string_view bytes, TimePoint now) {
    auto decoded = protocol::decode<protocol::ToWorker>(bytes, options_.max_message_bytes);
    if (!decoded) {
      LRTS_WARN("dropped a bad message from the scheduler: {}", decoded.error().text);
      return;
    }
    last_heard_ = now;
    if (scheduler_silent_) {
      scheduler_silent_ = false;
      LRTS_INFO("scheduler answering again");
    }
    auto& msg = *decoded;
    if (auto* w = std::get_if<protocol::WorkerWelcome>(&msg)) {
      if (epoch_ != 0 && epoch_ != w->scheduler_epoch) {
        LRTS_INFO("scheduler restarted; re-registered with {} task(s) held", pool_.size());
      }
      epoch_ = w->scheduler_epoch;
      welcomed_ = true;
      if (w->heartbeat_ms > 0) {
        heartbeat_interval_ = milliseconds(w->heartbeat_ms);
        next_heartbeat_ = std::min(next_heartbeat_, now + heartbeat_interval_);
      }
      for (const auto& key : w->cancel) pool_.cancel(key, outcomes_);
      resend_pending();
    } else if (auto* a = std::get_if<protocol::Assign>(&msg)) {
      if (draining_) {  // sent before it heard we drain: straight back
        protocol::WorkerReturn ret;
        for (const auto& t : a->tasks) ret.returned.push_back({t.key, t.attempt});
        buf_.clear();
        protocol::encode(ret, buf_);
        send(buf_);
        return;
      }
      bool resend = false;
      for (const auto& t : a->tasks) {
        auto done = pending_.find(t.key);
        if (done != pending_.end()) {
          if (done->second.attempt >= t.attempt) {
            // Finished here already: answer the assignment with that result (after a scheduler
            // restart the attempt number can repeat; the result settles it either way).
            unsent_.push_back(t.key);
            resend = true;
            continue;
          }
          pending_.erase(done);  // a retry of an attempt that was lost here
        }
        pool_.add(LocalTask{t.key, t.attempt, std::string(a->names[t.name_index]),
                            std::string(t.fields), t.timeout_ms});
      }
      if (resend) flush_unsent();
    } else if (auto* ack = std::get_if<protocol::ResultAck>(&msg)) {
      for (const auto& t : ack->acked) {
        auto it = pending_.find(t.key);
        if (it != pending_.end() && it->second.attempt <= t.attempt) pending_.erase(it);
      }
    } else if (auto* k = std::get_if<protocol::CancelTasks>(&msg)) {
      for (const auto& key : k->keys) pool_.cancel(key, outcomes_);
    } else if (auto* hb = std::get_if<protocol::HeartbeatAck>(&msg)) {
      if (hb->scheduler_epoch != epoch_ && now - last_hello_ > milliseconds(500)) {
        welcomed_ = false;
        send_hello(now);
      }
    } else if (auto* e = std::get_if<protocol::ErrorMsg>(&msg)) {
      if (e->code == protocol::ErrorCode::kHelloRequired) {
        if (welcomed_ || now - last_hello_ > milliseconds(500)) {
          welcomed_ = false;
          send_hello(now);
        }
      } else {
        LRTS_ERROR("scheduler reports: {}", e->text);
      }
    }
  }

  // Reads the slots' bars on the progress link's clock: only when a batch could leave, every
  // `floor` while a task has a bar open, and every 5 floors (at most `ceiling`) while tasks run
  // without bars, to notice new ones.
  void sample_progress(TimePoint now) {
    if (now >= next_scan_ && progress_.can_send(now)) {
      pool_.sample_progress(bar_updates_);
      progress_.add(bar_updates_);
      next_scan_ = TimePoint::max();
    }
    if (next_scan_ == TimePoint::max() && pool_.busy()) {
      next_scan_ = now + (pool_.has_open_bars()
                              ? options_.progress_floor
                              : std::min<Duration>(5 * options_.progress_floor,
                                                   options_.progress_ceiling));
    }
    progress_.pump(now);
  }

  void log_stats() {
    const auto& ps = progress_.stats();
    if (ps.batches != logged_batches_) {
      LRTS_INFO("progress: {} batch(es) with {} bar update(s) sent, round trip {:.2f} ms (EWMA), "
                "{} unanswered",
                ps.batches, ps.bars_sent, ps.rtt_ewma_ms, ps.unanswered);
      logged_batches_ = ps.batches;
    }
  }

  // Results are kept until the scheduler acknowledges them, so none is lost if it restarts.
  void send_outcomes() {
    if (outcomes_.empty()) return;
    for (Outcome& o : outcomes_) {
      progress_.add(o.bars);  // final bar states travel with the result, never sampled late
      auto [it, fresh] = pending_.try_emplace(o.key, std::move(o));
      if (!fresh) continue;
      unsent_.push_back(it->first);
    }
    outcomes_.clear();
    flush_unsent();
  }

  void resend_pending() {
    unsent_.clear();
    for (const auto& [key, o] : pending_) unsent_.push_back(key);
    flush_unsent();
  }

  void flush_unsent() {
    protocol::WorkerResults msg;
    msg.capacity = capacity();
    size_t i = 0;
    while (i < unsent_.size()) {
      msg.items.clear();
      for (; i < unsent_.size() && msg.items.size() < kMaxResultsPerMessage; ++i) {
        auto it = pending_.find(unsent_[i]);
        if (it == pending_.end()) continue;
        const Outcome& o = it->second;
        msg.items.push_back({o.key, o.attempt, o.status, o.payload, 0, o.run_ns});
      }
      if (msg.items.empty()) continue;
      buf_.clear();
      protocol::encode(msg, buf_);
      send(buf_);
    }
    unsent_.clear();
  }

  int shutdown() {
    // Hand unfinished work back so the scheduler requeues it at once, without counting it as a
    // failed attempt. Results already sent stay valid.
    pool_.stop();
    send_outcomes();
    protocol::WorkerBye bye;
    bye.returned = pool_.take_queued();
    for (const auto& t : pool_.held()) bye.returned.push_back(t);
    buf_.clear();
    protocol::encode(bye, buf_);
    send(buf_);
    dealer_.set_int(ZMQ_LINGER, 1000);
    LRTS_INFO("worker stopped; handed back {} task(s)", bye.returned.size());
    return 0;
  }

  static constexpr Duration kStatsInterval = seconds(30);

  WorkerOptions options_;
  SlotPool pool_;
  net::ZmqContext ctx_;
  net::ZmqSocket dealer_{ctx_, ZMQ_DEALER};
  std::string name_;
  ProgressLink progress_;
  std::vector<protocol::BarState> bar_updates_;
  TimePoint next_scan_ = TimePoint::max();
  uint64_t logged_batches_ = 0;
  uint64_t uid_ = 0;
  std::vector<std::string> services_;
  uint64_t epoch_ = 0;
  bool welcomed_ = false;
  bool scheduler_silent_ = false;
  bool draining_ = false;
  TimePoint drain_deadline_ = TimePoint::max();
  TimePoint next_surplus_check_{};
  Duration heartbeat_interval_ = seconds(1);
  TimePoint next_heartbeat_{};
  TimePoint last_hello_{};
  TimePoint last_heard_ = Clock::now();
  std::vector<Outcome> outcomes_;
  std::unordered_map<protocol::TaskKey, Outcome, protocol::TaskKeyHash> pending_;
  std::vector<protocol::TaskKey> unsent_;
  std::string buf_;
};

}  // namespace

int run_worker(const WorkerOptions& in) {
  WorkerOptions options = in;
  const int slots = resolve_max_jobs(options.max_jobs);
  if (slots <= 0) {
    LRTS_ERROR("invalid -max-jobs {}", options.max_jobs);
    return 2;
  }
  if (options.executable.empty()) options.executable = self_executable();
  for (const auto& lib : options.service_libs) {
    if (::access(lib.c_str(), R_OK) != 0) {
      LRTS_ERROR("service library {} cannot be read", lib);
      return 2;
    }
  }
  auto progress = net::connect_endpoint(options.progress_address, options.progress_port);
  if (!progress) {
    LRTS_ERROR("{}", progress.error());
    return 2;
  }
  ::signal(SIGPIPE, SIG_IGN);
  Worker worker(options, slots, *progress);
  return worker.run();
}

}  // namespace lrts::worker
