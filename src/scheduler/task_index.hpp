// TaskIndex: task key -> slot in the scheduler's task table, as a flat open-addressing hash set
// of 4-byte slot numbers (linear probing, tombstones). The keys live in the task table, so an
// entry costs 4 bytes at a load of at most 0.7 (6-12 bytes per task) instead of a ~56-byte node.
// Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "protocol/ids.hpp"

namespace lrts::scheduler {

class TaskIndex {
 public:
  static constexpr uint32_t kNone = UINT32_MAX;

  // `key_of(slot)` returns the key stored at that task slot.
  template <class KeyOf>
  uint32_t find(const protocol::TaskKey& key, KeyOf key_of) const {
    if (slots_.empty()) return kNone;
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      const uint32_t s = slots_[i];
      if (s == kEmpty) return kNone;
      if (s != kTombstone && key_of(s) == key) return s;
    }
  }

  // The key must not be present.
  template <class KeyOf>
  void insert(const protocol::TaskKey& key, uint32_t slot, KeyOf key_of) {
    if ((used_ + 1) * 10 > slots_.size() * 7) grow(key_of);
    size_t i = home(key);
    while (slots_[i] != kEmpty && slots_[i] != kTombstone) i = (i + 1) & mask_;
    if (slots_[i] == kEmpty) ++used_;
    slots_[i] = slot;
    ++size_;
  }

  template <class KeyOf>
  bool erase(const protocol::TaskKey& key, KeyOf key_of) {
    if (slots_.empty()) return false;
    for (size_t i = home(key);; i = (i + 1) & mask_) {
      const uint32_t s = slots_[i];
      if (s == kEmpty) return false;
      if (s != kTombstone && key_of(s) == key) {
        slots_[i] = kTombstone;
        --size_;
        return true;
      }
    }
  }

  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kEmpty = UINT32_MAX;
  static constexpr uint32_t kTombstone = UINT32_MAX - 1;

  size_t home(const protocol::TaskKey& key) const { return protocol::TaskKeyHash{}(key)&mask_; }

  template <class KeyOf>
  void grow(KeyOf key_of) {
    // Double when really full; otherwise the same size again, clearing tombstones.
    size_t n = slots_.empty() ? 64 : slots_.size();
    while ((size_ + 1) * 10 > n * 5) n *= 2;
    std::vector<uint32_t> old;
    old.swap(slots_);
    slots_.assign(n, kEmpty);
    mask_ = n - 1;
    used_ = 0;
    size_ = 0;
    for (uint32_t s : old) {
      if (s != kEmpty && s != kTombstone) insert(key_of(s), s, key_of);
    }
  }

  std::vector<uint32_t> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;  // live entries
  size_t used_ = 0;  // live entries and tombstones
};

}  // namespace lrts::scheduler
