// An application the tests can kill: schedules N test.sleep tasks, prints their ids, waits until
// the scheduler has acknowledged them all, prints READY, then (with "hold") waits until every
// result has arrived, uncollected, and prints RECEIVED; then waits forever.
//   lrts_test_app PORT APPLICATION_ID COUNT SLEEP_MS [GRACE_MS [hold]]
#include <unistd.h>

#include <cstdio>
#include <string>

#include "services/test_services.hpp"

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: lrts_test_app PORT APPLICATION_ID COUNT SLEEP_MS [GRACE_MS]\n");
    return 2;
  }
  lrts::ApplicationInformation info;
  info.scheduler_port = std::stoi(argv[1]);
  info.application_id = argv[2];
  info.track_progress = false;
  if (argc > 5) info.disconnect_grace = std::chrono::milliseconds(std::stoll(argv[5]));
  lrts::ClientApplication app(info);
  app.start_application();
  test_services::SleepService s;
  s.ms = std::stoi(argv[4]);
  for (int i = 0; i < std::stoi(argv[3]); ++i) {
    s.value = i;
    std::printf("%s\n", app.schedule_service(s).c_str());
  }
  if (!app.flush(std::chrono::seconds(30))) return 1;
  std::printf("READY\n");
  std::fflush(stdout);
  if (argc > 6 && std::string(argv[6]) == "hold") {
    while (app.results_waiting() < static_cast<size_t>(std::stoi(argv[3]))) ::usleep(10'000);
    std::printf("RECEIVED\n");
    std::fflush(stdout);
  }
  for (;;) ::pause();  // until killed
}
