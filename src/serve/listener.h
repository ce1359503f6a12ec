// The server's socket: listening on it safely, checking who connects, and the one request a
// process that is not a client sends it (`tether serve --stop`).
//
// The socket is born 0600 (bound under umask 0177) and only our own uid may use it: a connection
// whose peer is another uid (SO_PEERCRED) is closed unanswered, whatever the file's mode.
//
// Thread contract: plain functions.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "base/unique_fd.h"
#include "serve/socket_path.h"

namespace tether::serve {

struct Listening {
  base::UniqueFd fd;  // non-blocking, close-on-exec
  ino_t inode = 0;    // the socket file's: removed at the end only if it is still ours
};

// Listens at where.path. A socket file already there is a dead server's (the caller holds the
// name's lock) and is replaced, which `log` tells; anything else there is left alone (an error).
std::variant<Listening, std::string> listen_on(const SocketLocation& where,
                                               const std::function<void(std::string_view)>& log);

// Nothing when the peer of connection `fd` is our own uid (its pid in *pid), else the log line
// that says why it is refused.
std::optional<std::string> check_peer(int fd, pid_t* pid);

}  // namespace tether::serve
