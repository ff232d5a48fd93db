// lrts — Long Running Task Service. The one header an application or a service library needs.
#pragma once

#include "lrts/client.hpp"
#include "lrts/result.hpp"
#include "lrts/service.hpp"
#include "lrts/worker_main.hpp"
