// `tether serve`: its options and their parsing. The server itself is the serve layer
// (serve/server.h); its wire contract with clients is serve/protocol.h.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace CLI {
class App;
}

namespace tether::cli {

struct ServeOptions {
  CommonOptions common;
  std::string name;    // --name (default "default")
  std::string socket;  // --socket PATH
  bool stop = false;   // --stop: stop the running server of that name
};

int run_serve(ServeOptions& options);
std::function<int()> setup_serve(CLI::App& app, const std::vector<std::string>& bridge);

}  // namespace tether::cli
