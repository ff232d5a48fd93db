// `lrts progress`: attaches to a progress server and shows the live view of every application's
// tasks, or of one application's.
#pragma once

#include <string>

#include "common/clock.hpp"

namespace lrts::tui {

struct ViewerOptions {
  std::string address = "127.0.0.1";
  int port = 5454;
  std::string application_id;  // empty: all applications
  Duration run_for{0};         // zero: until SIGINT/SIGTERM
  // --auth: viewer.key (every bar) or else application.key (that application's bars only).
  std::string auth_dir;
};

int run_viewer(const ViewerOptions& options);

}  // namespace lrts::tui
