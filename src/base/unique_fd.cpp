#include "base/unique_fd.h"

#include <fcntl.h>
#include <unistd.h>

namespace tether::base {

void UniqueFd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);  // close(2) never retries: on Linux the fd is gone even on EINTR.
  fd_ = fd;
}

bool set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

}  // namespace tether::base
