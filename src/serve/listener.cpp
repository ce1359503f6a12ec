// Listening and peer checks (listener.h).
#include "serve/listener.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

namespace tether::serve {
namespace {
constexpr int kListenBacklog = 128;
}  // namespace

std::variant<Listening, std::string> listen_on(const SocketLocation& where,
                                               const std::function<void(std::string_view)>& log) {
  sockaddr_un addr{};
  if (where.path.size() >= sizeof addr.sun_path)
    return "socket path " + where.path + " is too long (at most " + std::to_string(sizeof addr.sun_path - 1) + " bytes)";
  struct stat st;
  if (::lstat(where.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return where.path + " exists and is not a socket; not touching it";
    // We hold the name's lock, so no live server owns this socket: it is a dead server's.
    if (::unlink(where.path.c_str()) != 0) return "cannot remove the stale socket " + where.path + ": " + strerror(errno);
    if (log) log("replaced the stale socket of a server that is gone: " + where.path);
  }
  Listening l;
  l.fd = base::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l.fd) return std::string("cannot create a socket: ") + strerror(errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, where.path.c_str(), where.path.size() + 1);
  mode_t old = ::umask(0177);  // the socket is born 0600: no window where others may connect
  int rc = ::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return "cannot bind " + where.path + ": " + strerror(err);
  if (::chmod(where.path.c_str(), 0600) != 0 || ::stat(where.path.c_str(), &st) != 0)
    return "cannot secure " + where.path + ": " + strerror(errno);
  l.inode = st.st_ino;
  if (::listen(l.fd.get(), kListenBacklog) != 0) return "cannot listen on " + where.path + ": " + strerror(errno);
  return l;
}

std::optional<std::string> check_peer(int fd, pid_t* pid) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return std::string("refused a connection: cannot read its credentials: ") + strerror(errno);
  if (cred.uid != ::getuid())
    return "refused a connection from uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
           "): only uid " + std::to_string(::getuid()) + " may use this server";
  *pid = cred.pid;
  return std::nullopt;
}

}  // namespace tether::serve
