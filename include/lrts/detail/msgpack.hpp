// msgpack-c as lrts uses it, for the public headers that serialise (service fields, results).
// A user's build needs no msgpack settings of its own: lrts configures msgpack-c here without
// Boost and with API version 3 unless the includer already chose, and refuses a different API
// version (the library was built with 3).
#pragma once

#ifndef MSGPACK_NO_BOOST
#define MSGPACK_NO_BOOST
#endif
#ifndef MSGPACK_DEFAULT_API_VERSION
#define MSGPACK_DEFAULT_API_VERSION 3
#elif MSGPACK_DEFAULT_API_VERSION != 3
#error "lrts is built with MSGPACK_DEFAULT_API_VERSION 3"
#endif

#include <msgpack.hpp>
