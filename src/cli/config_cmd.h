// `tether config`: the configuration a command would run with (after the config file, the
// environment and the agent are resolved), each value with where it came from.
#pragma once

#include <functional>
#include <string>

namespace CLI {
class App;
}

namespace tether::cli {

struct ConfigCmdOptions {
  std::string agent;           // --agent NAME: as that command's --agent
  std::string command = "talk";  // --for COMMAND
  std::string config;          // --config FILE
  bool json = false;           // --json
};
int run_config(const ConfigCmdOptions& options);
std::function<int()> setup_config(CLI::App& app);

}  // namespace tether::cli
