#include "base/private_dir.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace tether::base {
namespace {

std::string octal(mode_t mode) {
  char m[8];
  std::snprintf(m, sizeof m, "%03o", static_cast<unsigned>(mode & 0777));
  return m;
}

// mkdir -p of the parents of `path` (not `path` itself), 0700 for the ones it creates.
void make_parent_dirs(const std::string& path) {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1)) {
    std::string part = path.substr(0, slash);
    if (::mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) return;  // the open below says why
  }
}

}  // namespace

std::variant<UniqueFd, std::string> open_private_dir(const std::string& path, bool make_parents) {
  if (path.empty() || path[0] != '/') return "state directory '" + path + "' is not an absolute path";
  if (make_parents) make_parent_dirs(path);
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
    return "cannot create " + path + ": " + ::strerror(errno);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ELOOP || errno == ENOTDIR)
      return path + " is not a directory (a symlink or another file is in the way); remove it";
    return "cannot open " + path + ": " + ::strerror(errno);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return "cannot inspect " + path + ": " + ::strerror(errno);
  if (st.st_uid != ::geteuid())
    return path + " belongs to uid " + std::to_string(st.st_uid) + ", not to us (uid " + std::to_string(::geteuid()) +
           "); another user may have created it to read or redirect what we write there; remove it";
  if ((st.st_mode & 077) != 0)
    return path + " is open to other users (mode " + octal(st.st_mode) + "); run: chmod 700 " + path;
  return fd;
}

int open_private_file(int dirfd, const std::string& name, int flags) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    errno = EINVAL;
    return -1;
  }
  // O_NONBLOCK: a FIFO in its place must not block the open; it is refused below like any other
  // file that is not a regular one.
  bool nonblocking = flags & O_NONBLOCK;
  flags |= O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK;
  int fd = -1;
  if (flags & O_CREAT) {
    fd = ::openat(dirfd, name.c_str(), flags | O_EXCL, 0600);
    if (fd < 0 && errno != EEXIST) return -1;
    flags &= ~O_CREAT;  // it exists: open it as it is, then check it
  }
  if (fd < 0) fd = ::openat(dirfd, name.c_str(), flags);
  if (fd < 0) return -1;
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || st.st_nlink != 1) {
    ::close(fd);
    errno = EPERM;
    return -1;
  }
  if (!nonblocking) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return fd;
}

}  // namespace tether::base
