// base::Mutex and base::MutexLock: std::mutex and a scoped lock on it, annotated as a clang
// thread-safety capability so that GUARDED_BY, REQUIRES and EXCLUDES are checked at compile time
// (base/thread_annotations.h). They add nothing at run time: a Mutex is a std::mutex, a MutexLock
// a std::unique_lock.
//
// Condition variables: wait through MutexLock::wait/wait_until. The predicate runs with the lock
// held, but clang analyses a lambda as a function of its own, so a predicate that reads guarded
// members says so: `lock.wait(cv_, [&]() REQUIRES(mu_) { return done_; })`.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "base/thread_annotations.h"

namespace tether::base {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void lock() ACQUIRE() { mu_.lock(); }
  void unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class MutexLock;
  std::mutex mu_;
};

class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex& mu) ACQUIRE(mu) : lock_(mu.mu_) {}
  ~MutexLock() RELEASE() {}
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

  // Let go early (before a notify, a callback or a blocking call), and take it again.
  void unlock() RELEASE() { lock_.unlock(); }
  void lock() ACQUIRE() { lock_.lock(); }

  void wait(std::condition_variable& cv) { cv.wait(lock_); }
  template <typename Pred>
  void wait(std::condition_variable& cv, Pred pred) {
    cv.wait(lock_, std::move(pred));
  }
  template <typename Clock, typename Dur>
  std::cv_status wait_until(std::condition_variable& cv, std::chrono::time_point<Clock, Dur> when) {
    return cv.wait_until(lock_, when);
  }
  template <typename Rep, typename Period, typename Pred>
  bool wait_for(std::condition_variable& cv, std::chrono::duration<Rep, Period> d, Pred pred) {
    return cv.wait_for(lock_, d, std::move(pred));
  }
  // False when `when` passed with `pred` still false.
  template <typename Clock, typename Dur, typename Pred>
  bool wait_until(std::condition_variable& cv, std::chrono::time_point<Clock, Dur> when, Pred pred) {
    return cv.wait_until(lock_, when, std::move(pred));
  }

 private:
  std::unique_lock<std::mutex> lock_;
};

}  // namespace tether::base
