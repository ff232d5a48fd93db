#include "worker/worker.hpp"

#include <signal.h>
#include <unistd.h>

#include <random>

#include "common/cpu.hpp"
#include "common/log.hpp"
#include "common/log_limit.hpp"
#include "common/metrics.hpp"
#include "common/process.hpp"
#include "common/signals.hpp"
#include "net/auth.hpp"
#include "net/endpoint.hpp"
#include "net/http_server.hpp"
#include "net/zmq_socket.hpp"
#include "protocol/codec.hpp"
#include "worker/core.hpp"
#include "worker/progress_link.hpp"
#include "worker/python_task.hpp"
#include "worker/slot_pool.hpp"

namespace lrts::worker {

namespace {

std::string host_name() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

std::string default_name() { return host_name() + ":" + std::to_string(::getpid()); }

uint64_t random_uid() {
  std::random_device rd;
  return (uint64_t{rd()} << 32) | rd();
}

// The worker's socket loop: the ZeroMQ link to the scheduler, the progress link, the slot
// pool and signals around a WorkerCore, which decides everything. Sleeps in zmq_poll until a
// message, a signal, a slot or the next deadline.
class Worker final : public WorkerLink {
 public:
  Worker(const WorkerOptions& options, int slots, const net::Endpoint& progress_endpoint,
         std::optional<net::ClientAuth> auth)
      : options_(options),
        auth_(auth),
        name_(options.name.empty() ? default_name() : options.name),
        pool_(SlotPoolOptions{slots, options.executable, options.service_libs,
                              options.max_message_bytes, options.bars_per_slot,
                              options.max_result_bytes}),
        progress_(ctx_, ProgressLinkOptions{progress_endpoint.zmq, progress_endpoint.ipv6, name_,
                                            options.progress_floor, options.progress_ceiling,
                                            std::move(auth)}) {}

  int run() {
    if (options_.metrics_port > 0) {
      auto m =
          net::HttpServer::metrics(options_.metrics_address, options_.metrics_port, metrics_text_);
      if (!m) {
        LRTS_ERROR("--metrics-port: {}", m.error());
        return 2;
      }
      metrics_ = std::move(*m);
    }
    SignalPipe signals{SIGINT, SIGTERM, SIGCHLD};
    become_subreaper();  // processes of tasks whose slot died are found and stopped
    auto services = pool_.start(options_.slot_start_timeout);
    if (!services) {
      LRTS_ERROR("{}", services.error());
      return 1;
    }
    if (!options_.allow_commands_given) {
      std::erase(*services, std::string(kCommandService));  // offered only when allowed
    } else {
      std::string which;
      for (const auto& p : options_.allow_commands) which += (which.empty() ? "" : ", ") + p;
      LRTS_INFO("runs programs as tasks (--allow-commands): {}",
                which.empty() ? "any program" : which);
    }
    if (services->empty()) {
      LRTS_WARN(
          "this worker offers no services: load a service library with --service-lib "
          "(tasks sent here fail, naming what it has)");
    }
    auto eps = net::connect_endpoints(options_.scheduler_address, options_.scheduler_port);
    if (!eps) {
      LRTS_ERROR("{}", eps.error());
      return 1;
    }
    endpoints_ = std::move(*eps);
    if (auto s = connect_link(Clock::now()); !s) {
      LRTS_ERROR("{}", s.error());
      return 1;
    }
    WorkerCoreOptions co;
    co.uid = random_uid();
    co.name = name_;
    co.host = host_name();
    co.services = std::move(*services);
    co.max_message_bytes = options_.max_message_bytes;
    co.finish_on_stop = options_.finish_on_stop;
    co.drain_timeout = options_.drain_timeout;
    co.idle_timeout = options_.idle_timeout;
    co.executor = ExecutorOptions{pool_slots(), options_.max_job_memory, options_.max_result_bytes};
    core_ = std::make_unique<WorkerCore>(std::move(co), pool_, *this);
    LRTS_INFO("worker '{}' with {} slot(s); connecting to the scheduler at {}{}", name_,
              pool_slots(), endpoints_[link_index_].zmq,
              endpoints_.size() > 1 ? " (then the others listed, in turn)" : "");
    pool_.attach(core_.get(), Clock::now());

    std::vector<zmq_pollitem_t> items;
    net::ZmqFrame frame;
    TimePoint next_stats = Clock::now() + kStatsInterval;
    for (;;) {
      TimePoint now = Clock::now();
      core_->on_tick(now);
      pool_.check_memory(now);
      core_->flush(now);
      sample_progress(now);
      if (core_->done()) break;
      if (now >= next_stats) {
        next_stats = now + kStatsInterval;
        log_stats();
      }
      if (now >= next_sample_) {
        next_sample_ = now + seconds(1);
        memory_bytes_ = pool_.resident_total(now);
        core_->set_memory_bytes(memory_bytes_);
        if (metrics_) metrics_text_.publish(render_metrics());
      }
      // A scan waits for the progress link to be able to send (an acknowledgement wakes us
      // through the socket before that).
      const TimePoint scan_at = std::max(next_scan_, progress_.send_allowed_at());
      TimePoint deadline = std::min(
          {core_->next_deadline(), progress_.next_deadline(), scan_at, next_stats, next_sample_});
      if (core_->executor().wants_memory_check()) {
        deadline = std::min(deadline, pool_.next_memory_check());
      }
      deadline = std::min({deadline, handshakes_->next_deadline(), failover_deadline()});
      items.clear();
      items.push_back({dealer_.get(), 0, ZMQ_POLLIN, 0});
      items.push_back({nullptr, signals.fd(), ZMQ_POLLIN, 0});
      items.push_back({progress_.socket(), 0, ZMQ_POLLIN, 0});
      void* mon = handshakes_->monitor_socket();
      items.push_back({mon, mon ? 0 : -1, mon ? short{ZMQ_POLLIN} : short{0}, 0});
      void* pmon = progress_.monitor_socket();
      items.push_back({pmon, pmon ? 0 : -1, pmon ? short{ZMQ_POLLIN} : short{0}, 0});
      pool_.add_poll_items(items);
      const long timeout =
          deadline == TimePoint::max() ? -1 : std::max<long>(0, to_ms(deadline - now) + 1);
      if (zmq_poll(items.data(), static_cast<int>(items.size()), timeout) < 0 &&
          zmq_errno() != EINTR) {
        LRTS_ERROR("poll failed: {}", net::zmq_error_text());
        return 1;
      }
      now = Clock::now();
      if (items[1].revents & ZMQ_POLLIN) {
        for (int sig : signals.drain()) {
          if (sig == SIGCHLD) {
            pool_.reap(now);
          } else {
            LRTS_INFO("received {}", sig == SIGINT ? "SIGINT" : "SIGTERM");
            core_->on_stop_signal(now);
          }
        }
      }
      if (items[2].revents & ZMQ_POLLIN) progress_.on_readable(now);
      if (items[3].revents & ZMQ_POLLIN) handshakes_->on_readable(now);
      handshakes_->on_tick(now);
      if (handshakes_->reconnects() != reconnects_seen_) {
        // libzmq reconnected by itself (a relay restarted at its address, say): the other side
        // knows this connection by a new name and has to hear a hello, not wait for the next
        // heartbeat, which may be minutes away at a long interval.
        reconnects_seen_ = handshakes_->reconnects();
        core_->on_new_link(now);
      }
      if (items[4].revents & ZMQ_POLLIN) progress_.on_monitor(now);
      pool_.on_poll(items.data() + 5, now);
      for (int n = 0; n < 1024 && dealer_.recv(frame); ++n) {
        auto decoded =
            protocol::decode<protocol::ToWorker>(frame.view(), options_.max_message_bytes);
        if (decoded) {
          core_->on_message(*decoded, now);
        } else {
          core_->on_bad_message(decoded.error(), now);
        }
      }
      if (now >= failover_deadline()) fail_over(now);
    }
    dealer_.set_int(ZMQ_LINGER, 1000);  // the goodbye and the last results leave
    pool_.stop();
    return 0;
  }

  // WorkerLink
  void send(const protocol::ToScheduler& message) override {
    buf_.clear();
    protocol::encode(message, buf_);
    if (dealer_.send(buf_) != net::SendResult::kSent) {
      // No connection to queue it on (a handshake failed and is retried): said once a minute.
      uint64_t suppressed = 0;
      if (send_log_.allow("send", Clock::now(), &suppressed)) {
        LRTS_WARN("could not queue a message for the scheduler (no connection){}",
                  suppressed ? " (" + std::to_string(suppressed) + " more since)" : "");
      }
    }
  }
  void bars(std::vector<protocol::BarState>& bars) override { progress_.add(bars); }
  void session_owner(uint64_t session, std::string_view application_id) override {
    progress_.owner(session, application_id);
  }

 private:
  int pool_slots() const { return std::max(1, options_.max_jobs_resolved); }

  // A fresh socket to endpoints_[link_index_]: what was queued for the last one is dropped
  // (results wait for their acknowledgement and go again after the next welcome).
  Status connect_link(TimePoint now) {
    const net::Endpoint& ep = endpoints_[link_index_];
    handshakes_.reset();
    dealer_ = net::ZmqSocket(ctx_, ZMQ_DEALER);
    dealer_.set_int(ZMQ_IPV6, ep.ipv6 ? 1 : 0);
    dealer_.set_int(ZMQ_SNDHWM, 0);  // results are never dropped here; they wait for the link
    dealer_.set_int(ZMQ_RCVHWM, 0);
    dealer_.set_int(ZMQ_RECONNECT_IVL, 100);
    dealer_.set_int(ZMQ_RECONNECT_IVL_MAX, 2000);
    dealer_.set_int(ZMQ_LINGER, 0);
    // Watched with or without --auth: a handshake that fails (keys on one side only, a key
    // not accepted yet) is said and retried rather than left dead; its link state drives
    // failover.
    if (auth_) net::secure_client(dealer_, *auth_);
    handshakes_ = std::make_unique<net::HandshakeGuard>(ctx_, dealer_, ep.zmq, "the scheduler");
    reconnects_seen_ = 0;
    link_since_ = now;
    return dealer_.connect(ep.zmq);
  }

  // With several addresses: when to try the next one — the link down kFailoverDown, or the
  // scheduler silent (by the session's rule) on a link that has been up.
  TimePoint failover_deadline() const {
    if (endpoints_.size() < 2) return TimePoint::max();
    if (!handshakes_->link_up()) {
      return std::max(handshakes_->down_since(), link_since_) + kFailoverDown;
    }
    if (core_ && core_->session().silent()) return link_since_ + kFailoverSilent;
    return TimePoint::max();
  }

  void fail_over(TimePoint now) {
    const std::string from = endpoints_[link_index_].zmq;
    link_index_ = (link_index_ + 1) % endpoints_.size();
    LRTS_WARN("{} at {}; trying {}",
              handshakes_->link_up() ? "the scheduler is silent" : "no link to the scheduler", from,
              endpoints_[link_index_].zmq);
    if (auto s = connect_link(now); !s) LRTS_ERROR("{}", s.error());
    core_->on_new_link(now);
  }

  // Reads the slots' bars on the progress link's clock: only when a batch could leave, every
  // `floor` while a task has a bar open, and every 5 floors (at most `ceiling`) while tasks run
  // without bars, to notice new ones.
  void sample_progress(TimePoint now) {
    const std::vector<int> busy = core_->executor().busy_slots();
    if (now >= next_scan_ && progress_.can_send(now)) {
      pool_.sample_progress(busy, bar_updates_);
      progress_.add(bar_updates_);
      next_scan_ = TimePoint::max();
    }
    if (next_scan_ == TimePoint::max() && !busy.empty()) {
      next_scan_ =
          now + (pool_.has_open_bars(busy)
                     ? options_.progress_floor
                     : std::min<Duration>(5 * options_.progress_floor, options_.progress_ceiling));
    }
    progress_.pump(now);
  }

  void log_stats() {
    const auto& ps = progress_.stats();
    if (ps.batches != logged_batches_) {
      LRTS_INFO(
          "progress: {} batch(es) with {} bar update(s) sent, round trip {:.2f} ms (EWMA), "
          "{} unanswered",
          ps.batches, ps.bars_sent, ps.rtt_ewma_ms, ps.unanswered);
      logged_batches_ = ps.batches;
    }
    const WorkerStats& ws = core_->stats();
    const size_t held = core_->executor().size(), unacked = core_->unacknowledged_results();
    if (ws.assigned != logged_assigned_ || held || unacked) {
      LRTS_INFO(
          "tasks: {} assigned, {} result(s) sent, {} handed back; now {} held ({} slot(s) "
          "busy), {} result(s) waiting for the scheduler's acknowledgement",
          ws.assigned, ws.results, ws.handed_back, held, core_->executor().busy_slots().size(),
          unacked);
      logged_assigned_ = ws.assigned;
    }
  }

  std::string render_metrics() const {
    metrics::TextWriter w;
    const WorkerStats& ws = core_->stats();
    const auto& ps = progress_.stats();
    const auto d = [](uint64_t v) { return static_cast<double>(v); };
    w.gauge("lrts_worker_slots", "Slots (processes that run tasks).", pool_slots());
    w.gauge("lrts_worker_slots_busy", "Slots running a task.",
            d(core_->executor().busy_slots().size()));
    w.gauge("lrts_worker_tasks_held", "Tasks held (running or waiting for a slot).",
            d(core_->executor().size()));
    w.counter("lrts_worker_tasks_assigned_total", "Tasks assigned to this worker.", d(ws.assigned));
    w.counter("lrts_worker_results_total", "Results sent to the scheduler.", d(ws.results));
    w.counter("lrts_worker_handed_back_total", "Tasks handed back unfinished.", d(ws.handed_back));
    w.gauge("lrts_worker_results_unacknowledged", "Results the scheduler has not acknowledged.",
            d(core_->unacknowledged_results()));
    w.gauge("lrts_worker_memory_bytes", "Resident memory of the worker and its slots.",
            d(memory_bytes_));
    w.gauge("lrts_worker_draining", "1 while the worker drains.", core_->draining() ? 1 : 0);
    w.counter("lrts_progress_batches_total", "Progress batches sent.", d(ps.batches));
    w.counter("lrts_progress_bar_updates_total", "Bar updates sent in progress batches.",
              d(ps.bars_sent));
    w.gauge("lrts_progress_round_trip_seconds", "Progress batch round trip (EWMA).",
            ps.rtt_ewma_ms / 1000.0);
    return w.take();
  }

  static constexpr Duration kStatsInterval = seconds(30);
  static constexpr Duration kFailoverDown = seconds(2);
  static constexpr Duration kFailoverSilent = seconds(30);
  static constexpr const char* kCommandService = "lrts.command";

  WorkerOptions options_;
  std::optional<net::ClientAuth> auth_;
  LogLimiter send_log_{seconds(60), 1, 1};
  std::string name_;
  SlotPool pool_;
  net::ZmqContext ctx_;
  net::ZmqSocket dealer_{ctx_, ZMQ_DEALER};
  std::vector<net::Endpoint> endpoints_;  // --scheduler-address, in the order to try them
  size_t link_index_ = 0;
  TimePoint link_since_{};
  uint64_t reconnects_seen_ = 0;  // of handshakes_
  std::unique_ptr<net::HandshakeGuard> handshakes_;
  ProgressLink progress_;
  std::unique_ptr<WorkerCore> core_;
  std::vector<protocol::BarState> bar_updates_;
  TimePoint next_scan_ = TimePoint::max();
  TimePoint next_sample_{};
  uint64_t memory_bytes_ = 0;  // of the worker and its slots, sampled once a second
  net::PublishedText metrics_text_;
  std::unique_ptr<net::HttpServer> metrics_;
  uint64_t logged_batches_ = 0;
  uint64_t logged_assigned_ = 0;
  std::string buf_;
};

}  // namespace

namespace {

// Python services: LRTS_PYTHON names the interpreter for the slots once it has shown it can
// import lrts (the package built next to this executable, if there is one, comes first on its
// path); otherwise LRTS_PYTHON_ERROR says why, for the tasks that come anyway.
void setup_python(const std::string& python) {
  ::unsetenv("LRTS_PYTHON");
  ::unsetenv("LRTS_PYTHON_ERROR");
  if (python.empty() || python == "none") {
    ::setenv("LRTS_PYTHON_ERROR", "it was started with --python none", 1);
    return;
  }
  const std::string exe = self_executable();
  const std::string dir = exe.substr(0, exe.rfind('/')) + "/python";
  if (::access((dir + "/lrts/__init__.py").c_str(), R_OK) == 0) {
    ::setenv("PYTHONPATH", python_path_with(dir).c_str(), 1);
  }
  auto ok = check_python(python);
  if (!ok) {
    LRTS_WARN("no Python services on this worker: {}", ok.error());
    ::setenv("LRTS_PYTHON_ERROR", ok.error().c_str(), 1);
    return;
  }
  LRTS_INFO("runs Python services: {}", *ok);
  ::setenv("LRTS_PYTHON", python.c_str(), 1);
}

}  // namespace

int run_worker(const WorkerOptions& in) {
  WorkerOptions options = in;
  options.max_jobs_resolved = resolve_max_jobs(options.max_jobs);
  if (options.max_jobs_resolved <= 0) {
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
  std::optional<net::ClientAuth> auth;
  if (!options.auth_dir.empty()) {
    auto a = net::load_client_auth(options.auth_dir, net::Role::kWorker);
    if (!a) {
      LRTS_ERROR("{}", a.error());
      return 2;
    }
    auth = std::move(*a);
  }
  ::signal(SIGPIPE, SIG_IGN);
  // What the slots (and the program tasks they run) read: set here, for the slot processes
  // this worker starts, whatever the environment said.
  if (options.allow_commands_given) {
    std::string list;
    for (const auto& p : options.allow_commands) list += (list.empty() ? "" : ":") + p;
    ::setenv("LRTS_ALLOW_COMMANDS", list.empty() ? "*" : list.c_str(), 1);
  } else {
    ::unsetenv("LRTS_ALLOW_COMMANDS");
  }
  if (!options.command_output.empty()) {
    ::setenv("LRTS_COMMAND_OUTPUT", options.command_output.c_str(), 1);
  }
  char mb[32];
  std::snprintf(mb, sizeof mb, "%g", options.command_output_mb);
  ::setenv("LRTS_COMMAND_OUTPUT_MB", mb, 1);
  setup_python(options.python);
  Worker worker(options, options.max_jobs_resolved, *progress, std::move(auth));
  return worker.run();
}

}  // namespace lrts::worker
