#include "services/registry.hpp"

#include <dlfcn.h>

#include <map>
#include <memory>

#include "common/log.hpp"
#include "common/mutex.hpp"

namespace lrts {
namespace {

struct Registry {
  Mutex mu;
  // unique_ptr: entries never move, so find_service can hand out stable pointers.
  std::map<std::string, std::unique_ptr<detail::ServiceType>, std::less<>> types
      LRTS_GUARDED_BY(mu);
};

Registry& registry() {
  static Registry* r = new Registry;  // never destroyed: slots may look up during exit
  return *r;
}

}  // namespace

namespace detail {

void register_service_type(ServiceType type) {
  Registry& r = registry();
  MutexLock lock(r.mu);
  auto it = r.types.find(type.name);
  if (it != r.types.end()) {
    LRTS_WARN("service '{}' is registered twice; keeping the first registration", type.name);
    return;
  }
  std::string name = type.name;
  r.types.emplace(std::move(name), std::make_unique<ServiceType>(std::move(type)));
}

}  // namespace detail

std::vector<std::string> registered_services() {
  Registry& r = registry();
  MutexLock lock(r.mu);
  std::vector<std::string> names;
  names.reserve(r.types.size());
  for (const auto& [name, type] : r.types) names.push_back(name);
  return names;
}

namespace services {

const detail::ServiceType* find_service(std::string_view name) {
  Registry& r = registry();
  MutexLock lock(r.mu);
  auto it = r.types.find(name);
  return it == r.types.end() ? nullptr : it->second.get();
}

Status load_service_library(const std::string& path) {
  // RTLD_GLOBAL is not needed: the library links liblrts itself and registers through it.
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* why = ::dlerror();
    return make_error("cannot load service library " + path + ": " + (why ? why : "unknown"));
  }
  return {};  // never dlclose: the registry points into the library
}

}  // namespace services
}  // namespace lrts
