// `tether config` (see config_cmd.h). It resolves the options of the command it is asked about
// through that command's own options struct (registered by its setup in main), with nothing given
// on its command line but --agent and --config: the same finish_options a real run goes through,
// so what it prints is what that command would do.
#include "cli/config_cmd.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/common.h"
#include "cli/option_values.h"
#include "cli/shell_words.h"

namespace tether::cli {
namespace {

using nlohmann::json;

std::string source_of(const CommonOptions& o, const std::string& key) {
  auto it = o.sources.find(key);
  return it != o.sources.end() ? it->second : "default";
}

json mcp_json(const acp::McpServer& s) {
  json j = {{"name", s.name}, {"type", s.type}};
  if (s.type == "stdio") {
    j["command"] = s.command;
    j["args"] = s.args;
  } else {
    j["url"] = s.url;
  }
  return j;
}

std::string as_json_text(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string text_report(const CommonOptions& o, const std::string& command) {
  std::string out = "# tether " + command + "; config file: " + (o.config_path.empty() ? "none" : o.config_path) + "\n";
  auto line = [&](const std::string& key, const std::string& value, const std::string& source) {
    out += key + " = " + value + "  # " + source + "\n";
  };
  if (!o.agent.empty()) line("agent", quoted_value(o.agent), source_of(o, "agent"));
  if (!o.connect.empty()) line("connect", quoted_value(o.connect), "command line");
  else line("bridge", as_json_text(o.bridge), source_of(o, "bridge"));
  for (const auto& kv : o.bridge_env) {
    auto eq = kv.find('=');
    line("env." + kv.substr(0, eq), quoted_value(kv.substr(eq + 1)), source_of(o, "env." + kv.substr(0, eq)));
  }
  for (const auto& v : resolved_values(o)) line(v.key, v.is_string ? quoted_value(v.value) : v.value, v.source);
  for (const auto& s : o.mcp) line("mcp." + s.name, quoted_value(acp::describe_mcp_server(s)), source_of(o, "mcp." + s.name));
  return out;
}

json json_report(const CommonOptions& o, const std::string& command) {
  json j = {{"command", command}, {"configFile", o.config_path.empty() ? json() : json(o.config_path)}};
  j["agent"] = o.agent.empty() ? json() : json{{"value", o.agent}, {"source", source_of(o, "agent")}};
  j["bridge"] = o.connect.empty() ? json{{"value", o.bridge}, {"source", source_of(o, "bridge")}} : json();
  json env = json::object();
  for (const auto& kv : o.bridge_env) {
    auto eq = kv.find('=');
    env[kv.substr(0, eq)] = {{"value", kv.substr(eq + 1)}, {"source", source_of(o, "env." + kv.substr(0, eq))}};
  }
  j["env"] = env;
  json settings = json::object();
  for (const auto& v : resolved_values(o)) {
    json value = v.value;
    if (!v.is_string) value = json::parse(v.value, nullptr, false);  // numbers and booleans as such
    settings[v.key] = {{"value", value.is_discarded() ? json(v.value) : value}, {"source", v.source}};
  }
  j["settings"] = settings;
  json mcp = json::array();
  for (const auto& s : o.mcp) {
    json m = mcp_json(s);
    m["source"] = source_of(o, "mcp." + s.name);
    mcp.push_back(m);
  }
  j["mcp"] = mcp;
  return j;
}

}  // namespace

int run_config(const ConfigCmdOptions& c) {
  CommonOptions* o = registered_options(c.command);
  if (!o) {
    error_line("--for: expected batch, call, prompt, serve or talk, got " + quoted_value(c.command));
    return kExitUsage;
  }
  o->agent = c.agent;
  o->config = c.config;
  if (auto err = finish_options(*o)) {
    error_line(err->message);
    return err->exit_code;
  }
  std::string out = c.json ? json_report(*o, c.command).dump(2, ' ', false, json::error_handler_t::replace) + "\n"
                           : text_report(*o, c.command);
  return write_stdout(out) ? kExitOk : kExitIoErr;
}

std::function<int()> setup_config(CLI::App& app) {
  auto o = std::make_shared<ConfigCmdOptions>();
  auto* sub = app.add_subcommand("config", "Print the configuration a command would run with, and where each value comes from");
  sub->footer(
      "Sources: command line, env VAR, FILE:LINE:COLUMN of the config file, agent NAME (its table or\n"
      "built-in), default. Precedence: command line > agent table > [command] section > top level >\n"
      "default. `man tether`, CONFIGURATION, has the whole file format.");
  sub->add_option("-A,--agent", o->agent, "The agent, as the command's --agent NAME")->type_name("NAME");
  sub->add_option("--for", o->command, "The command whose configuration to show")
      ->type_name("COMMAND")
      ->check(CLI::IsMember({"batch", "call", "prompt", "serve", "talk"}))
      ->capture_default_str();
  sub->add_option("--config", o->config, "Config file (default: $XDG_CONFIG_HOME/tether/config.toml)")->type_name("FILE");
  sub->add_flag("--json", o->json, "One JSON object: command, configFile, agent, bridge, env, settings, mcp (each {value, source})");
  return [o] { return run_config(*o); };
}

}  // namespace tether::cli
