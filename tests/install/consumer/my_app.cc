#include <iostream>

#include "square_service.hpp"

int main(int argc, char** argv) {
  lrts::ApplicationInformation info;
  info.scheduler_port = std::stoi(argv[1]);
  lrts::ClientApplication app(info);
  app.start_application();
  std::vector<std::string> ids;
  for (long long x : {3, 4, 5}) {
    SquareService s;
    s.x = x;
    ids.push_back(app.schedule_service(s));
  }
  for (const auto& r : app.wait_for_multi(ids, std::chrono::seconds(60))) {
    std::cout << "square " << r.service_result<long long>() << "\n";
  }
  app.stop_application();
}
