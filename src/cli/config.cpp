// The config file's structure (see config.h): which key may stand where, and the tables of
// agents and MCP servers. Every error names the file, the line and column, and the key.
#include "cli/config.h"

#include <algorithm>
#include <set>

#include "cli/option_values.h"
#include "cli/usage.h"

namespace tether::cli {
namespace {

// What each failure says is built here: "PATH:LINE:COLUMN: KEY: what".
struct Reader {
  const std::string& path;
  const ConfigKeys& keys;
  std::string error;

  bool fail(int line, int column, const std::string& what) {
    error = path + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + what;
    return false;
  }
  bool unknown(const ConfigEntry& e, const std::string& prefix, std::vector<std::string> known, const std::string& why = {}) {
    std::string near = closest_word(e.key, known);
    return fail(e.line, e.column,
                "unknown key '" + prefix + e.key + "'" + (why.empty() ? "" : " " + why) +
                    (near.empty() ? std::string() : "; did you mean " + prefix + near + "?"));
  }
  bool expect(const ConfigEntry& e, const std::string& name, ConfigValue::Kind kind) {
    if (e.value.kind == kind) return true;
    return fail(e.value.line, e.value.column,
                name + ": expected " + kind_name(kind) + ", got " + config_text(e.value));
  }

  // A command line: an array of strings (or one string, split into words), not empty.
  bool words(const ConfigEntry& e, const std::string& name, std::vector<std::string>& out) {
    if (e.value.kind == ConfigValue::Kind::string) out = split_words(e.value.text);
    else if (e.value.is_string_array()) out = e.value.strings();
    else return fail(e.value.line, e.value.column, name + ": expected an array of strings, got " + config_text(e.value));
    if (out.empty() || out[0].empty()) return fail(e.value.line, e.value.column, name + ": the command is empty");
    return true;
  }

  // A table of strings: env, headers.
  bool string_table(const ConfigEntry& e, const std::string& name, std::vector<std::pair<std::string, std::string>>& out) {
    if (!expect(e, name, ConfigValue::Kind::table)) return false;
    for (const auto& kv : e.value.entries) {
      if (kv.value.kind != ConfigValue::Kind::string)
        return fail(kv.value.line, kv.value.column,
                    name + "." + kv.key + ": expected a string, got " + config_text(kv.value) + " (values take quotes)");
      out.emplace_back(kv.key, kv.value.text);
    }
    return true;
  }

  bool mcp_server(const ConfigValue& t, const std::string& name, acp::McpServer& s);
  bool mcp_list(const ConfigEntry& e, const std::string& name, std::vector<acp::McpServer>& out);
  bool agent(const ConfigEntry& e, AgentDef& a);
  bool section(const ConfigEntry& e, ConfigFile& c);
  bool top(const ConfigEntry& e, ConfigFile& c);
};

bool Reader::mcp_server(const ConfigValue& t, const std::string& name, acp::McpServer& s) {
  if (t.kind != ConfigValue::Kind::table)
    return fail(t.line, t.column, name + ": expected a table {name = ..., command = [...]}, got " + config_text(t));
  for (const auto& e : t.entries) {
    const std::string key = name + "." + e.key;
    if (e.key == "name") {
      if (!expect(e, key, ConfigValue::Kind::string)) return false;
      s.name = e.value.text;
    } else if (e.key == "command") {
      std::vector<std::string> argv;
      if (!words(e, key, argv)) return false;
      s.command = argv[0];
      s.args.assign(argv.begin() + 1, argv.end());
    } else if (e.key == "env") {
      if (!string_table(e, key, s.env)) return false;
    } else if (e.key == "type") {
      if (!expect(e, key, ConfigValue::Kind::string)) return false;
      if (e.value.text != "stdio" && e.value.text != "http" && e.value.text != "sse")
        return fail(e.value.line, e.value.column, key + ": expected \"stdio\", \"http\" or \"sse\", got " + config_text(e.value));
      s.type = e.value.text;
    } else if (e.key == "url") {
      if (!expect(e, key, ConfigValue::Kind::string)) return false;
      s.url = e.value.text;
    } else if (e.key == "headers") {
      if (!string_table(e, key, s.headers)) return false;
    } else {
      return unknown(e, name + ".", {"name", "command", "env", "type", "url", "headers"});
    }
  }
  if (s.name.empty()) return fail(t.line, t.column, name + ": an MCP server needs a name");
  const bool stdio = s.type == "stdio";
  if (stdio && s.command.empty())
    return fail(t.line, t.column, name + " (" + s.name + "): a stdio MCP server needs command = [...] (or type = \"http\" and a url)");
  if (!stdio && s.url.empty()) return fail(t.line, t.column, name + " (" + s.name + "): an " + s.type + " MCP server needs a url");
  if (stdio && (!s.url.empty() || !s.headers.empty()))
    return fail(t.line, t.column, name + " (" + s.name + "): url and headers are for type = \"http\" or \"sse\"");
  if (!stdio && (!s.command.empty() || !s.env.empty()))
    return fail(t.line, t.column, name + " (" + s.name + "): command and env are for stdio servers, not " + s.type);
  return true;
}

bool Reader::mcp_list(const ConfigEntry& e, const std::string& name, std::vector<acp::McpServer>& out) {
  if (!expect(e, name, ConfigValue::Kind::array)) return false;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < e.value.items.size(); ++i) {
    acp::McpServer s;
    if (!mcp_server(e.value.items[i], name + "[" + std::to_string(i) + "]", s)) return false;
    if (!seen.insert(s.name).second)
      return fail(e.value.items[i].line, e.value.items[i].column, name + ": two MCP servers are named " + s.name);
    out.push_back(std::move(s));
  }
  return true;
}

bool Reader::agent(const ConfigEntry& e, AgentDef& a) {
  const std::string name = "agents." + e.key;
  if (!expect(e, name, ConfigValue::Kind::table)) return false;
  a.name = e.key;
  a.origin = path + ":" + std::to_string(e.line);
  const auto& settings = agent_setting_keys();
  for (const auto& kv : e.value.entries) {
    const std::string key = name + "." + kv.key;
    if (kv.key == "command") {
      if (!words(kv, key, a.command)) return false;
    } else if (kv.key == "env") {
      if (!string_table(kv, key, a.env)) return false;
    } else if (kv.key == "mcp") {
      if (!mcp_list(kv, key, a.mcp)) return false;
    } else if (kv.key == "description") {
      if (!expect(kv, key, ConfigValue::Kind::string)) return false;
      a.description = kv.value.text;
    } else if (std::find(settings.begin(), settings.end(), kv.key) != settings.end()) {
      a.settings.push_back({kv.key, kv.value, kv.line, kv.column});
    } else {
      std::vector<std::string> known{"command", "env", "mcp", "description"};
      known.insert(known.end(), settings.begin(), settings.end());
      bool common = std::find(keys.top.begin(), keys.top.end(), kv.key) != keys.top.end();
      return unknown(kv, name + ".",
                     common ? std::vector<std::string>{} : known,
                     common ? "(an agent table takes command, env, mcp, cwd, mode, model, permission and auth; put " +
                                  kv.key + " at the top level or in a command's section)"
                            : "");
    }
  }
  if (a.command.empty()) return fail(e.line, e.column, name + ": an agent needs command = [\"program\", \"arg\", ...]");
  return true;
}

bool Reader::section(const ConfigEntry& e, ConfigFile& c) {
  const std::string& cmd = e.key;
  if (!expect(e, cmd, ConfigValue::Kind::table)) return false;
  const auto& offered = keys.sections.at(cmd);
  for (const auto& kv : e.value.entries) {
    if (kv.key == "agent") {
      if (!expect(kv, cmd + ".agent", ConfigValue::Kind::string)) return false;
      c.section_agent[cmd] = {kv.key, kv.value, kv.line, kv.column};
    } else if (std::find(offered.begin(), offered.end(), kv.key) != offered.end()) {
      c.sections[cmd].push_back({kv.key, kv.value, kv.line, kv.column});
    } else if (std::find(keys.top.begin(), keys.top.end(), kv.key) != keys.top.end()) {
      return fail(kv.line, kv.column, cmd + "." + kv.key + ": means nothing for tether " + cmd +
                                          " (it has no --" + option_name(kv.key) + ")");
    } else {
      std::vector<std::string> known = offered;
      known.push_back("agent");
      return unknown(kv, cmd + ".", known);
    }
  }
  return true;
}

bool Reader::top(const ConfigEntry& e, ConfigFile& c) {
  if (e.key == "default_agent") {
    if (!expect(e, e.key, ConfigValue::Kind::string)) return false;
    c.default_agent = ConfigSetting{e.key, e.value, e.line, e.column};
  } else if (e.key == "bridge") {
    std::vector<std::string> argv;
    if (!words(e, e.key, argv)) return false;
    c.bridge = ConfigSetting{e.key, e.value, e.line, e.column};
  } else if (e.key == "log") {
    // The turn log for every command that logs (--log and --no-log win): false, true or a path.
    const bool ok = e.value.kind == ConfigValue::Kind::boolean ||
                    (e.value.kind == ConfigValue::Kind::string && !e.value.text.empty());
    if (!ok) return fail(e.line, e.column, "log must be true, false or a file name (\"PATH\")");
    c.log = ConfigSetting{e.key, e.value, e.line, e.column};
  } else if (e.key == "mcp") {
    c.mcp_line = e.line;
    if (!mcp_list(e, e.key, c.mcp)) return false;
  } else if (e.key == "agents") {
    if (!expect(e, e.key, ConfigValue::Kind::table)) return false;
    for (const auto& a : e.value.entries) {
      AgentDef def;
      if (!agent(a, def)) return false;
      c.agents[a.key] = std::move(def);
    }
  } else if (keys.sections.count(e.key)) {
    return section(e, c);
  } else if (std::find(keys.top.begin(), keys.top.end(), e.key) != keys.top.end()) {
    if (e.value.kind == ConfigValue::Kind::table)
      return fail(e.line, e.column, "[" + e.key + "] is not a section: write " + e.key + " = VALUE at the top level");
    c.top.push_back({e.key, e.value, e.line, e.column});
  } else {
    std::vector<std::string> known = keys.top;
    for (const char* k : {"default_agent", "bridge", "log", "mcp", "agents"}) known.emplace_back(k);
    for (const auto& [name, _] : keys.sections) known.push_back(name);
    return unknown(e, "", known);
  }
  return true;
}

}  // namespace

std::string option_name(const std::string& key) {
  std::string name = key;
  std::replace(name.begin(), name.end(), '_', '-');
  return name;
}

std::string ConfigFile::where(int line, int column) const {
  return path + ":" + std::to_string(line) + (column ? ":" + std::to_string(column) : std::string());
}

std::variant<ConfigFile, std::string> read_config(const ConfigValue& root, const std::string& path, const ConfigKeys& keys) {
  ConfigFile c;
  c.path = path;
  Reader r{path, keys, {}};
  for (const auto& e : root.entries)
    if (!r.top(e, c)) return r.error;
  if (c.default_agent && c.bridge)
    return c.where(c.bridge->line, c.bridge->column) +
           ": bridge and default_agent both name the agent: keep default_agent (and put the command in an [agents.NAME] table)";
  return c;
}

std::variant<ConfigFile, std::string> load_config_text(const std::string& text, const std::string& path,
                                                       const ConfigKeys& keys) {
  auto parsed = parse_config(text);
  if (auto* err = std::get_if<std::string>(&parsed)) return path + ":" + *err;
  return read_config(std::get<ConfigValue>(parsed), path, keys);
}

std::variant<acp::McpServer, std::string> parse_mcp_option(const std::string& value) {
  auto eq = value.find('=');
  if (eq == std::string::npos || eq == 0)
    return "expected NAME=COMMAND [ARGS] (or NAME=URL), got " + quoted_value(value);
  acp::McpServer s;
  s.name = value.substr(0, eq);
  auto argv = split_words(value.substr(eq + 1));
  if (argv.empty()) return "the MCP server " + s.name + " has no command: expected NAME=COMMAND [ARGS]";
  // A lone URL is an HTTP server (the streamable transport): `--mcp docs=https://host/mcp`.
  if (argv.size() == 1 && (argv[0].starts_with("http://") || argv[0].starts_with("https://"))) {
    s.type = "http";
    s.url = argv[0];
    return s;
  }
  s.command = argv[0];
  s.args.assign(argv.begin() + 1, argv.end());
  return s;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char ch : s) {
    if (quote) {
      if (ch == quote) quote = 0;
      else cur += ch;
      continue;
    }
    if (ch == '"' || ch == '\'') {
      quote = ch;
      in_word = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (in_word) words.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += ch;
      in_word = true;
    }
  }
  if (in_word) words.push_back(cur);
  return words;
}

}  // namespace tether::cli
