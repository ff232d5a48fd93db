// Run services that report progress and watch them live (the original lrts's "detailed progress
// bars" example): a status line with the current stage, then one bar per task, redrawn in place.
//   example_detailed_progress [scheduler port] [progress server port] [tasks] [ms per step]
#include <iostream>

#include "services/progress_tracked_service.hpp"

int main(int argc, char** argv) {
  lrts::ApplicationInformation application_information;
  application_information.scheduler_port = argc > 1 ? std::stoi(argv[1]) : 5555;
  application_information.progress_server_port = argc > 2 ? std::stoi(argv[2]) : 5454;
  application_information.show_progress = true;  // the live terminal view
  const int tasks = argc > 3 ? std::stoi(argv[3]) : 6;
  examples::ProgressTrackedService service;
  if (argc > 4) service.sleep_ms = std::stoi(argv[4]);

  lrts::ClientApplication application(application_information);
  application.start_application();

  application.set_stage("Scheduling Work");
  std::vector<std::string> service_ids;
  for (int i = 0; i < tasks; ++i) {
    service_ids.push_back(application.schedule_service(service));
  }

  application.set_stage("Waiting For Results");
  for (const lrts::ServiceResult& result : application.as_completed(service_ids)) {
    // Printed above the bars while they keep moving.
    std::cout << "Service with ID: " << result.service_id() << " finished after "
              << result.service_result<int>() << " iterations" << std::endl;
  }
  application.set_stage("Done");
  application.stop_application();
  return 0;
}
