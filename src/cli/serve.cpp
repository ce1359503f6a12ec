// `tether serve` on the command line: options to a serve::ServerOptions, the socket's location,
// the log's destination, then the serve layer runs the server (serve/server.h).
#include "cli/serve.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "base/unique_fd.h"
#include "cli/terminal_text.h"
#include "serve/server.h"

namespace tether::cli {

namespace {

// The server's options from the command line's, and its log: stderr, through a non-blocking file
// description of its own (kept in `log_fd`) when stderr is a pipe or terminal, so that a reader
// that stalls costs log lines, never the one thread that serves every client. The lines quote the
// agent and the bridge (its stdout lines, error messages, stderr lines): sanitized for a terminal.
std::optional<SetupError> server_options(const CommonOptions& c, serve::ServerOptions& so, base::UniqueFd& log_fd) {
  if (auto err = session_settings(c, so.settings)) return err;
  so.cwd = c.cwd;
  so.bridge = c.bridge;
  so.max_line = c.max_line;
  so.verbose = c.verbose;
  so.allow_fs = c.allow_fs;
  so.auth = c.auth;
  so.mcp = c.mcp;
  so.close_wait = kCloseWait;
  so.closed_grace = kClosedGrace;
  struct stat err_st;
  if (::fstat(STDERR_FILENO, &err_st) == 0 && !S_ISREG(err_st.st_mode))
    log_fd = base::UniqueFd(::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
  const int fd = log_fd ? log_fd.get() : STDERR_FILENO;
  so.log = [fd](std::string_view text) {
    std::string line = "tether serve: " + for_terminal(fd, text) + "\n";
    [[maybe_unused]] auto w = ::write(fd, line.data(), line.size());
  };
  return std::nullopt;
}

}  // namespace

int run_serve(ServeOptions& o) {
  if (!o.name.empty() && !o.socket.empty()) {
    error_line("--name and --socket name the same thing: give one");
    return kExitUsage;
  }
  // `--socket x.sock` is a path in the current directory, never a name.
  std::string socket = o.socket;
  if (!socket.empty() && socket.find('/') == std::string::npos) socket = "./" + socket;
  auto resolved = serve::resolve_socket(socket.empty() ? o.name : socket);
  if (auto* err = std::get_if<std::string>(&resolved)) {
    error_line(*err);
    return kExitUsage;
  }
  serve::SocketLocation where = std::get<serve::SocketLocation>(resolved);
  if (o.stop) {
    if (auto err = serve::stop_server(where)) {
      error_line(err->message);
      return kExitUnavailable;
    }
    return kExitOk;
  }
  if (auto err = serve::check_private_dir(where)) {
    error_line(*err);
    return kExitConfig;
  }
  if (auto err = finish_options(o.common)) {
    error_line(err->message);
    return err->exit_code;
  }
  base::UniqueFd log_fd;
  serve::ServerOptions so;
  if (auto err = server_options(o.common, so, log_fd)) {
    error_line(err->message);
    return err->exit_code;
  }

  base::UniqueFd sigfd = open_signal_fd();
  serve::SignalSource signals{sigfd.get(), [&sigfd] { return read_signal(sigfd.get()); }};
  auto make_bridge = [&o](supervisor::BridgeOptions& bopt) -> std::optional<serve::ServeError> {
    if (auto err = make_bridge_options(o.common, /*auto_restart=*/true, bopt)) return serve::ServeError{err->message, err->exit_code};
    return std::nullopt;
  };
  serve::ServeResult r = serve::run_server(so, where, make_bridge, signals);
  if (r.error) {
    std::string message = r.error->message;
    if (r.error->already_running) {
      std::string how = o.socket.empty() ? "tether serve --stop" + (o.name.empty() ? std::string() : " --name " + o.name)
                                         : "tether serve --stop --socket " + o.socket;
      message += " (stop it with `" + how + "`)";
    }
    error_line(message);
  }
  if (r.signal) reraise(r.signal);
  return r.exit_code;
}

std::function<int()> setup_serve(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<ServeOptions>();
  auto* sub = app.add_subcommand("serve", "Keep one bridge warm behind a Unix socket for many clients (--connect)");
  sub->footer(
      "The socket is $XDG_RUNTIME_DIR/tether/NAME.sock (else /tmp/tether-UID/NAME.sock), NAME\n"
      "defaulting to \"default\"; only your own uid may connect. Clients: tether talk|prompt|batch\n"
      "--connect[=NAME|PATH]. The socket speaks ACP, with tether as the agent.\n"
      "Exit status: 0 stopped by --stop; 69 the bridge cannot start or a server of that name runs;\n"
      "143/130/129 stopped by SIGTERM/SIGINT/SIGHUP.");
  sub->add_option("--name", o->name, "Server name: the socket is <runtime dir>/tether/NAME.sock (default: default)")->type_name("NAME");
  sub->add_option("--socket", o->socket, "Listen on this socket path instead of a named one")->type_name("PATH");
  sub->add_flag("--stop", o->stop, "Stop the running server of this name (or --socket) and wait until it is gone");
  // The server runs no turns of its own: each client has its own --timeout, --retries and
  // --permission (the server hands permission requests to the client whose turn it is), and the
  // server writes only its log (no --color, -q).
  add_common_options(*sub, o->common,
                     {.timeout = false, .retries = false, .permission = false, .allow_terminal = false, .color = false,
                      .quiet = false});
  add_session_options(*sub, o->common);
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_serve(*o);
  };
}

}  // namespace tether::cli
