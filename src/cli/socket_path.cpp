#include "cli/socket_path.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

namespace tether::cli {
namespace {

constexpr std::size_t kMaxName = 64;

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxName || name.front() == '.') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::variant<SocketLocation, std::string> resolve_socket(std::string_view name_or_path) {
  SocketLocation where;
  if (name_or_path.find('/') != std::string_view::npos) {
    where.path = std::string(name_or_path);
    auto slash = where.path.rfind('/');
    where.dir = slash == 0 ? "/" : where.path.substr(0, slash);
    if (slash + 1 == where.path.size()) return "socket path " + where.path + " names a directory, not a socket";
  } else {
    std::string name = name_or_path.empty() ? "default" : std::string(name_or_path);
    if (!valid_name(name))
      return "server name '" + name +
             "' is not usable: use letters, digits, '.', '_' and '-' (at most 64, not starting with '.'), "
             "or a path with a '/' in it";
    const char* xdg = std::getenv("XDG_RUNTIME_DIR");
    if (xdg && xdg[0] == '/') where.dir = std::string(xdg) + "/tether";
    else where.dir = "/tmp/tether-" + std::to_string(::getuid());
    where.path = where.dir + "/" + name + ".sock";
    where.private_dir = true;
  }
  where.lock_path = where.path + ".lock";
  return where;
}

std::optional<std::string> check_private_dir(const SocketLocation& where) {
  if (!where.private_dir) return std::nullopt;
  if (::mkdir(where.dir.c_str(), 0700) != 0 && errno != EEXIST)
    return "cannot create " + where.dir + ": " + strerror(errno);
  struct stat st;
  if (::lstat(where.dir.c_str(), &st) != 0) return "cannot inspect " + where.dir + ": " + strerror(errno);
  if (!S_ISDIR(st.st_mode)) return where.dir + " is not a directory (a symlink or another file is in the way); remove it";
  if (st.st_uid != ::getuid())
    return where.dir + " belongs to uid " + std::to_string(st.st_uid) + ", not to us (uid " +
           std::to_string(::getuid()) + "); someone may be trying to intercept the socket";
  if ((st.st_mode & 077) != 0)
    return where.dir + " is open to other users (mode " + [&] {
      char m[8];
      std::snprintf(m, sizeof m, "%03o", st.st_mode & 0777);
      return std::string(m);
    }() + "); run: chmod 700 " + where.dir;
  return std::nullopt;
}

namespace {
struct flock whole_file(short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;  // l_start 0, l_len 0: the whole file
  return fl;
}
}  // namespace

bool take_server_lock(int fd) {
  struct flock fl = whole_file(F_WRLCK);
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

bool server_holds_lock(const SocketLocation& where) {
  int fd = ::open(where.lock_path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  struct flock fl = whole_file(F_RDLCK);  // would a reader conflict? only with a holder
  bool held = ::fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  return held;
}

}  // namespace tether::cli
