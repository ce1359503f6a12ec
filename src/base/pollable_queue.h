// A bounded FIFO whose consumer can poll(2) a file descriptor: fd() is readable while items wait.
// The producer asks has_room() before it takes on more work (backpressure: it stops reading its
// input rather than dropping), and can poll space_fd(), made readable when a full queue drains
// below half. Thread-safe: any number of producers and consumers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <optional>
#include <vector>

#include "base/clock.h"
#include "base/event_fd.h"
#include "base/mutex.h"

namespace tether::base {

template <typename T>
class PollableQueue {
 public:
  explicit PollableQueue(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}

  int fd() const { return ready_.fd(); }
  int space_fd() const { return space_.fd(); }
  std::size_t capacity() const { return capacity_; }

  // `pending`: items the producer holds back to push_all() later, counted as queued.
  bool has_room(std::size_t pending = 0) const {
    MutexLock lock(mu_);
    return items_.size() + pending < capacity_;
  }
  std::size_t size() const {
    MutexLock lock(mu_);
    return items_.size();
  }
  // How many more items fit now (has_room(n) is n < room(), until something is pushed).
  std::size_t room() const {
    MutexLock lock(mu_);
    return items_.size() < capacity_ ? capacity_ - items_.size() : 0;
  }

  // Appends even when full: callers check has_room() first where backpressure applies; status
  // events and the last lines of a dead bridge are few and must not be lost. What consumers
  // recycle()d is destroyed here, after the lock is released.
  void push(T item) {
    bool was_empty;
    std::vector<T> spent;
    {
      MutexLock lock(mu_);
      was_empty = items_.empty();
      items_.push_back(std::move(item));
      if (items_.size() > high_water_) high_water_ = items_.size();
      spent.swap(spent_);
    }
    if (was_empty) {
      ready_.notify();
      cv_.notify_all();
    }
  }

  // Appends all of `items` (emptied) at once: a consumer sees all of them or none, and is woken
  // once. Like push(), it appends even when full, and destroys what consumers recycle()d.
  void push_all(std::vector<T>& items) {
    if (items.empty()) return;
    bool was_empty;
    std::vector<T> spent;
    {
      MutexLock lock(mu_);
      was_empty = items_.empty();
      for (auto& item : items) items_.push_back(std::move(item));
      if (items_.size() > high_water_) high_water_ = items_.size();
      spent.swap(spent_);
    }
    items.clear();
    if (was_empty) {
      ready_.notify();
      cv_.notify_all();
    }
  }

  // Items a consumer is done with, handed back so that the producer's next push or push_all
  // destroys them on the producer's thread. glibc's malloc is slow when one thread allocates and
  // another frees, every time: the producer finds its thread cache always empty and takes the
  // arena's slow path (a notification flood spent a quarter of the dispatcher's time there, issue
  // 17). At most capacity() items are held, until that push or until the queue goes; past that,
  // `done` is left as it is, for the caller to destroy.
  void recycle(std::vector<T>&& done) {
    if (done.empty()) return;
    MutexLock lock(mu_);
    if (spent_.size() + done.size() > capacity_) return;
    if (spent_.empty()) {
      spent_.swap(done);
    } else {
      for (auto& item : done) spent_.push_back(std::move(item));
      done.clear();
    }
  }

  // Everything waiting, oldest first; clears fd()'s readiness. Never blocks.
  std::vector<T> drain() {
    std::vector<T> out;
    ready_.clear();
    bool freed;
    {
      MutexLock lock(mu_);
      freed = items_.size() >= capacity_ / 2;
      out.reserve(items_.size());
      for (auto& item : items_) out.push_back(std::move(item));
      items_.clear();
    }
    if (freed) space_.notify();
    return out;
  }

  // Like drain(), but when nothing waits it returns at once and leaves fd() as it is (no system
  // call): for a consumer that drains again, with drain(), before it next polls fd().
  std::vector<T> drain_if_any() {
    {
      MutexLock lock(mu_);
      if (items_.empty()) return {};
    }
    return drain();
  }

  // The oldest item, waiting until `deadline`; nothing at expiry.
  std::optional<T> pop(Deadline deadline = Deadline::never()) {
    MutexLock lock(mu_);
    auto ready = [&]() REQUIRES(mu_) { return !items_.empty(); };
    if (deadline.is_never()) lock.wait(cv_, ready);
    else if (!lock.wait_until(cv_, deadline.when(), ready)) return std::nullopt;
    // The producer waits for the queue to fall below half, not for the first free slot: waking
    // it for every item taken from a full queue would cost a context switch per line.
    bool freed = items_.size() == capacity_ / 2 + 1;
    T item = std::move(items_.front());
    items_.pop_front();
    if (items_.empty()) ready_.clear();
    lock.unlock();
    if (freed) space_.notify();
    return item;
  }

  // Called by the producer before it polls space_fd().
  void clear_space() { space_.clear(); }
  std::size_t high_water() const {
    MutexLock lock(mu_);
    return high_water_;
  }

 private:
  const std::size_t capacity_;
  mutable Mutex mu_;
  std::condition_variable cv_;
  std::deque<T> items_ GUARDED_BY(mu_);
  std::vector<T> spent_ GUARDED_BY(mu_);  // recycle()d, destroyed by the next push or push_all
  std::size_t high_water_ GUARDED_BY(mu_) = 0;
  EventFd ready_;
  EventFd space_;
};

}  // namespace tether::base
