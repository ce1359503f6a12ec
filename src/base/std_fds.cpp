#include "base/std_fds.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

namespace tether::base {

bool reserve_standard_fds() {
  bool ok = true;
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // open() returns the lowest free number: `fd`, since the ones below it are open by now.
    int got = ::open("/dev/null", (fd == 0 ? O_WRONLY : O_RDONLY));
    if (got < 0) {
      ok = false;
      continue;
    }
    if (got != fd) {  // cannot happen (see above); never leave a stray descriptor behind
      ::dup2(got, fd);
      ::close(got);
    }
  }
  return ok;
}

}  // namespace tether::base
