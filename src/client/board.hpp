// ResultBoard: the results a ClientApplication's users wait for. Shared by user threads (they
// wait and collect) and the I/O thread (it delivers), under one mutex.
//
// A key is pending from schedule_service (or adoption after a restart) until its result
// arrives, then ready until a wait hands it out; handing out makes it collected, which the I/O
// thread reports to the scheduler (it may forget the result). Each result is handed out once.
// as_completed registers a subscription that takes its keys' results in arrival order.
// Thread-safe.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/clock.hpp"
#include "common/mutex.hpp"
#include "lrts/client.hpp"
#include "protocol/ids.hpp"

namespace lrts::client {
class ResultBoard;
}  // namespace lrts::client

namespace lrts {

// What an as_completed range waits for; it keeps its board alive, so a range outliving its
// application only ends (it throws "stopped") instead of touching freed state.
struct CompletionRange::State {
  std::shared_ptr<client::ResultBoard> board;
  std::unordered_set<protocol::TaskKey, protocol::TaskKeyHash> wanted;  // not yet arrived
  std::deque<ServiceResult> arrived;                                    // arrived, not returned
  size_t remaining = 0;
  TimePoint deadline = TimePoint::max();
};

}  // namespace lrts

namespace lrts::client {

using protocol::TaskKey;
using protocol::TaskKeyHash;

class ResultBoard {
 public:
  // `wake_io` tells the I/O thread there is something to send (collected results).
  explicit ResultBoard(std::function<void()> wake_io) : wake_io_(std::move(wake_io)) {}

  // ---- scheduling (user threads) ----
  void add_pending(const TaskKey& key);
  // Forgets a key that was never sent (schedule_service failed after add_pending).
  void drop_pending(const TaskKey& key);
  bool is_pending(const TaskKey& key) const;

  // ---- the I/O thread ----
  void deliver(const TaskKey& key, ServiceResult result);
  void adopt(const std::vector<TaskKey>& keys);
  std::vector<TaskKey> take_collected();
  void set_connected(bool connected);
  // How many submissions the scheduler has acknowledged so far, in all.
  void set_acknowledged(uint64_t total);
  // The session cannot work: every wait throws with this reason.
  void fail(const std::string& why);
  // Stopped: every wait throws.
  void close();

  // ---- user threads ----
  // The reason given to fail(), or empty.
  std::string failure() const {
    MutexLock lock(mu_);
    return fatal_;
  }
  ServiceResult wait_for(const TaskKey& key, const std::string& id, TimePoint deadline);
  std::vector<ServiceResult> wait_for_multi(const std::vector<TaskKey>& keys,
                                            const std::vector<std::string>& ids,
                                            TimePoint deadline);
  // For as_completed: the subscription state (results move into it as they arrive).
  std::unique_ptr<CompletionRange::State> subscribe(const std::vector<TaskKey>& keys,
                                                    const std::vector<std::string>& ids,
                                                    TimePoint deadline,
                                                    std::shared_ptr<ResultBoard> self);
  void unsubscribe(CompletionRange::State* state);
  std::optional<ServiceResult> next(CompletionRange::State& state);
  // Up to `max` arrived results, waiting until min(the range's deadline, `deadline`) for one.
  std::vector<ServiceResult> next_batch(CompletionRange::State& state, size_t max,
                                        TimePoint deadline);
  size_t remaining(const CompletionRange::State& state) const;

  bool connected() const;
  bool wait_connected(TimePoint deadline);
  // Waits until every task scheduled before the call is acknowledged, or the deadline.
  bool wait_acknowledged(TimePoint deadline);
  std::vector<TaskKey> outstanding() const;
  // Results that arrived and were not collected yet, taken without waiting.
  std::vector<ServiceResult> take_ready();
  size_t ready_count() const;
  // Wakes waiters (the outbox emptied, say).
  void notify();

 private:
  // Throws if waiting can never succeed.
  void check_usable() const LRTS_REQUIRES(mu_);
  // Waits until pred() holds; throws TimeoutError past `deadline`, or if waiting cannot succeed.
  template <class Pred>
  void wait_until(TimePoint deadline, Pred pred, const std::string& what) LRTS_REQUIRES(mu_);
  void collect_locked(const TaskKey& key) LRTS_REQUIRES(mu_);

  std::function<void()> wake_io_;
  // Guards the board and the subscriptions' State (wanted, arrived, remaining).
  mutable Mutex mu_;
  CondVar cv_;
  std::unordered_set<TaskKey, TaskKeyHash> pending_ LRTS_GUARDED_BY(mu_);
  std::unordered_map<TaskKey, ServiceResult, TaskKeyHash> ready_ LRTS_GUARDED_BY(mu_);
  std::vector<CompletionRange::State*> subscriptions_ LRTS_GUARDED_BY(mu_);
  std::vector<TaskKey> collected_ LRTS_GUARDED_BY(mu_);
  uint64_t scheduled_ LRTS_GUARDED_BY(mu_) = 0;  // add_pending calls of this run
  uint64_t acked_ LRTS_GUARDED_BY(mu_) = 0;
  bool connected_ LRTS_GUARDED_BY(mu_) = false;
  bool closed_ LRTS_GUARDED_BY(mu_) = false;
  std::string fatal_ LRTS_GUARDED_BY(mu_);
};

}  // namespace lrts::client
