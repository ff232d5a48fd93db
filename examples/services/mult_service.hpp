// MultService: the original lrts's example service, a*b.
#pragma once

#include <lrts/lrts.hpp>
#include <string>

namespace examples {

class MultService : public lrts::Service {
 public:
  double a = 0;
  double b = 0;

  MultService() = default;
  MultService(double a_in, double b_in) : a(a_in), b(b_in) {}

  std::string service_name() const override { return "Multiplication Service Example"; }
  double run(lrts::TaskContext&) { return a * b; }

  LRTS_FIELDS(a, b);
};

}  // namespace examples
