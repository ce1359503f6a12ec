// What the config file means: the TOML tree (cli/config_file.h) read into top-level settings,
// per-command sections, named agents and their MCP servers, with each value's place in the file.
// Structure is checked here (which key may stand where, what type it takes); the values of the
// common options are checked by cli/common.cpp through the same checks as the command line.
//
// The file, in short (man tether, CONFIGURATION):
//
//   timeout = 30                 # a common option's key: every command that offers it
//   default_agent = "claude"     # the agent when none is named
//   [prompt]                     # only for `tether prompt` (likewise talk, batch, call, serve)
//   permission = "allow"
//   [agents.claude]              # a named agent (overrides the built-in preset of that name)
//   command = ["npx", "-y", "@zed-industries/claude-agent-acp"]
//   env = { IS_SANDBOX = "1" }
//   mcp = [{ name = "fs", command = ["mcp-fs", "/tmp"] }]
#pragma once

#include <map>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "acp/setup.h"
#include "cli/config_file.h"

namespace tether::cli {

// A key = value of the file and where its key is written.
struct ConfigSetting {
  std::string key;
  ConfigValue value;
  int line = 0;
  int column = 0;
};

// A named agent: a built-in preset, or an [agents.NAME] table (which replaces the preset of the
// same name whole: an agent is one command line, and half of a preset's would be a trap).
struct AgentDef {
  std::string name;
  std::string origin;  // "built-in", or "PATH:LINE" of its table
  std::vector<std::string> command;
  std::vector<std::pair<std::string, std::string>> env;  // added to the bridge's environment
  std::vector<ConfigSetting> settings;  // cwd, mode, model, permission, auth (common option keys)
  std::vector<acp::McpServer> mcp;
  std::string description;  // presets: what it is
};

// The keys each place accepts, for checks and did-you-mean: the common options' keys at the top
// level, and per command (a section name) the keys of the options that command offers.
struct ConfigKeys {
  std::vector<std::string> top;
  std::map<std::string, std::vector<std::string>> sections;
};

// The keys of an [agents.NAME] table that are common options (the rest are command, env, mcp).
inline const std::vector<std::string>& agent_setting_keys() {
  static const std::vector<std::string> keys{"cwd", "mode", "model", "permission", "auth"};
  return keys;
}

struct ConfigFile {
  std::string path;  // "" when no file was read
  std::vector<ConfigSetting> top;
  std::map<std::string, std::vector<ConfigSetting>> sections;  // "talk" -> its settings
  std::map<std::string, ConfigSetting> section_agent;          // "talk" -> its `agent = "NAME"`
  std::map<std::string, AgentDef> agents;                      // [agents.NAME]
  std::optional<ConfigSetting> default_agent;
  std::optional<ConfigSetting> bridge;  // the older `bridge = [...]` (an unnamed agent)
  std::optional<ConfigSetting> log;     // `log = false | "PATH"`: the turn log (cli/turn_log.h)
  std::vector<acp::McpServer> mcp;      // top-level `mcp`: for every agent
  int mcp_line = 0;

  // "PATH:LINE:COLUMN" of a setting, for messages and `tether config`.
  std::string where(int line, int column) const;
};

// Reads the root table. Errors: "PATH:LINE:COLUMN: what is wrong" (a key's place for an unknown
// key, the value's for a bad value), naming the key and, for a misspelt one, the closest real one.
std::variant<ConfigFile, std::string> read_config(const ConfigValue& root, const std::string& path, const ConfigKeys& keys);

// Parses and reads `text` (the file at `path`), for callers and tests that have the text.
std::variant<ConfigFile, std::string> load_config_text(const std::string& text, const std::string& path,
                                                       const ConfigKeys& keys);

// --mcp NAME=COMMAND [ARGS]: the value split into words (no shell). Error: a sentence.
std::variant<acp::McpServer, std::string> parse_mcp_option(const std::string& value);

// The option a config key stands for, without its dashes: max_line -> max-line.
std::string option_name(const std::string& key);

// Words separated by blanks; '…' and "…" group words; no other shell syntax (TETHER_BRIDGE,
// TETHER_AGENT's cousins, --mcp).
std::vector<std::string> split_words(const std::string& s);

}  // namespace tether::cli
