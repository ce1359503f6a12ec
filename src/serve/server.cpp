// run_server and stop_server (server.h): the server's start (the name's lock, the socket, the
// bridge) around a Server's loop, and the `--stop` request.
#include "serve/server.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "serve/listener.h"
#include "serve/server_core.h"

namespace tether::serve {

ServeResult run_server(const ServerOptions& o, const SocketLocation& where, const BridgeOptionsFactory& make_bridge,
                       const SignalSource& signals) {
  auto fail = [](std::string message) { return ServeResult{acp::kExitUnavailable, ServeError{std::move(message)}, 0}; };
  // The name's lock, held for the server's whole life: a second server of the same name learns
  // at once that the first is alive, and a socket file found while we hold it is a stale one.
  UniqueFd lock(::open(where.lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) return fail("cannot open " + where.lock_path + ": " + strerror(errno));
  if (!take_server_lock(lock.get())) {
    // The caller knows how the server was named and words the advice (stop it with ...).
    ServeResult r = fail("a tether server is already running at " + where.path);
    r.error->already_running = true;
    return r;
  }
  auto listening = listen_on(where, o.log);
  if (auto* err = std::get_if<std::string>(&listening)) return fail(*err);
  Listening l = std::move(std::get<Listening>(listening));

  supervisor::BridgeOptions bopt;
  if (auto err = make_bridge(bopt)) {
    ::unlink(where.path.c_str());
    return {err->exit_code, std::move(err), 0};
  }
  supervisor::Bridge bridge(std::move(bopt));
  if (auto failed = bridge.start()) {
    ::unlink(where.path.c_str());
    return fail(supervisor::describe(*failed));
  }
  Server server(o, where, std::move(l.fd), l.inode, std::move(lock), signals, bridge);
  return server.run();  // the bridge is stopped and the socket gone when it returns
}

std::optional<ServeError> stop_server(const SocketLocation& where) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", where.path.c_str());
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return ServeError{"no tether server is running at " + where.path + " (" + strerror(errno) + ")"};
  std::string req = rpc::dump(rpc::make_request(1, protocol::kShutdown, json::object())) + "\n";
  if (!base::write_all(fd.get(), req)) return ServeError{"cannot ask the server at " + where.path + " to stop: " + strerror(errno)};
  // The server closes this connection last, after the bridge stopped and the name is free again.
  rpc::LineFramer framer;
  bool answered = false;
  pollfd p{fd.get(), POLLIN, 0};
  Deadline deadline = Deadline::after(std::chrono::seconds(30));
  for (;;) {
    int left = static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline.when() - base::Clock::now()).count()));
    if (::poll(&p, 1, left) <= 0) return ServeError{"the server at " + where.path + " did not stop within 30 s"};
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
    while (auto line = framer.next()) {
      auto msg = rpc::parse_line(*line);
      if (msg && msg->is_object() && msg->contains("result")) answered = true;
    }
  }
  if (!answered) return ServeError{"the server at " + where.path + " closed the connection without stopping"};
  return std::nullopt;
}

}  // namespace tether::serve
