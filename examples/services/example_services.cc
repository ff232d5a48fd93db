// The example service library: `lrts worker --service-lib libexample_services.so`.
#include "services/mult_service.hpp"
#include "services/progress_tracked_service.hpp"

LRTS_REGISTER_SERVICE(examples::MultService);
LRTS_REGISTER_SERVICE(examples::ProgressTrackedService);
