// The benchmark services' library: what bench_services.hpp declares, registered.
#include "bench_services.hpp"

LRTS_REGISTER_SERVICE(bench_services::Noop);
LRTS_REGISTER_SERVICE(bench_services::Spin);
LRTS_REGISTER_SERVICE(bench_services::Sleep);
LRTS_REGISTER_SERVICE(bench_services::Bytes);
LRTS_REGISTER_SERVICE(bench_services::Clock);
LRTS_REGISTER_SERVICE(bench_services::SpinProgress);
