#include "base/event_fd.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace tether::base {

EventFd::EventFd() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  if (!fd_) {
    std::perror("tether: eventfd");
    std::abort();
  }
}

void EventFd::notify() {
  std::uint64_t one = 1;
  // EAGAIN means the counter is saturated, which is still "readable": nothing to do.
  [[maybe_unused]] auto n = ::write(fd_.get(), &one, sizeof one);
}

void EventFd::clear() {
  std::uint64_t value;
  [[maybe_unused]] auto n = ::read(fd_.get(), &value, sizeof value);
}

}  // namespace tether::base
