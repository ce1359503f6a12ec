// Named agents: the built-in presets for well-known ACP agents, their lookup next to the config
// file's [agents.NAME] tables, whether an agent's program is installed, and `tether agents`,
// which lists them. How an agent's name becomes a bridge is finish_options' (cli/common.h).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/config.h"

namespace CLI {
class App;
}

namespace tether::cli {

// The presets: claude, codex, gemini, qwen, opencode (their usual command lines), and demo (this
// binary's demo agent). An [agents.NAME] table of the same name replaces a preset whole.
const std::vector<AgentDef>& agent_presets();

// The agent NAME: the config file's [agents.NAME], else the preset; null when neither.
const AgentDef* find_agent(const std::string& name, const ConfigFile& config);
// Every name find_agent knows, sorted: for did-you-mean and listings.
std::vector<std::string> agent_names(const ConfigFile& config);

// Whether an agent's program can be started here, cheaply (no process is run): the program on
// PATH (or, with a slash, an executable file). For `npx -y PKG` also whether PKG is already on
// this machine (npm's global prefix, next to npx, or npx's cache ~/.npm/_npx): if not, the first
// start downloads it.
struct Installed {
  bool ok = false;      // the program is there (npx: npx is)
  std::string detail;   // "/usr/bin/gemini", "npx; package cached", "npx; downloads PKG on first use", "not on PATH"
};
Installed check_installed(const std::vector<std::string>& command);

struct AgentsOptions {
  std::string config;  // --config FILE
  bool json = false;   // --json
};
int run_agents(const AgentsOptions& options);
std::function<int()> setup_agents(CLI::App& app);

}  // namespace tether::cli
