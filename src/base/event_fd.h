// A pollable wake-up flag on top of eventfd(2). Thread-safe: any thread may notify(); the owner
// polls fd() and calls clear() before draining whatever the flag announces.
#pragma once

#include "base/unique_fd.h"

namespace tether::base {

class EventFd {
 public:
  EventFd();  // aborts if the kernel refuses an eventfd: nothing in tether works without one.
  int fd() const { return fd_.get(); }
  void notify();  // makes fd() readable
  void clear();   // makes fd() unreadable until the next notify()

 private:
  UniqueFd fd_;
};

}  // namespace tether::base
