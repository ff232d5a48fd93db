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
  // The range-for over as_completed needs C++20, which lrts::lrts brings along.
  const std::string again = app.schedule_service(SquareService{});
  for (auto& r : app.as_completed({again}, std::chrono::seconds(60))) {
    if (!r.ok()) return 1;
  }
  // A typed handle: the result's type comes from SquareService::run.
  SquareService six;
  six.x = 6;
  auto task = app.submit(six);
  long long v = task.get();
  std::cout << "typed " << v << "\n";
  app.stop_application();
}
