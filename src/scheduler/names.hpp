// NameTable: interned names (services, workers) with reference counts, so that a name nothing
// refers to any more is forgotten: no peer can grow the table by sending names once each.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lrts::scheduler {

class NameTable {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // The id of `name`, with one more reference; kNone when the table is full.
  uint32_t acquire(std::string_view name) {
    auto it = index_.find(std::string(name));
    if (it != index_.end()) {
      ++refs_[it->second];
      return it->second;
    }
    if (index_.size() >= max_) return kNone;
    uint32_t id;
    if (free_.empty()) {
      id = static_cast<uint32_t>(names_.size());
      names_.emplace_back(name);
      refs_.push_back(1);
    } else {
      id = free_.back();
      free_.pop_back();
      names_[id].assign(name);
      refs_[id] = 1;
    }
    index_.emplace(names_[id], id);
    return id;
  }
  // One more reference to a name already held.
  void retain(uint32_t id) {
    if (id != kNone) ++refs_[id];
  }
  void release(uint32_t id) {
    if (id == kNone || --refs_[id] > 0) return;
    index_.erase(names_[id]);
    names_[id].clear();
    free_.push_back(id);
  }
  // The id of a held name without a new reference, or kNone.
  uint32_t find(std::string_view name) const {
    auto it = index_.find(std::string(name));
    return it == index_.end() ? kNone : it->second;
  }
  const std::string& operator[](uint32_t id) const { return names_[id]; }
  uint32_t refs(uint32_t id) const { return refs_[id]; }
  size_t size() const { return index_.size(); }
  // Ids ever handed out (some may be free); for tables indexed by name id.
  uint32_t capacity() const { return static_cast<uint32_t>(names_.size()); }
  void set_max(size_t max) { max_ = max; }

 private:
  std::vector<std::string> names_;
  std::vector<uint32_t> refs_;
  std::vector<uint32_t> free_;
  std::unordered_map<std::string, uint32_t> index_;
  size_t max_ = 1u << 20;
};

}  // namespace lrts::scheduler
