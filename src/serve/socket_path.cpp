#include "serve/socket_path.h"

#include <errno.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "base/private_dir.h"

namespace tether::serve {
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
  // The same checks as every private directory of ours (base/private_dir.h). The fd is not kept:
  // the directory is ours and 0700, and its parent is /tmp (sticky) or XDG_RUNTIME_DIR (the
  // user's), so nobody else can move it from under the names used from here on.
  auto r = base::open_private_dir(where.dir);
  if (auto* why = std::get_if<std::string>(&r)) return *why;
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

}  // namespace tether::serve
