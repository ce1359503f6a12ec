// finish_options (cli/common.h): the config file, the agent and the bridge, and each option's
// value with where it came from. The order, from strongest to weakest (man tether, CONFIGURATION):
//
//   the command line  >  the agent's [agents.NAME] table  >  the command's [section]
//                     >  the top level of the config file  >  the built-in default
//
// The agent's table sits above the command's section: `cwd` or `permission` written for an agent
// is about that agent whichever command runs it, while a section is about a command whichever
// agent it runs. Flags always win.
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <sstream>
#include <utility>

#include "cli/agents.h"
#include "cli/common.h"
#include "cli/common_table.h"
#include "cli/usage.h"

namespace tether::cli {
namespace {

using detail::common_option_table;
using detail::option_registry;

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/tether/config.toml";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.config/tether/config.toml";
  return {};
}

std::string command_of(const CommonOptions& o) {
  auto it = option_registry().find(&o);
  return it != option_registry().end() && it->second.app ? it->second.app->get_name() : "";
}

bool given(const CLI::Option* opt) { return opt && opt->count() > 0; }

// The agent (or bridge command) this run uses; see finish_options in common.h for the order.
std::optional<SetupError> choose_agent(CommonOptions& o, const ConfigFile& c, const std::string& command,
                                       const AgentDef*& agent) {
  agent = nullptr;
  const bool named = !o.agent.empty();  // --agent on the command line
  if (!o.connect.empty()) {
    if (!o.bridge.empty())
      return SetupError{"the server runs the bridge; --connect takes no bridge command (nothing after --)", kExitUsage};
    if (named) return SetupError{"the server runs the bridge; --connect takes no --agent (give it to tether serve)", kExitUsage};
    return std::nullopt;
  }
  if (!o.bridge.empty()) {
    if (named)
      return SetupError{"--agent " + o.agent + " and a bridge command after -- both name the agent: give one", kExitUsage};
    o.sources["bridge"] = "command line";
    return std::nullopt;
  }
  std::string name;
  std::string source;
  const char* env_agent = std::getenv("TETHER_AGENT");
  const char* env_bridge = std::getenv("TETHER_BRIDGE");
  const bool by_env_agent = env_agent && *env_agent;
  const bool by_env_bridge = env_bridge && *env_bridge;
  auto section = c.section_agent.find(command);
  if (named) {
    name = o.agent;
    source = "command line";
  } else if (by_env_agent && by_env_bridge) {
    return SetupError{"TETHER_AGENT and TETHER_BRIDGE are both set and both name the agent: unset one", kExitConfig};
  } else if (by_env_agent) {
    name = env_agent;
    source = "env TETHER_AGENT";
  } else if (by_env_bridge) {
    o.bridge = split_words(env_bridge);
    o.sources["bridge"] = "env TETHER_BRIDGE";
    return std::nullopt;
  } else if (section != c.section_agent.end()) {
    name = section->second.value.text;
    source = c.where(section->second.line, section->second.column);
  } else if (c.default_agent) {
    name = c.default_agent->value.text;
    source = c.where(c.default_agent->line, c.default_agent->column);
  } else if (c.bridge) {
    o.bridge = c.bridge->value.kind == ConfigValue::Kind::string ? split_words(c.bridge->value.text) : c.bridge->value.strings();
    o.sources["bridge"] = c.where(c.bridge->line, c.bridge->column);
    return std::nullopt;
  } else {
    name = "demo";  // a preset, so that an [agents.demo] table can replace it
    source = "default";
  }
  agent = find_agent(name, c);
  if (!agent) {
    std::string near = closest_word(name, agent_names(c));
    return SetupError{"unknown agent '" + name + "'" + (source == "command line" ? "" : " (" + source + ")") +
                          (near.empty() ? "; `tether agents` lists the agents"
                                        : "; did you mean " + near + "? (`tether agents` lists the agents)"),
                      named ? kExitUsage : kExitConfig};
  }
  o.agent = name;
  o.sources["agent"] = source;
  o.bridge = agent->command;
  const std::string from = "agent " + name + " (" + agent->origin + ")";
  o.sources["bridge"] = from;
  o.bridge_env.clear();
  for (const auto& [k, v] : agent->env) {
    o.bridge_env.push_back(k + "=" + v);
    o.sources["env." + k] = from;
  }
  return std::nullopt;
}

// Each common option from the strongest layer that sets it; every config value is checked, also
// those that lose or that this command does not offer (the file serves every command).
std::optional<SetupError> apply_settings(CommonOptions& o, const ConfigFile& c, const std::string& command,
                                         const AgentDef* agent) {
  const auto& reg = option_registry()[&o];
  static const std::vector<ConfigSetting> none;
  auto sec = c.sections.find(command);
  struct Layer {
    const std::vector<ConfigSetting>& settings;
    std::string prefix;  // how a message names the key
    bool is_section;
  };
  const std::string agent_prefix = agent ? "agents." + agent->name + "." : "";
  const Layer layers[] = {{agent ? agent->settings : none, agent_prefix, false},
                          {sec != c.sections.end() ? sec->second : none, command + ".", true},
                          {c.top, "", false}};
  for (const auto& entry : common_option_table()) {
    auto it = reg.options.find(entry.key);
    const bool offered = it != reg.options.end();
    bool decided = offered && given(it->second);
    if (decided) o.sources[entry.key] = "command line";
    // -v on the command line beats a config quiet = true (the complaint: it silently won).
    if (std::string(entry.key) == "quiet" && given(reg.verbose)) decided = true;
    for (const auto& layer : layers) {
      for (const auto& s : layer.settings) {
        if (s.key != entry.key) continue;
        CommonOptions ignored;
        const bool use = offered && !decided;
        if (auto err = detail::apply_value(entry, s.value, use ? o : ignored))
          return SetupError{c.where(s.value.line, s.value.column) + ": " + layer.prefix + s.key + ": " + *err, kExitConfig};
        if (!use) continue;
        decided = true;
        o.sources[entry.key] = (layer.prefix == agent_prefix && agent ? "agent " + agent->name + ", " : "") +
                               c.where(s.line, s.column);
        if (s.key != "permission") continue;
        // permission = "ask" at the top level or for an agent serves every command: it asks where
        // someone can answer. In a command's own section it is said to that command alone, and
        // only talk can ask.
        if (layer.is_section && o.permission == "ask" && command != "talk")
          return SetupError{c.where(s.value.line, s.value.column) + ": " + command +
                                ".permission: tether " + command +
                                " cannot ask anyone for permission: use \"allow\", \"allow-always\" or \"deny\"",
                            kExitConfig};
        o.permission_from_config = true;
      }
    }
  }
  return std::nullopt;
}

// --mcp first, then the agent's `mcp`, then the top level's: a name once, the first one wins.
std::optional<SetupError> collect_mcp(CommonOptions& o, const ConfigFile& c, const AgentDef* agent) {
  o.mcp.clear();
  auto add = [&](const acp::McpServer& s, const std::string& source) {
    for (const auto& have : o.mcp)
      if (have.name == s.name) return false;
    o.mcp.push_back(s);
    o.sources["mcp." + s.name] = source;
    return true;
  };
  for (const auto& spec : o.mcp_specs) {
    auto parsed = parse_mcp_option(spec);
    if (auto* err = std::get_if<std::string>(&parsed)) return SetupError{"--mcp: " + *err, kExitUsage};
    const auto& s = std::get<acp::McpServer>(parsed);
    if (!add(s, "command line")) return SetupError{"--mcp: two MCP servers are named " + s.name, kExitUsage};
  }
  if (agent)
    for (const auto& s : agent->mcp) add(s, "agent " + agent->name + " (" + agent->origin + ")");
  for (const auto& s : c.mcp) add(s, c.where(c.mcp_line, 0));
  return std::nullopt;
}

}  // namespace

namespace {

struct Catalog {
  const CLI::App* all = nullptr;
  std::function<const CLI::App*()> build;  // makes `all` on first use, when set
};

Catalog& catalog() {
  static Catalog c;
  return c;
}

// The App of every command, built now if it is to be built (before the registry is walked: the
// build adds to it); null when there is no catalog.
const CLI::App* catalog_app() {
  Catalog& c = catalog();
  if (!c.all && c.build) c.all = std::exchange(c.build, nullptr)();
  return c.all;
}

// Whether `reg` is one of the commands of `all` (any registered one when there is no catalog).
bool in_catalog(const detail::Registered& reg, const CLI::App* all) {
  return reg.app && (!all || reg.app->get_parent() == all);
}

}  // namespace

void set_command_catalog(const CLI::App* all_commands) { catalog() = {all_commands, nullptr}; }
void set_command_catalog_builder(std::function<const CLI::App*()> build) { catalog() = {nullptr, std::move(build)}; }

void forget_registered_options(const CLI::App& root) {
  std::erase_if(option_registry(), [&](const auto& entry) { return entry.second.app && entry.second.app->get_parent() == &root; });
}

ConfigKeys config_keys() {
  ConfigKeys keys;
  for (const auto& entry : common_option_table()) keys.top.emplace_back(entry.key);
  const CLI::App* all = catalog_app();
  for (const auto& [opts, reg] : option_registry()) {
    if (!in_catalog(reg, all)) continue;
    auto& section = keys.sections[reg.app->get_name()];
    for (const auto& [key, _] : reg.options) section.push_back(key);
  }
  return keys;
}

CommonOptions* registered_options(const std::string& command) {
  const CLI::App* all = catalog_app();
  for (auto& [opts, reg] : option_registry())
    if (in_catalog(reg, all) && reg.app->get_name() == command) return const_cast<CommonOptions*>(opts);
  return nullptr;
}

std::variant<ConfigFile, SetupError> load_config(const std::string& explicit_path) {
  // An explicit --config must exist; the default one may be absent.
  std::string path = explicit_path.empty() ? default_config_path() : explicit_path;
  if (path.empty()) return ConfigFile{};
  std::ifstream in(path);
  if (!in) {
    if (!explicit_path.empty()) return SetupError{"cannot read config file " + path + ": " + strerror(errno), kExitConfig};
    return ConfigFile{};
  }
  std::stringstream text;
  text << in.rdbuf();
  auto read = load_config_text(text.str(), path, config_keys());
  if (auto* err = std::get_if<std::string>(&read)) return SetupError{*err, kExitConfig};
  return std::get<ConfigFile>(std::move(read));
}

std::optional<SetupError> finish_options(CommonOptions& o) {
  auto loaded = load_config(o.config);
  if (auto* err = std::get_if<SetupError>(&loaded)) return *err;
  const auto& config = std::get<ConfigFile>(loaded);
  o.config_path = config.path;
  const std::string command = command_of(o);
  const AgentDef* agent = nullptr;
  if (auto err = choose_agent(o, config, command, agent)) return err;
  if (auto err = apply_settings(o, config, command, agent)) return err;
  if (auto err = collect_mcp(o, config, agent)) return err;
  if (config.log) {  // --log, --no-log and TETHER_LOG win over it (cli/turn_log.h, log_path)
    const ConfigValue& v = config.log->value;
    o.config_log = v.kind == ConfigValue::Kind::boolean ? (v.boolean ? std::nullopt : std::optional<std::string>(""))
                                                        : std::optional<std::string>(v.text);
    o.sources["log"] = config.where(config.log->line, config.log->column);
  }

  if (o.bridge_stderr.empty()) return SetupError{"--bridge-stderr needs tail, pass or a file name", kExitUsage};

  // The session cwd must be an absolute, existing directory.
  std::string dir = o.cwd.empty() ? "." : o.cwd;
  char resolved[PATH_MAX];
  struct stat st;
  errno = 0;
  if (!::realpath(dir.c_str(), resolved) || ::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
    std::string where = o.sources.count("cwd") && o.sources["cwd"] != "command line" ? " (" + o.sources["cwd"] + ")" : "";
    return SetupError{"--cwd " + dir + where + ": not a directory we can use" +
                          (errno ? std::string(" (") + strerror(errno) + ")" : ""),
                      where.empty() ? kExitUsage : kExitConfig};
  }
  o.cwd = resolved;
  return std::nullopt;
}

std::vector<ResolvedValue> resolved_values(const CommonOptions& o) {
  std::vector<ResolvedValue> out;
  auto reg = option_registry().find(&o);
  for (const auto& entry : common_option_table()) {
    if (reg == option_registry().end() || !reg->second.options.count(entry.key)) continue;
    ResolvedValue v;
    v.key = entry.key;
    std::visit(
        [&](auto member) {
          using T = std::remove_cv_t<std::remove_reference_t<decltype(o.*member)>>;
          if constexpr (std::is_same_v<T, std::string>) {
            v.value = o.*member;
            v.is_string = true;
          } else if constexpr (std::is_same_v<T, bool>) {
            v.value = o.*member ? "true" : "false";
          } else if constexpr (std::is_same_v<T, double>) {
            std::ostringstream text;
            text << o.*member;
            v.value = text.str();
          } else {
            v.value = std::to_string(o.*member);
          }
        },
        entry.field);
    auto src = o.sources.find(entry.key);
    v.source = src != o.sources.end() ? src->second : "default";
    out.push_back(std::move(v));
  }
  return out;
}

}  // namespace tether::cli
