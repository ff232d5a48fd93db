// Journal batches on arbitrary bytes, applied to an in-memory journal and loaded back: a bad
// batch is refused, never half applied into a state that cannot be loaded.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "scheduler/journal_store.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto store = lrts::scheduler::JournalStore::open(":memory:", false);
  if (!store) std::abort();
  lrts::scheduler::JournalStats stats;
  const std::vector<std::string> batches = {std::string(reinterpret_cast<const char*>(data), size)};
  (void)(*store)->apply(batches, &stats);
  auto state = (*store)->load();
  if (!state) std::abort();  // whatever was applied must load
  return 0;
}
