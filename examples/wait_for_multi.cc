// Run several services in parallel and wait for all of them (second usage example).
#include <iostream>

#include "services/mult_service.hpp"

int main(int argc, char** argv) {
  lrts::ApplicationInformation application_information;
  application_information.scheduler_port = argc > 1 ? std::stoi(argv[1]) : 5555;
  lrts::ClientApplication application(application_information);
  application.start_application();

  // Non-blocking.
  const std::string service_id_a = application.schedule_service(examples::MultService(6, 9));
  const std::string service_id_b = application.schedule_service(examples::MultService(1, 0));

  // Returns once all results are in, in the order of the ids given.
  const std::vector<lrts::ServiceResult> results =
      application.wait_for_multi({service_id_a, service_id_b});

  for (const lrts::ServiceResult& result : results) {
    std::cout << "Service with ID: " << result.service_id()
              << " finished with result: " << result.service_result<double>() << std::endl;
  }
  application.stop_application();
  return 0;
}
