#pragma once
#include <lrts/lrts.hpp>

class SquareService : public lrts::Service {
 public:
  long long x = 0;
  std::string service_name() const override { return "consumer.square"; }
  long long run(lrts::TaskContext&) { return x * x; }
  LRTS_FIELDS(x);
};
