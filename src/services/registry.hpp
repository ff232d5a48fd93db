// The process-wide registry of service types (name -> invoker). Filled by LRTS_REGISTER_SERVICE
// at static initialisation, including in libraries a slot dlopens. Thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "lrts/service.hpp"

namespace lrts::services {

// Null if no service of that name is registered. The pointer stays valid for the process.
const detail::ServiceType* find_service(std::string_view name);

// Loads a shared library of services (dlopen); its static registrations run now.
Status load_service_library(const std::string& path);

}  // namespace lrts::services
