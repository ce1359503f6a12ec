// `tether serve` as a library: one supervised bridge kept warm behind a Unix socket, shared by
// many clients. The wire contract is serve/protocol.h; the machinery is the Server class
// (serve/server_core.h). This header is what the CLI calls: it parses options and resolves the
// socket's location, then hands over here.
//
// Thread contract: run_server and stop_server are called from the process's main thread and
// block; the server is thread-bound to it (it owns no thread of its own; the bridge's supervisor
// has its own).
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/outcome.h"
#include "acp/setup.h"
#include "serve/socket_path.h"
#include "supervisor/bridge.h"

namespace tether::serve {

struct ServerOptions {
  std::string cwd;                     // the main session's directory
  std::vector<std::string> bridge;     // the bridge command, as _tether/status reports it
  std::size_t max_line = std::size_t{64} << 20;  // a client's longest line
  int verbose = 0;                     // > 0: log each connect and disconnect
  bool allow_fs = false;               // advertise the file-system capability to the agent
  std::string auth;                    // --auth METHOD_ID for the bridge's sign-in
  acp::SessionSettings settings;       // --mode/--model/--set for the main session
  std::vector<acp::McpServer> mcp;     // --mcp and the config's, for the main session
  // Closing sessions at the end (DESIGN §6): how long the agent gets to answer session/close,
  // and how long a bridge with nothing open gets to exit before it is signalled.
  std::chrono::milliseconds close_wait{2000};
  std::chrono::milliseconds closed_grace{250};
  // Where each log line goes (without a trailing newline). The caller prefixes and sanitizes it.
  std::function<void(std::string_view)> log;
};

// Why the server could not start or ended badly: the sentence a person reads, and the exit status.
struct ServeError {
  std::string message;
  int exit_code = acp::kExitUnavailable;
  bool already_running = false;  // another server holds the name (the caller adds how to stop it)
};

// What a run ended with: 0 and no error when it was stopped (by --stop or a signal, then
// `signal` says which, for the caller to die by after cleanup), else the error.
struct ServeResult {
  int exit_code = 0;
  std::optional<ServeError> error;
  int signal = 0;
};

// The signals that stop the server: a pollable fd (a signalfd) and how to take one signal from
// it (0 when none is pending). SIGINT, SIGTERM and SIGHUP stop the server; others are dropped.
struct SignalSource {
  int fd = -1;
  std::function<int()> take;
};

// Makes the bridge's options once the socket's name is ours (so that a second server of the same
// name fails before it opens the first one's --trace or --bridge-stderr file).
using BridgeOptionsFactory = std::function<std::optional<ServeError>(supervisor::BridgeOptions&)>;

// Takes the name's lock, listens at `where` (0600), starts the bridge and serves until stopped.
// The bridge is stopped and the socket removed when it returns.
ServeResult run_server(const ServerOptions& options, const SocketLocation& where, const BridgeOptionsFactory& bridge,
                       const SignalSource& signals);

// `tether serve --stop`: asks the server at `where` to stop and waits until it is gone (the name
// free again), 30 s at most. Nothing on success.
std::optional<ServeError> stop_server(const SocketLocation& where);

}  // namespace tether::serve
