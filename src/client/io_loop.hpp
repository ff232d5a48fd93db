// The I/O thread of a ClientApplication: it alone owns the ZeroMQ sockets (to the scheduler and
// to the progress server) and the SessionCore. User threads hand it work through an Outbox and
// wake it through an eventfd; it hands results to the ResultBoard and bars to the ProgressCache.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "client/board.hpp"
#include "client/progress_cache.hpp"
#include "client/session.hpp"
#include "common/unique_fd.hpp"
#include "lrts/client.hpp"
#include "net/auth.hpp"
#include "tui/view.hpp"

namespace lrts::client {

// What user threads give the I/O thread. Thread-safe.
class Outbox {
 public:
  Outbox();
  // True if the I/O thread needed waking (the outbox was empty).
  void submit(Submission s);
  void cancel(const TaskKey& key);
  void stop(bool detach);
  void wake() const;
  int wake_fd() const { return wake_.get(); }
  void drain_wake() const;

  struct Work {
    std::vector<Submission> submissions;
    std::vector<TaskKey> cancels;
    bool stopping = false;
    bool detach = false;
  };
  Work take();
  bool empty() const;

 private:
  mutable Mutex mu_;
  std::vector<Submission> submissions_ LRTS_GUARDED_BY(mu_);
  std::vector<TaskKey> cancels_ LRTS_GUARDED_BY(mu_);
  bool stopping_ LRTS_GUARDED_BY(mu_) = false;
  bool detach_ LRTS_GUARDED_BY(mu_) = false;
  UniqueFd wake_;
};

struct IoContext {
  ApplicationInformation info;
  std::string application_id;
  uint64_t session = 0;
  std::shared_ptr<ResultBoard> board;
  ProgressCache* progress = nullptr;
  tui::TerminalView* view = nullptr;  // the terminal view, when shown
  Outbox* outbox = nullptr;
  std::optional<net::ClientAuth> auth;  // from info.auth_dir
};

// Runs until the outbox says stop (then says BYE or DETACH), or the connection cannot work.
void run_io(IoContext context);

}  // namespace lrts::client
