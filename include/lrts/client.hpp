// The application side: schedule services on the cluster and collect their results.
//
//   lrts::ClientApplication app(lrts::ApplicationInformation{});
//   app.start_application();                       // never blocks, scheduler may be down
//   std::string id = app.schedule_service(MultService(6, 9));
//   lrts::ServiceResult r = app.wait_for(id);      // blocks until the result is in
//   double v = r.service_result<double>();
//   app.stop_application();
//
// A ClientApplication is safe to use from several threads at once. A background thread owns the
// connection; schedule_service only queues (it never waits for the network), and everything
// queued is sent, in batches, as soon as the scheduler is reachable. Each result is handed out
// once: wait_for, wait_for_multi and as_completed return it and forget it, and only then may
// the scheduler forget it (until then it keeps it, so a crashed application restarted with the
// same application_id gets it again).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "lrts/admin.hpp"
#include "lrts/progress.hpp"
#include "lrts/result.hpp"
#include "lrts/service.hpp"

namespace lrts {

// Where the cluster is, and how this application behaves. Names follow the original lrts.
struct ApplicationInformation {
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string progress_server_address = "127.0.0.1";
  int progress_server_port = 5454;
  // Kept from the original lrts for compatibility. lrts measures progress round trips from every
  // acknowledgement and never stalls on the network, so these three do not change behaviour.
  int progress_rtt_test_frequency = 10'000;
  int communication_time_out = 1;
  int progress_iteration_timeout = 2'000;

  // Identifies the application to the scheduler. Empty: a fresh random id. An application that
  // restarts with the same id gets back the results of the tasks its previous run scheduled.
  std::string application_id;
  // How long the scheduler keeps this application's tasks running after it disappears without
  // stop_application (crash, network cut). Zero: the scheduler's default.
  std::chrono::milliseconds disconnect_grace{0};
  // This process only collects the results of a detached application (as `lrts results`
  // does): the application stays detached, so if this process dies, its tasks still run to the
  // end and their results stay kept (--keep-results). Leave with detach_application().
  bool collect_only = false;
  // A directory with this application's key (application.key) and the cluster's scheduler.pub,
  // as made by `lrts keygen` (the cluster directory itself, or a member's from --add NAME --role
  // application): every connection is encrypted and authenticated with it (ZeroMQ CURVE). Needed
  // when the scheduler runs with --auth; empty: $LRTS_AUTH_DIR if set, else connect without.
  std::string auth_dir;

  // Follow the progress bars of this application's tasks through the progress server (when one
  // runs): progress(), on_progress() and the terminal view need it.
  bool track_progress = true;
  // Draw live progress on the terminal (stderr): a status line with the stage set by
  // set_stage(), then one line per bar, redrawn in place; what the program prints shows above
  // the bars. When stderr is not a terminal, plain lines are printed every few seconds.
  bool show_progress = false;
};

// Per-task options for schedule_service.
struct TaskOptions {
  // Further attempts after an attempt is lost (its worker or slot died). A task whose run
  // throws is not retried: the exception is its result.
  uint32_t max_retries = 3;
  // Zero: no limit. Otherwise the attempt is stopped and the task ends as timed_out.
  std::chrono::milliseconds timeout{0};
};

// Thrown by the waiting calls when their timeout passes first.
class TimeoutError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ClientApplication;

// Results in the order they complete: `for (const ServiceResult& r : app.as_completed(ids))`.
// Single pass; move-only. With a timeout, iteration throws TimeoutError when it passes.
class CompletionRange {
 public:
  struct State;
  class iterator {
   public:
    using value_type = ServiceResult;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    const ServiceResult& operator*() const { return current_; }
    const ServiceResult* operator->() const { return &current_; }
    iterator& operator++();
    void operator++(int) { ++*this; }
    bool operator==(const iterator& o) const { return range_ == o.range_; }

   private:
    friend class CompletionRange;
    explicit iterator(CompletionRange* range) : range_(range) { ++*this; }
    CompletionRange* range_ = nullptr;
    ServiceResult current_;
  };

  CompletionRange(CompletionRange&&) noexcept;
  CompletionRange& operator=(CompletionRange&&) noexcept;
  ~CompletionRange();

  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }
  // The next result, or nullopt when all were returned. Throws TimeoutError.
  std::optional<ServiceResult> next();
  // Up to `max` of the results that have arrived, waiting at most `timeout` (and no longer
  // than the range's own timeout) for the first; empty once all were returned. Throws
  // TimeoutError when the wait passes. For loops that collect many results at a time, and
  // for callers that wait in slices (a language binding checking for Ctrl-C).
  std::vector<ServiceResult> next_batch(size_t max, std::chrono::milliseconds timeout);
  size_t remaining() const;

 private:
  friend class ClientApplication;
  explicit CompletionRange(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

template <class R>
class Task;

class ClientApplication {
 public:
  explicit ClientApplication(ApplicationInformation info = {});
  ~ClientApplication();  // calls stop_application()
  ClientApplication(const ClientApplication&) = delete;
  ClientApplication& operator=(const ClientApplication&) = delete;

  // Starts the background connection. Returns at once, whether or not the scheduler is up.
  void start_application();
  // Cancels what this application still has on the cluster, drops uncollected results and
  // disconnects. Waiting calls in other threads throw std::runtime_error. May be called from a
  // progress callback.
  void stop_application();

  // Disconnects without cancelling: the tasks keep running to the end and their results wait
  // (for the scheduler's --keep-results) for an application started with the same
  // application_id, or for `lrts results --application-id ID`. Call flush() first so that every
  // submission has reached the scheduler.
  void detach_application();
  // Waits until the scheduler has acknowledged every task scheduled so far. False on timeout.
  [[nodiscard]] bool flush(std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

  // Queues one task and returns its service id at once.
  std::string schedule_service(const Service& service, const TaskOptions& options = {});
  // The same, as a handle that knows the result's type (what S::run returns):
  //   auto t = app.submit(MultService(6, 9));
  //   double v = t.get();
  template <class S>
  [[nodiscard]] Task<detail::run_result_t<S>> submit(const S& service,
                                                     const TaskOptions& options = {});
  // Same, with the service named and its fields already encoded as a MessagePack map (used by
  // tools and language bindings).
  std::string schedule_service(std::string_view service_name, std::string fields_msgpack,
                               const TaskOptions& options = {});

  // Waits for one result. Throws std::invalid_argument for an id this application does not
  // know (never scheduled, or its result was already returned).
  ServiceResult wait_for(const std::string& service_id);
  ServiceResult wait_for(const std::string& service_id, std::chrono::milliseconds timeout);
  // Waits for all, returns them in the order of `service_ids`.
  [[nodiscard]] std::vector<ServiceResult> wait_for_multi(
      const std::vector<std::string>& service_ids);
  [[nodiscard]] std::vector<ServiceResult> wait_for_multi(
      const std::vector<std::string>& service_ids, std::chrono::milliseconds timeout);
  // Yields results as they complete.
  [[nodiscard]] CompletionRange as_completed(const std::vector<std::string>& service_ids);
  [[nodiscard]] CompletionRange as_completed(const std::vector<std::string>& service_ids,
                                             std::chrono::milliseconds timeout);

  // Asks the cluster to stop a queued or running task; its result becomes `cancelled`. Returns
  // false if the id is unknown or already complete.
  [[nodiscard]] bool cancel(const std::string& service_id);

  // Progress bars of one task (latest known state), or of every task this application follows.
  std::vector<ProgressSnapshot> progress(const std::string& service_id) const;
  std::vector<ProgressSnapshot> progress() const;
  // Called with the bars that changed, on the background thread: keep it short.
  using ProgressCallback = std::function<void(const std::vector<ProgressSnapshot>& changed)>;
  void on_progress(ProgressCallback callback);
  // The stage shown in the terminal view's status line ("Waiting For Results").
  void set_stage(std::string stage);

  const std::string& application_id() const;
  // True once the scheduler has answered.
  bool connected() const;
  // Waits until the scheduler has welcomed this application and told it of its earlier runs'
  // tasks and the results waiting for it. False on timeout.
  [[nodiscard]] bool wait_connected(std::chrono::milliseconds timeout);
  // Ids whose results have not been collected yet: those scheduled here, and — once the
  // scheduler has welcomed an application restarted with the same application_id — those its
  // previous run scheduled (wait_connected first).
  std::vector<std::string> pending_service_ids() const;
  // The results that have arrived and were not collected yet, without waiting (after
  // wait_connected, every result that was waiting at the scheduler has arrived).
  [[nodiscard]] std::vector<ServiceResult> collect_ready();
  // How many results have arrived and wait to be collected.
  size_t results_waiting() const;
  // Why this application cannot go on, e.g. "scheduler rejected this application: application
  // id 'x' belongs to another key" (its waits throw with it); empty while it can.
  std::string failure() const;
  // The cluster's status as `lrts status` shows it (a query of its own to the scheduler, with
  // this application's key; throws AdminError when it gets no answer within `timeout`). For
  // workers, tasks, cancel and drain, see lrts::Admin (lrts/admin.hpp).
  ClusterStatus status(std::chrono::milliseconds timeout = std::chrono::seconds(5)) const;

  struct Impl;  // opaque

 private:
  void stop(bool detach);
  void check_started() const;
  std::unique_ptr<Impl> impl_;
};

// One scheduled task whose result is an R (what its service's run returns). Cheap to copy; it
// refers to its application, which must outlive it. Each result is handed out once: get() (or
// result()) on one copy collects it for all.
template <class R>
class Task {
 public:
  const std::string& id() const { return id_; }
  // Waits for the result and returns the value run returned. Throws ResultError if the task did
  // not finish (failed, cancelled, timed out) or its value does not convert to R, and
  // TimeoutError when the timeout passes first.
  R get() const { return value(app_->wait_for(id_)); }
  R get(std::chrono::milliseconds timeout) const { return value(app_->wait_for(id_, timeout)); }
  // The whole result (status, attempt, worker, run time), without converting.
  ServiceResult result() const { return app_->wait_for(id_); }
  [[nodiscard]] bool cancel() const { return app_->cancel(id_); }

 private:
  friend class ClientApplication;
  Task(ClientApplication* app, std::string id) : app_(app), id_(std::move(id)) {}
  static R value(const ServiceResult& r) {
    if constexpr (std::is_void_v<R>) {
      if (!r.ok()) r.service_result<msgpack::type::nil_t>();  // throws, saying why
    } else {
      return r.service_result<R>();
    }
  }
  ClientApplication* app_;
  std::string id_;
};

template <class S>
Task<detail::run_result_t<S>> ClientApplication::submit(const S& service,
                                                        const TaskOptions& options) {
  static_assert(std::is_base_of_v<Service, S>, "submit takes an lrts::Service");
  return Task<detail::run_result_t<S>>(this, schedule_service(service, options));
}

}  // namespace lrts
