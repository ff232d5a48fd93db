// SignalPipe: turns asynchronous signals into readable bytes on a non-blocking pipe, so an event
// loop can poll for them next to its sockets (the self-pipe trick; works whatever threads
// libzmq has started). One instance per process.
#pragma once

#include <initializer_list>
#include <vector>

#include "common/unique_fd.hpp"

namespace lrts {

class SignalPipe {
 public:
  explicit SignalPipe(std::initializer_list<int> signals);
  ~SignalPipe();
  SignalPipe(const SignalPipe&) = delete;
  SignalPipe& operator=(const SignalPipe&) = delete;

  int fd() const { return read_.get(); }
  // Signals received since the last call, in arrival order.
  std::vector<int> drain();

 private:
  UniqueFd read_;
  UniqueFd write_;
  std::vector<int> signals_;
};

}  // namespace lrts
