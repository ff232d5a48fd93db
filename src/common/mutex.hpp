// Mutex, MutexLock and CondVar: std::mutex and std::condition_variable with clang's thread
// safety annotations, so that `-Wthread-safety` (on in the clang build) checks at compile time
// that what a mutex guards is only touched with it held (as LevelDB's port::Mutex does).
//
//   Mutex mu_;
//   int count_ LRTS_GUARDED_BY(mu_);
//   void add() LRTS_EXCLUDES(mu_) { MutexLock lock(mu_); ++count_; }
//
// A lambda run with the mutex held (a wait predicate) says so: [&]() LRTS_REQUIRES(mu_) {...}.
// With other compilers the annotations are empty.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define LRTS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define LRTS_THREAD_ANNOTATION(x)
#endif

#define LRTS_CAPABILITY(x) LRTS_THREAD_ANNOTATION(capability(x))
#define LRTS_SCOPED_CAPABILITY LRTS_THREAD_ANNOTATION(scoped_lockable)
#define LRTS_GUARDED_BY(x) LRTS_THREAD_ANNOTATION(guarded_by(x))
#define LRTS_PT_GUARDED_BY(x) LRTS_THREAD_ANNOTATION(pt_guarded_by(x))
#define LRTS_REQUIRES(...) LRTS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define LRTS_EXCLUDES(...) LRTS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define LRTS_ACQUIRE(...) LRTS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define LRTS_RELEASE(...) LRTS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define LRTS_NO_THREAD_SAFETY_ANALYSIS LRTS_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace lrts {

class LRTS_CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void lock() LRTS_ACQUIRE() { mu_.lock(); }
  void unlock() LRTS_RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class LRTS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) LRTS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~MutexLock() LRTS_RELEASE() { mu_.unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex& mu_;
};

// Waits with a Mutex held; the mutex is released while waiting and held again on return.
class CondVar {
 public:
  void wait(Mutex& mu) LRTS_REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // False if `deadline` passed (a steady-clock time; max() waits as long as it takes).
  template <class Clock, class Duration>
  bool wait_until(Mutex& mu, std::chrono::time_point<Clock, Duration> deadline) LRTS_REQUIRES(mu) {
    if (deadline == std::chrono::time_point<Clock, Duration>::max()) {
      wait(mu);
      return true;
    }
    std::unique_lock<std::mutex> lock(mu.mu_, std::adopt_lock);
    const bool woken = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return woken;
  }
  void notify_one() noexcept { cv_.notify_one(); }
  void notify_all() noexcept { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace lrts
