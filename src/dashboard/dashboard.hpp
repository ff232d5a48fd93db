// `lrts dashboard`: a web page of the running cluster, served from assets built into the binary.
//
// DESIGN
// A separate process, a client like any other: it asks the scheduler through the query protocol
// (lrts::Admin) and follows every bar through a progress-server subscription, with the keys it
// is given (--auth: admin.key or viewer.key). The daemons stay free of HTTP (only their
// read-only /metrics text), a browser's load never reaches the scheduler's loop except as
// bounded queries, and the dashboard can run on an operator's machine. Once a second its loop
// takes the cluster's status into a 10-minute history and posts it to every open event stream
// (server-sent events); pages of workers and tasks are fetched by the page as it shows them.
#pragma once

#include <string>

namespace lrts::dashboard {

struct DashboardOptions {
  std::string address = "127.0.0.1";  // HTTP; anything but loopback needs `insecure`
  int port = 8265;
  std::string scheduler_address = "127.0.0.1";
  int scheduler_port = 5555;
  std::string progress_address = "127.0.0.1";
  int progress_port = 5454;
  std::string auth_dir;
  bool insecure = false;
};

// Serves until SIGINT or SIGTERM; returns the exit code. Prints the URL once it listens.
int run_dashboard(const DashboardOptions& options);

// The page (generated from src/dashboard/assets/index.html).
extern const char* const kIndexHtml;

}  // namespace lrts::dashboard
