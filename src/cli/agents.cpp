// The built-in agent presets, their lookup, the installed check, and `tether agents` (see agents.h).
#include "cli/agents.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/shell_words.h"

namespace tether::cli {
namespace {

AgentDef preset(std::string name, std::vector<std::string> command, std::string description) {
  AgentDef a;
  a.name = std::move(name);
  a.origin = "built-in";
  a.command = std::move(command);
  a.description = std::move(description);
  return a;
}

bool is_executable(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

bool is_dir(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The program as execvp would find it; "" when it would not.
std::string find_program(const std::string& program) {
  if (program.find('/') != std::string::npos) return is_executable(program) ? program : "";
  const char* path = ::getenv("PATH");
  std::string dirs = path && *path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t colon = dirs.find(':', start);
    if (colon == std::string::npos) colon = dirs.size();
    std::string dir = dirs.substr(start, colon - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (is_executable(candidate)) return candidate;
    start = colon + 1;
  }
  return "";
}

// The package npx would run: its first word that is not an option, without a version.
std::string npx_package(const std::vector<std::string>& command) {
  for (std::size_t i = 1; i < command.size(); ++i) {
    if (command[i].starts_with("-")) continue;
    std::string pkg = command[i];
    if (auto at = pkg.find('@', 1); at != std::string::npos) pkg.resize(at);
    return pkg;
  }
  return "";
}

// Whether `pkg` is already here: npm's global prefix (lib/node_modules next to npx's bin), or one
// of npx's cache directories (~/.npm/_npx/HASH/node_modules). Directory checks only: asking npm
// itself costs a node start (~0.3 s) per agent.
bool npm_has(const std::string& npx, const std::string& pkg) {
  char real[PATH_MAX];
  if (::realpath(npx.c_str(), real)) {
    std::string bin = real;
    // .../lib/node_modules/npm/bin/npx-cli.js, or .../bin/npx
    for (const char* marker : {"/lib/node_modules/", "/bin/"}) {
      auto pos = bin.rfind(marker);
      if (pos == std::string::npos) continue;
      if (is_dir(bin.substr(0, pos) + "/lib/node_modules/" + pkg)) return true;
    }
  }
  const char* home = ::getenv("HOME");
  const char* cache = ::getenv("npm_config_cache");
  std::string npx_dir = (cache && *cache ? std::string(cache) : std::string(home ? home : "") + "/.npm") + "/_npx";
  DIR* d = ::opendir(npx_dir.c_str());
  if (!d) return false;
  bool found = false;
  // Bounded: npx keeps one directory per package set ever run, a few dozen at most.
  int looked = 0;
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.' || ++looked > 1000) continue;
    if (is_dir(npx_dir + "/" + e->d_name + "/node_modules/" + pkg)) {
      found = true;
      break;
    }
  }
  ::closedir(d);
  return found;
}

}  // namespace

const std::vector<AgentDef>& agent_presets() {
  // The usual command lines (REAL-AGENTS.md): Zed's adapters through npx for Claude Code and
  // Codex; the CLIs' own ACP mode for Gemini, Qwen Code and opencode.
  static const std::vector<AgentDef> presets = {
      preset("claude", {"npx", "-y", "@zed-industries/claude-agent-acp"}, "Claude Code, through Zed's ACP adapter"),
      preset("codex", {"npx", "-y", "@zed-industries/codex-acp"}, "Codex CLI, through Zed's ACP adapter"),
      preset("demo", {self_exe(), "demo-agent"}, "tether's built-in demo agent"),
      preset("gemini", {"gemini", "--acp"}, "Gemini CLI (npm @google/gemini-cli)"),
      preset("opencode", {"opencode", "acp"}, "opencode (npm opencode-ai)"),
      preset("qwen", {"qwen", "--acp"}, "Qwen Code (npm @qwen-code/qwen-code)"),
  };
  return presets;
}

const AgentDef* find_agent(const std::string& name, const ConfigFile& config) {
  if (auto it = config.agents.find(name); it != config.agents.end()) return &it->second;
  for (const auto& p : agent_presets())
    if (p.name == name) return &p;
  return nullptr;
}

std::vector<std::string> agent_names(const ConfigFile& config) {
  std::vector<std::string> names;
  for (const auto& p : agent_presets()) names.push_back(p.name);
  for (const auto& [name, _] : config.agents)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  std::sort(names.begin(), names.end());
  return names;
}

Installed check_installed(const std::vector<std::string>& command) {
  if (command.empty()) return {false, "no command"};
  std::string found = find_program(command[0]);
  if (found.empty())
    return {false, command[0].find('/') != std::string::npos ? "not an executable file" : "not on PATH"};
  if (command[0] == "npx") {
    std::string pkg = npx_package(command);
    if (pkg.empty()) return {true, found};
    if (npm_has(found, pkg)) return {true, "npx; " + pkg + " is on this machine"};
    return {true, "npx; downloads " + pkg + " on first use"};
  }
  return {true, found};
}

int run_agents(const AgentsOptions& o) {
  auto loaded = load_config(o.config);
  if (auto* err = std::get_if<SetupError>(&loaded)) {
    error_line(err->message);
    return err->exit_code;
  }
  const auto& config = std::get<ConfigFile>(loaded);
  std::string default_agent = config.default_agent ? config.default_agent->value.text : "";
  nlohmann::json list = nlohmann::json::array();
  std::string text;
  for (const auto& name : agent_names(config)) {
    const AgentDef* a = find_agent(name, config);
    Installed inst = check_installed(a->command);
    bool overrides = a->origin != "built-in" &&
                     std::any_of(agent_presets().begin(), agent_presets().end(), [&](const AgentDef& p) { return p.name == name; });
    std::string origin = a->origin + (overrides ? " (replaces the built-in)" : "");
    list.push_back({{"name", name},
                    {"source", origin},
                    {"command", a->command},
                    {"installed", inst.ok},
                    {"detail", inst.detail},
                    {"default", name == default_agent},
                    {"description", a->description}});
    std::string padded = name;
    if (padded.size() < 10) padded.resize(10, ' ');
    text += (name == default_agent ? "* " : "  ") + padded + " " + shell_command(a->command) + "\n";
    text += std::string(13, ' ') + origin + "; " + (inst.ok ? "installed: " : "NOT installed: ") + inst.detail + "\n";
  }
  std::string out = o.json ? list.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n" : text;
  if (!o.json && !default_agent.empty() && !find_agent(default_agent, config))
    out += "(default_agent " + default_agent + " is not defined)\n";
  return write_stdout(out) ? kExitOk : kExitIoErr;
}

std::function<int()> setup_agents(CLI::App& app) {
  auto o = std::make_shared<AgentsOptions>();
  auto* sub = app.add_subcommand("agents", "List the named agents (--agent NAME): built-in presets and the config file's");
  sub->footer(
      "Each agent: its name (* the default_agent), its command line, where it comes from (built-in,\n"
      "or the config file's line), and whether its program is installed (on PATH; for npx agents\n"
      "whether the package is already on this machine or is downloaded on first use).");
  sub->add_flag("--json", o->json, "A JSON array: name, source, command, installed, detail, default, description");
  sub->add_option("--config", o->config, "Config file (default: $XDG_CONFIG_HOME/tether/config.toml)")->type_name("FILE");
  return [o] { return run_agents(*o); };
}

}  // namespace tether::cli
