#include "lrts/service.hpp"

#include <algorithm>

#include "protocol/json.hpp"

namespace lrts::detail {

namespace {

std::string fields_json(std::string_view fields) {
  auto json = protocol::mp::to_json(fields);
  return json ? *json : "(not valid MessagePack)";
}

std::string join(const std::vector<std::string>& names) {
  if (names.empty()) return "none";
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

}  // namespace

void unpack_fields(Service& service, std::string_view fields,
                   const std::vector<std::string>& declared, FieldProbe probe) {
  if (fields.empty()) {
    msgpack::object empty_map;
    empty_map.type = msgpack::type::MAP;
    empty_map.via.map.size = 0;
    empty_map.via.map.ptr = nullptr;
    service.lrts_unpack_fields(empty_map);
    return;
  }
  msgpack::object_handle oh;
  try {
    // Strings and binaries stay where they are (the fields outlive `oh`): a large field is
    // copied once, into the service, not twice.
    oh = msgpack::unpack(fields.data(), fields.size(),
                         [](msgpack::type::object_type, std::size_t, void*) { return true; });
  } catch (const std::exception& e) {
    throw FieldsError(std::string("fields are not valid MessagePack: ") + e.what());
  }
  const msgpack::object& o = oh.get();
  if (o.type != msgpack::type::MAP) {
    throw FieldsError("fields must be a map of field name to value, got " + fields_json(fields));
  }
  for (uint32_t i = 0; i < o.via.map.size; ++i) {
    const msgpack::object& key = o.via.map.ptr[i].key;
    if (key.type != msgpack::type::STR) {
      throw FieldsError("field names must be strings, got " + fields_json(fields));
    }
    const std::string_view name(key.via.str.ptr, key.via.str.size);
    if (std::find(declared.begin(), declared.end(), name) == declared.end()) {
      throw FieldsError("unknown field '" + std::string(name) +
                        "' (the service declares: " + join(declared) + ")");
    }
  }
  try {
    service.lrts_unpack_fields(o);
  } catch (const std::exception& e) {
    const std::string bad = probe ? probe(o) : std::string();
    if (!bad.empty()) {
      std::string value = "?";
      for (uint32_t i = 0; i < o.via.map.size; ++i) {
        const msgpack::object& k = o.via.map.ptr[i].key;
        if (std::string_view(k.via.str.ptr, k.via.str.size) == bad) {
          msgpack::sbuffer one;
          msgpack::pack(one, o.via.map.ptr[i].val);
          value = fields_json({one.data(), one.size()});
        }
      }
      throw FieldsError("field '" + bad + "' has the wrong type (got " + value + ")");
    }
    throw FieldsError("fields " + fields_json(fields) + " do not fit the declared types (" +
                      e.what() + ")");
  }
}

}  // namespace lrts::detail
