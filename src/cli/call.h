// `tether call`: raw JSON-RPC to any stdio server. One request from the command line, or a script
// of messages on stdin; one JSON line per response. No implicit handshake: it speaks exactly what
// it is given.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace tether::cli {

struct CallOptions {
  CommonOptions common;
  std::string method;        // empty: read messages from stdin
  std::string params;        // JSON text, object or array
  bool notifications = false;  // also print the bridge's notifications and requests
  bool restart = false;        // restart a dead bridge (requests are not known to be idempotent)
};

int run_call(CallOptions& options);

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_call(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
