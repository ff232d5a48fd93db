// NameTable: interned names (services, workers) with reference counts, so that a name nothing
// refers to any more is forgotten: no peer can grow the table by sending names once each.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/slab.hpp"

namespace lrts::scheduler {

class NameTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // The id of `name`, with one more reference; kNone when the table is full.
  uint32_t acquire(std::string_view name) {
    auto it = index_.find(std::string(name));
    if (it != index_.end()) {
      ++names_[it->second].refs;
      return it->second;
    }
    if (index_.size() >= max_) return kNone;
    const uint32_t id = names_.alloc();
    names_[id].name.assign(name);
    names_[id].refs = 1;
    index_.emplace(names_[id].name, id);
    return id;
  }
  // One more reference to a name already held.
  void retain(uint32_t id) {
    if (id != kNone) ++names_[id].refs;
  }
  void release(uint32_t id) {
    if (id == kNone || --names_[id].refs > 0) return;
    index_.erase(names_[id].name);
    names_.free(id);
  }
  // The id of a held name without a new reference, or kNone.
  uint32_t find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? kNone : it->second;
  }
  const std::string& operator[](uint32_t id) const { return names_[id].name; }
  uint32_t refs(uint32_t id) const { return names_[id].refs; }
  size_t size() const { return index_.size(); }
  // Ids ever handed out (some may be free); for tables indexed by name id.
  uint32_t capacity() const { return names_.capacity(); }
  void set_max(size_t max) { max_ = max; }

 private:
  struct Entry {
    std::string name;
    uint32_t refs = 0;
  };
  Slab<Entry> names_;
  std::unordered_map<std::string, uint32_t> index_;
  size_t max_ = 1u << 20;
};

}  // namespace lrts::scheduler
