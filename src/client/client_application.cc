// ClientApplication: a thin facade. User threads schedule through an Outbox and wait on a
// ResultBoard; one I/O thread (io_loop.hpp) owns the sockets and the SessionCore, which holds
// the protocol (session.hpp); progress goes to a ProgressCache and, when shown, the terminal
// view.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <random>
#include <thread>
#include <unordered_set>

#include "client/board.hpp"
#include "client/io_loop.hpp"
#include "client/progress_cache.hpp"
#include "common/clock.hpp"
#include "lrts/client.hpp"
#include "net/auth.hpp"
#include "protocol/messages.hpp"
#include "tui/view.hpp"

namespace lrts {

using protocol::TaskKey;
using protocol::TaskKeyHash;

namespace {

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

TimePoint deadline_after(std::chrono::milliseconds timeout) {
  return timeout == std::chrono::milliseconds::max() ? TimePoint::max() : Clock::now() + timeout;
}

}  // namespace

struct ClientApplication::Impl {
  ApplicationInformation info;
  std::string app_id;
  uint64_t session = random_u64();
  client::Outbox outbox;
  std::shared_ptr<client::ResultBoard> board =
      std::make_shared<client::ResultBoard>([this] { outbox.wake(); });
  client::ProgressCache progress;
  std::unique_ptr<tui::TerminalView> view;

  Mutex mu;  // the life cycle below
  uint64_t next_seq LRTS_GUARDED_BY(mu) = 1;
  bool started LRTS_GUARDED_BY(mu) = false;
  bool stopping LRTS_GUARDED_BY(mu) = false;
  std::thread io;
  std::optional<net::ClientAuth> auth;
};

ClientApplication::ClientApplication(ApplicationInformation info)
    : impl_(std::make_unique<Impl>()) {
  if (info.application_id.size() > protocol::kMaxAppIdBytes) {
    throw std::invalid_argument("application id of " + std::to_string(info.application_id.size()) +
                                " bytes: at most " + std::to_string(protocol::kMaxAppIdBytes));
  }
  if (const char* env = std::getenv("LRTS_AUTH_DIR"); info.auth_dir.empty() && env && *env) {
    info.auth_dir = env;  // so that a program runs unchanged against a cluster with --auth
  }
  if (!info.auth_dir.empty()) {
    auto auth = net::load_client_auth(info.auth_dir, net::Role::kApplication);
    if (!auth) throw std::invalid_argument(auth.error());
    impl_->auth = std::move(*auth);
  }
  impl_->info = std::move(info);
  impl_->app_id = impl_->info.application_id;
  if (impl_->app_id.empty()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "app-%016llx", static_cast<unsigned long long>(random_u64()));
    impl_->app_id = buf;
  }
}

ClientApplication::~ClientApplication() {
  stop_application();
  if (impl_->io.joinable()) {
    // Destroyed from a progress callback, on the I/O thread itself: it cannot join itself.
    if (impl_->io.get_id() == std::this_thread::get_id()) {
      impl_->io.detach();
    } else {
      impl_->io.join();
    }
  }
}

void ClientApplication::start_application() {
  MutexLock lock(impl_->mu);
  if (impl_->started) return;
  if (impl_->stopping) throw std::logic_error("lrts application: cannot start again after stop");
  impl_->started = true;
  if (impl_->info.show_progress) {
    impl_->view = std::make_unique<tui::TerminalView>();
    impl_->view->set_stage("Running");
    impl_->view->start();
  }
  client::IoContext c;
  c.info = impl_->info;
  c.application_id = impl_->app_id;
  c.session = impl_->session;
  c.board = impl_->board;
  c.progress = &impl_->progress;
  c.view = impl_->view.get();
  c.outbox = &impl_->outbox;
  c.auth = impl_->auth;
  impl_->io = std::thread([c = std::move(c)]() mutable { client::run_io(std::move(c)); });
}

void ClientApplication::stop_application() { stop(/*detach=*/false); }

void ClientApplication::detach_application() { stop(/*detach=*/true); }

void ClientApplication::stop(bool detach) {
  {
    MutexLock lock(impl_->mu);
    if (!impl_->started || impl_->stopping) return;
    impl_->stopping = true;
  }
  const bool on_io_thread = impl_->io.get_id() == std::this_thread::get_id();
  if (impl_->view && !on_io_thread) {
    // Results travel faster than progress: give the final state of finished tasks' bars a
    // moment to arrive, so the last frame shows where each task really ended.
    impl_->progress.wait_settled(Clock::now() + milliseconds(1000), [&](const TaskKey& key) {
      return !impl_->board->is_pending(key);
    });
  }
  impl_->outbox.stop(detach);
  // From a progress callback (the I/O thread) the thread cannot be joined here; it ends when
  // the callback returns, and the destructor joins it.
  if (!on_io_thread && impl_->io.joinable()) impl_->io.join();
  impl_->board->close();
  if (impl_->view && !on_io_thread) impl_->view->stop();  // the last frame stays on the terminal
}

bool ClientApplication::flush(std::chrono::milliseconds timeout) {
  return impl_->board->wait_acknowledged(deadline_after(timeout));
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
  if (service_name.size() > protocol::kMaxNameBytes) {
    throw std::invalid_argument("service name of " + std::to_string(service_name.size()) +
                                " bytes: at most " + std::to_string(protocol::kMaxNameBytes));
  }
  if (fields_msgpack.size() > protocol::kMaxPayloadBytes) {
    throw std::invalid_argument("service fields of " + std::to_string(fields_msgpack.size()) +
                                " bytes: at most " + std::to_string(protocol::kMaxPayloadBytes));
  }
  client::Submission s;
  s.name.assign(service_name);
  s.fields = Bytes(std::move(fields_msgpack));
  s.max_retries = std::min<uint32_t>(options.max_retries, protocol::kMaxRetries);
  s.timeout_ms = static_cast<uint32_t>(
      std::clamp<int64_t>(options.timeout.count(), 0, std::numeric_limits<uint32_t>::max()));
  TaskKey key{impl_->session, 0};
  {
    MutexLock lock(impl_->mu);
    if (impl_->stopping) throw std::runtime_error("lrts application is stopped");
    key.seq = s.seq = impl_->next_seq++;
    impl_->board->add_pending(key);
    impl_->outbox.submit(std::move(s));  // under mu: submissions reach the outbox in seq order
  }
  return protocol::format_service_id(key);
}

ServiceResult ClientApplication::wait_for(const std::string& service_id) {
  return wait_for(service_id, std::chrono::milliseconds::max());
}

ServiceResult ClientApplication::wait_for(const std::string& service_id,
                                          std::chrono::milliseconds timeout) {
  check_started();
  return impl_->board->wait_for(parse_id(service_id), service_id, deadline_after(timeout));
}

std::vector<ServiceResult> ClientApplication::wait_for_multi(
    const std::vector<std::string>& service_ids) {
  return wait_for_multi(service_ids, std::chrono::milliseconds::max());
}

std::vector<ServiceResult> ClientApplication::wait_for_multi(
    const std::vector<std::string>& service_ids, std::chrono::milliseconds timeout) {
  check_started();
  std::vector<TaskKey> keys;
  keys.reserve(service_ids.size());
  std::unordered_set<TaskKey, TaskKeyHash> seen;
  for (const auto& id : service_ids) {
    keys.push_back(parse_id(id));
    if (!seen.insert(keys.back()).second) {
      throw std::invalid_argument("service id " + id + " is listed twice");
    }
  }
  return impl_->board->wait_for_multi(keys, service_ids, deadline_after(timeout));
}

CompletionRange ClientApplication::as_completed(const std::vector<std::string>& service_ids) {
  return as_completed(service_ids, std::chrono::milliseconds::max());
}

CompletionRange ClientApplication::as_completed(const std::vector<std::string>& service_ids,
                                                std::chrono::milliseconds timeout) {
  check_started();
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
  return CompletionRange(impl_->board->subscribe(keys, ids, deadline_after(timeout), impl_->board));
}

bool ClientApplication::cancel(const std::string& service_id) {
  const TaskKey key = parse_id(service_id);
  {
    MutexLock lock(impl_->mu);
    if (impl_->stopping || !impl_->board->is_pending(key)) return false;
  }
  impl_->outbox.cancel(key);
  return true;
}

std::vector<ProgressSnapshot> ClientApplication::progress(const std::string& service_id) const {
  return impl_->progress.of(parse_id(service_id));
}

std::vector<ProgressSnapshot> ClientApplication::progress() const { return impl_->progress.all(); }

void ClientApplication::on_progress(ProgressCallback callback) {
  impl_->progress.add_callback(std::move(callback));
}

void ClientApplication::set_stage(std::string stage) {
  if (impl_->view) impl_->view->set_stage(std::move(stage));
}

const std::string& ClientApplication::application_id() const { return impl_->app_id; }

bool ClientApplication::connected() const { return impl_->board->connected(); }

bool ClientApplication::wait_connected(std::chrono::milliseconds timeout) {
  return impl_->board->wait_connected(deadline_after(timeout));
}

std::vector<std::string> ClientApplication::pending_service_ids() const {
  std::vector<std::string> out;
  for (const auto& k : impl_->board->outstanding()) out.push_back(protocol::format_service_id(k));
  return out;
}

size_t ClientApplication::results_waiting() const { return impl_->board->ready_count(); }

std::string ClientApplication::failure() const { return impl_->board->failure(); }

ClusterStatus ClientApplication::status(std::chrono::milliseconds timeout) const {
  AdminOptions o;
  o.scheduler_address = impl_->info.scheduler_address;
  o.scheduler_port = impl_->info.scheduler_port;
  o.auth_dir = impl_->info.auth_dir;
  o.timeout = timeout;
  return Admin(o).status();
}

std::vector<ServiceResult> ClientApplication::collect_ready() {
  check_started();
  return impl_->board->take_ready();
}

void ClientApplication::check_started() const {
  MutexLock lock(impl_->mu);
  if (!impl_->started) throw std::logic_error("lrts application: call start_application() first");
}

// ---- CompletionRange ------------------------------------------------------------------------

CompletionRange::CompletionRange(std::unique_ptr<State> state) : state_(std::move(state)) {}
CompletionRange::CompletionRange(CompletionRange&&) noexcept = default;
CompletionRange& CompletionRange::operator=(CompletionRange&&) noexcept = default;

CompletionRange::~CompletionRange() {
  if (state_) state_->board->unsubscribe(state_.get());
}

std::optional<ServiceResult> CompletionRange::next() { return state_->board->next(*state_); }

std::vector<ServiceResult> CompletionRange::next_batch(size_t max,
                                                       std::chrono::milliseconds timeout) {
  return state_->board->next_batch(*state_, max, deadline_after(timeout));
}

size_t CompletionRange::remaining() const { return state_->board->remaining(*state_); }

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
