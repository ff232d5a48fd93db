// Schedule one service and wait for its result (the original lrts's first usage example).
#include <iostream>

#include "services/mult_service.hpp"

int main(int argc, char** argv) {
  lrts::ApplicationInformation application_information;
  application_information.scheduler_address = "127.0.0.1";
  application_information.scheduler_port = argc > 1 ? std::stoi(argv[1]) : 5555;

  // The main resource for sending and receiving results to/from the cluster.
  lrts::ClientApplication application(application_information);

  // Connect in the background; the scheduler does not have to be running yet.
  application.start_application();

  examples::MultService service(6, 9);
  const std::string service_id = application.schedule_service(service);  // queued, id at once
  const lrts::ServiceResult result = application.wait_for(service_id);   // blocks

  std::cout << "Service with ID: " << service_id
            << " finished with result: " << result.service_result<double>() << std::endl;

  // Disconnect; anything still queued for this application is discarded.
  application.stop_application();
  return 0;
}
