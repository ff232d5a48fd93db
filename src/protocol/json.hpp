// MessagePack → JSON text, for printing user values (CLI, logs, ServiceResult::to_json).
#pragma once

#include <string>
#include <string_view>

#include "common/result.hpp"

namespace lrts::protocol::mp {

// Maps become objects (non-string keys are rendered as JSON text), binaries become base64
// strings, extension types become {"ext": type, "base64": ...}. Fails on malformed input.
Result<std::string> to_json(std::string_view msgpack);

// Appends `s` as a quoted, escaped JSON string.
void append_json_string(std::string& out, std::string_view s);

}  // namespace lrts::protocol::mp
