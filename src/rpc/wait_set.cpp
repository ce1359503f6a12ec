// The dispatcher's wait set (wait_set.h).
#include "rpc/wait_set.h"

#include <errno.h>
#include <poll.h>

namespace tether::rpc {

bool WaitSet::open() {
  ep_.reset(::epoll_create1(EPOLL_CLOEXEC));
  return ep_.valid();
}

bool WaitSet::want(Slot slot, int fd, int events) {
  Reg& r = regs_[slot];
  if (events == kNone || fd < 0) {
    drop(slot);
    return true;
  }
  const auto ev = static_cast<std::uint32_t>(events);
  if (r.fd == fd && r.events == ev) return true;
  if (!ep_) {
    r = Reg{fd, ev, false};
    return true;
  }
  epoll_event e{};
  e.events = ev;
  e.data.u32 = slot;
  int op = EPOLL_CTL_ADD;
  if (r.fd == fd) op = EPOLL_CTL_MOD;
  else drop(slot);
  bool always = false;
  if (::epoll_ctl(ep_.get(), op, fd, &e) != 0) {
    // A regular file or /dev/null cannot be waited on: poll() calls it always ready, and so
    // does this.
    if (errno != EPERM) return false;
    always = true;
  }
  r = Reg{fd, ev, always};
  return true;
}

void WaitSet::drop(Slot slot) {
  Reg& r = regs_[slot];
  if (r.fd < 0) return;
  if (!r.always && ep_) ::epoll_ctl(ep_.get(), EPOLL_CTL_DEL, r.fd, nullptr);
  r = Reg{};
}

int WaitSet::wait(std::uint32_t (&revents)[kSlots]) {
  if (!ep_) return poll_all(revents);
  bool any_always = false;
  for (const Reg& r : regs_) any_always = any_always || always_ready(r) != 0;
  epoll_event ready[kSlots];
  int n = ::epoll_wait(ep_.get(), ready, kSlots, any_always ? 0 : -1);
  for (auto& r : revents) r = 0;
  for (int i = 0; i < n; ++i)
    if (ready[i].data.u32 < kSlots) revents[ready[i].data.u32] = ready[i].events;
  if (n < 0) return n;
  for (std::uint32_t slot = 0; slot < kSlots; ++slot) {
    if (always_ready(regs_[slot]) == 0) continue;
    revents[slot] |= always_ready(regs_[slot]);
    ++n;
  }
  return n;
}

int WaitSet::poll_all(std::uint32_t (&revents)[kSlots]) {
  pollfd p[kSlots];
  std::uint32_t slot_of[kSlots];
  nfds_t n = 0;
  for (std::uint32_t slot = 0; slot < kSlots; ++slot) {
    if (regs_[slot].fd < 0) continue;
    slot_of[n] = slot;
    p[n++] = {regs_[slot].fd, static_cast<short>(regs_[slot].events), 0};
  }
  int r = ::poll(p, n, -1);
  for (auto& e : revents) e = 0;
  for (nfds_t i = 0; r > 0 && i < n; ++i) revents[slot_of[i]] = static_cast<std::uint16_t>(p[i].revents);
  return r;
}

}  // namespace tether::rpc
