// Slab<T>: records in one vector, reused through a free list, each with a generation that
// changes when the record is reused — so a (index, generation) handle kept elsewhere (a queue
// entry, a timer) can tell that its record is gone without being searched for and erased.
// The free-list pattern every table of the daemons uses, once. Not thread-safe.
#pragma once

#include <cstdint>
#include <vector>

#include "common/check.hpp"

namespace lrts {

inline constexpr uint32_t kNoIndex = UINT32_MAX;

// A record in a slab, as held elsewhere.
struct SlabHandle {
  uint32_t index = kNoIndex;
  uint32_t gen = 0;
};

template <class T>
class Slab {
 public:
  // A fresh record (default-constructed), and its index.
  uint32_t alloc() {
    uint32_t i;
    if (free_.empty()) {
      i = static_cast<uint32_t>(items_.size());
      items_.emplace_back();
      gens_.push_back(0);
      used_.push_back(false);
    } else {
      i = free_.back();
      free_.pop_back();
      items_[i] = T{};
    }
    ++gens_[i];
    used_[i] = true;
    ++live_;
    return i;
  }
  void free(uint32_t i) {
    LRTS_CHECK(used(i), "a slab record freed twice, or never allocated");
    items_[i] = T{};
    ++gens_[i];  // every handle to it goes stale
    used_[i] = false;
    --live_;
    free_.push_back(i);
  }

  T& operator[](uint32_t i) {
    LRTS_CHECK(i < items_.size(), "a slab index out of range");
    return items_[i];
  }
  const T& operator[](uint32_t i) const {
    LRTS_CHECK(i < items_.size(), "a slab index out of range");
    return items_[i];
  }
  bool used(uint32_t i) const { return i < used_.size() && used_[i]; }
  uint32_t gen(uint32_t i) const { return gens_[i]; }
  SlabHandle handle(uint32_t i) const { return {i, gens_[i]}; }
  // The record, if the handle still names it.
  bool valid(SlabHandle h) const { return used(h.index) && gens_[h.index] == h.gen; }
  // Every index ever allocated (check used()).
  uint32_t capacity() const { return static_cast<uint32_t>(items_.size()); }
  size_t live() const { return live_; }
  void reserve(size_t n) {
    items_.reserve(n);
    gens_.reserve(n);
    used_.reserve(n);
  }

 private:
  std::vector<T> items_;
  std::vector<uint32_t> gens_;
  std::vector<bool> used_;
  std::vector<uint32_t> free_;
  size_t live_ = 0;
};

// An intrusive doubly linked list of slab records: each record has a `Links` member per list
// it can be on, and the list's owner keeps a ListHead.
struct Links {
  uint32_t prev = kNoIndex;
  uint32_t next = kNoIndex;
};

struct ListHead {
  uint32_t first = kNoIndex;
  uint32_t size = 0;
};

template <class T, Links T::*L>
struct IntrusiveList {
  static void push_front(Slab<T>& slab, ListHead& head, uint32_t i) {
    Links& l = slab[i].*L;
    l.prev = kNoIndex;
    l.next = head.first;
    if (head.first != kNoIndex) (slab[head.first].*L).prev = i;
    head.first = i;
    ++head.size;
  }
  static void erase(Slab<T>& slab, ListHead& head, uint32_t i) {
    Links& l = slab[i].*L;
    if (l.prev != kNoIndex) {
      (slab[l.prev].*L).next = l.next;
    } else {
      head.first = l.next;
    }
    if (l.next != kNoIndex) (slab[l.next].*L).prev = l.prev;
    l = Links{};
    LRTS_CHECK(head.size > 0, "a record erased from an empty list");
    --head.size;
  }
  // Calls f(index) for each member; f may not erase members other than the one it is given.
  template <class F>
  static void for_each(Slab<T>& slab, const ListHead& head, F f) {
    for (uint32_t i = head.first; i != kNoIndex;) {
      const uint32_t next = (slab[i].*L).next;
      f(i);
      i = next;
    }
  }
};

}  // namespace lrts
