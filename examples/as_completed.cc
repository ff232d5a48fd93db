// Run several services and handle each result as soon as it completes (third usage example).
#include <iostream>

#include "services/mult_service.hpp"

int main(int argc, char** argv) {
  lrts::ApplicationInformation application_information;
  application_information.scheduler_port = argc > 1 ? std::stoi(argv[1]) : 5555;
  lrts::ClientApplication application(application_information);
  application.start_application();

  const std::vector<std::string> service_ids = {
      application.schedule_service(examples::MultService(6, 9)),
      application.schedule_service(examples::MultService(1, 0)),
      application.schedule_service(examples::MultService(2, 4)),
  };

  // In completion order, not submission order.
  for (const lrts::ServiceResult& result : application.as_completed(service_ids)) {
    std::cout << "Service with ID: " << result.service_id()
              << " finished with result: " << result.service_result<double>() << std::endl;
  }
  application.stop_application();
  return 0;
}
