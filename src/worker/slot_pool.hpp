// SlotPool: the slot processes of a worker — the I/O side of SlotControl. It starts each slot
// (the worker's own executable in slot mode, see slot_runtime.hpp) with a socketpair and a
// progress region, writes the frames the executor asks for, reads what slots say, reaps them,
// and reports all of it to the WorkerCore. Policy (what runs where, why a slot is killed) is the
// executor's; this only does what it is told.
//
// A slot runs in its own process group; killing a slot kills the group, so processes a task
// started die with it. Not thread-safe: the worker's loop owns it.
#pragma once

#include <zmq.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "common/result.hpp"
#include "common/unique_fd.hpp"
#include "protocol/framing.hpp"
#include "shm/region.hpp"
#include "worker/executor.hpp"

namespace lrts::worker {

class WorkerCore;

struct SlotPoolOptions {
  int slots = 1;
  // Command that starts a slot; the pool appends the slot flags.
  std::string executable;
  std::vector<std::string> service_libs;
  size_t max_frame_bytes = protocol::kDefaultMaxMessageBytes;
  uint32_t bars_per_slot = 256;   // progress bars a slot can show at once
  uint64_t max_result_bytes = 0;  // told to slots: a larger result fails its task there
};

class SlotPool final : public SlotControl {
 public:
  static constexpr Duration kMemoryCheckInterval = milliseconds(100);

  explicit SlotPool(SlotPoolOptions options);
  ~SlotPool() override;
  SlotPool(const SlotPool&) = delete;
  SlotPool& operator=(const SlotPool&) = delete;

  // Starts every slot and waits until each has said hello. Returns the services they offer, or
  // the slot's own reason it could not start (for instance a library that does not load).
  Result<std::vector<std::string>> start(Duration timeout);
  // Where slot events go from now on; every started slot is reported ready to it.
  void attach(WorkerCore* core, TimePoint now);
  // Kills every slot and reaps it (at exit).
  void stop();

  // SlotControl
  void start_slot(int slot) override;
  void run(int slot, const std::vector<uint32_t>& refs,
           const std::vector<const LocalTask*>& tasks) override;
  void recall(int slot, const std::vector<uint32_t>& refs) override;
  void kill(int slot) override;

  // Event loop plumbing: add poll items, then hand the polled items back.
  void add_poll_items(std::vector<zmq_pollitem_t>& items) const;
  void on_poll(const zmq_pollitem_t* items, TimePoint now);
  // After SIGCHLD: reaps dead slots (and strays of theirs).
  void reap(TimePoint now);
  // Reads busy slots' resident memory when the executor wants it: each slot's whole process
  // group (the programs a task started count against its --max-job-memory-mb too).
  void check_memory(TimePoint now);
  // Resident memory of this process and of every slot's process tree (at most a second old).
  uint64_t resident_total(TimePoint now);
  TimePoint next_memory_check() const { return next_memory_check_; }

  // Progress: bars that changed in busy slots' shared memory since the last call.
  void sample_progress(const std::vector<int>& busy, std::vector<protocol::BarState>& out);
  bool has_open_bars(const std::vector<int>& busy) const;

 private:
  struct Slot;
  Status spawn(Slot& slot);
  // Reads and handles what the slot sent; false if the slot broke the protocol (it is killed).
  bool read_slot(Slot& slot, TimePoint now);
  void slot_ended(Slot& slot, int wait_status, TimePoint now);
  std::vector<protocol::BarState> last_bars(Slot& slot);

  SlotPoolOptions options_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<std::string> services_;  // as the first slot reported them
  WorkerCore* core_ = nullptr;
  TimePoint next_memory_check_{};
  void refresh_tree_rss(TimePoint now);
  TimePoint next_group_scan_{};
  std::unordered_map<pid_t, uint64_t> group_rss_;  // resident bytes per slot: group and descendants
};

}  // namespace lrts::worker
