// The dispatcher's wait: an epoll set whose members change only when what the dispatcher waits
// for changes. poll() registered and unregistered every fd on every call, twice when it slept,
// which was most of the wait's own cost in a turn (issue 17). Level-triggered, as poll() is, and
// EPOLLIN/OUT/HUP/ERR have poll's values, so what the loop reads of an event is unchanged. An fd
// leaves the set before it is closed (drop()): a registration outlives a closed fd whose file is
// still open elsewhere (a socket peer's stdin is a dup of its stdout). Without an epoll fd (none
// left: EMFILE) it waits with poll() over the same slots, as the dispatcher did before: a running
// bridge is not given up for want of one fd.
#pragma once

#include <sys/epoll.h>

#include <cstdint>

#include "base/unique_fd.h"

namespace tether::rpc {

class WaitSet {
 public:
  enum Slot : std::uint32_t { wake, out, space, err, in, exit, kSlots };
  static constexpr int kNone = -1;  // want(): not in the set

  // False, errno set, when there is no epoll set: wait() then polls.
  bool open();
  // Wait on `fd` in `slot` for `events` (0: hang-up and errors only, always reported), or not at
  // all (kNone). False when epoll refuses, errno set.
  bool want(Slot slot, int fd, int events);
  // Takes `slot` out of the set: call it before its fd is closed.
  void drop(Slot slot);
  // Blocks until something in the set is ready; the events per slot (0: none). -1 and errno on
  // failure.
  int wait(std::uint32_t (&revents)[kSlots]);

 private:
  struct Reg {
    int fd = -1;
    std::uint32_t events = 0;
    bool always = false;  // not in the epoll set: always ready (see want())
  };
  int poll_all(std::uint32_t (&revents)[kSlots]);
  // What an fd epoll cannot take is ready for: what was asked of it, as poll() reports it. A
  // hang-up only (0: a stalled peer's stdout) is never reported for such an fd, so it is never
  // ready and the wait sleeps; counting it ready would make the wait return at once, a spin.
  static std::uint32_t always_ready(const Reg& r) { return r.always ? r.events & (EPOLLIN | EPOLLOUT) : 0; }
  base::UniqueFd ep_;
  Reg regs_[kSlots];
};

}  // namespace tether::rpc
