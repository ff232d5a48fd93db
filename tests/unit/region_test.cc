// The slot's bar allocator and the worker's sampler on one shared-memory region.
#include "shm/region.hpp"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

namespace lrts::shm {
namespace {

TEST(ProgressRegionTest, SamplerSeesBarsAdvanceAndClose) {
  auto region = ProgressRegion::create(8);
  ASSERT_TRUE(region.ok()) << region.error();
  // The slot maps the same memory through the file descriptor.
  auto slot_view = ProgressRegion::attach(::dup(region->fd()));
  ASSERT_TRUE(slot_view.ok()) << slot_view.error();
  BarAllocator alloc(&*slot_view);
  Sampler sampler(&*region);

  alloc.begin_task({5, 6}, 2);
  ProgressBar a = alloc.create("Doing Work", 42, "iterations");
  ProgressBar b = alloc.create(std::string(100, 'x'), 0, "");
  for (int i = 0; i < 20; ++i) a.advance();
  std::vector<protocol::BarState> seen;
  sampler.scan(monotonic_ns(), seen);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].key, (protocol::TaskKey{5, 6}));
  EXPECT_EQ(seen[0].attempt, 2u);
  EXPECT_EQ(seen[0].description, "Doing Work");
  EXPECT_EQ(seen[0].count, 20u);
  EXPECT_EQ(seen[0].total, 42u);
  EXPECT_EQ(seen[1].description.size(), 47u);  // cut to fit
  EXPECT_EQ(seen[1].unit, "it");

  seen.clear();
  sampler.scan(monotonic_ns(), seen);
  EXPECT_TRUE(seen.empty());  // nothing changed

  a.set_total(50);
  a.advance(5);
  b.close();
  sampler.scan(monotonic_ns(), seen);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].count, 25u);
  EXPECT_EQ(seen[0].total, 50u);
  EXPECT_TRUE(seen[1].closed());

  auto finals = alloc.end_task();
  ASSERT_EQ(finals.size(), 2u);
  EXPECT_EQ(finals[0].count, 25u);
  // Left open by the task: it ends as the task does (the worker decides); closed ones are done.
  EXPECT_EQ(finals[0].phase, protocol::BarPhase::kOpen);
  EXPECT_EQ(finals[1].phase, protocol::BarPhase::kDone);
  EXPECT_EQ(finals[1].bar_no, 1u);
}

TEST(ProgressRegionTest, CellsAreReusedByTheNextTaskAndExtraBarsAreDetached) {
  auto region = ProgressRegion::create(2);
  ASSERT_TRUE(region.ok());
  BarAllocator alloc(&*region);
  alloc.begin_task({1, 1}, 1);
  EXPECT_FALSE(alloc.create("a", 1, "it").detached());
  EXPECT_FALSE(alloc.create("b", 1, "it").detached());
  ProgressBar extra = alloc.create("c", 1, "it");
  EXPECT_TRUE(extra.detached());
  extra.advance();  // counts nowhere, harmlessly
  EXPECT_EQ(alloc.end_task().size(), 2u);
  alloc.begin_task({1, 2}, 1);
  EXPECT_FALSE(alloc.create("d", 1, "it").detached());
}

TEST(ProgressRegionTest, AttachRejectsForeignMemory) {
  const int fd = ::memfd_create("junk", MFD_CLOEXEC);
  ASSERT_EQ(::ftruncate(fd, 4096), 0);
  EXPECT_FALSE(ProgressRegion::attach(fd).ok());
  ::close(fd);
}

}  // namespace
}  // namespace lrts::shm
