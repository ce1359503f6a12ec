#include "acp/setup.h"

#include <algorithm>

#include "acp/outcome.h"
#include "rpc/message.h"

namespace tether::acp {
namespace {

using nlohmann::json;
using rpc::member;
using rpc::string_of;

constexpr std::size_t kMaxReason = 500;

bool flag(const json& obj, std::string_view key) {
  const json* v = member(obj, key);
  return v && v->is_boolean() && v->get<bool>();
}

// Present (an object, or true) means supported: sessionCapabilities entries are objects.
bool present(const json* caps, std::string_view key) {
  const json* v = caps ? member(*caps, key) : nullptr;
  return v && (v->is_object() || (v->is_boolean() && v->get<bool>()));
}

std::string cut(std::string s, std::size_t max) {
  if (s.size() <= max) return s;
  std::size_t n = max;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;  // not inside a UTF-8 character
  s.resize(n);
  return s + "…";
}

std::string method_type(const json& m) {
  std::string t = string_of(m, "type");
  return t.empty() ? "agent" : t;
}

// A method whose _meta says it runs in a terminal ("terminal-auth", or Qwen's {"type":"terminal"}),
// whatever its type.
const json* terminal_meta(const json& m) {
  const json* meta = member(m, "_meta");
  if (!meta || !meta->is_object()) return nullptr;
  if (string_of(*meta, "type") == "terminal") return meta;
  for (auto it = meta->begin(); it != meta->end(); ++it)
    if (it.key().find("terminal") != std::string::npos) return &it.value();
  return nullptr;
}

std::string join(const std::vector<std::string>& words, std::string_view sep) {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += sep;
    s += w;
  }
  return s;
}

std::vector<std::string> mode_ids(const json& modes) {
  std::vector<std::string> ids;
  const json* list = member(modes, "availableModes");
  if (list && list->is_array())
    for (const auto& m : *list)
      if (auto id = string_of(m, "id"); !id.empty()) ids.push_back(id);
  return ids;
}

const json* find_option(const json& config_options, std::string_view id) {
  if (!config_options.is_array()) return nullptr;
  for (const auto& o : config_options)
    if (string_of(o, "id") == id) return &o;
  return nullptr;
}

const json* option_by_category(const json& config_options, std::string_view category) {
  if (!config_options.is_array()) return nullptr;
  for (const auto& o : config_options)
    if (string_of(o, "category") == category) return &o;
  return nullptr;
}

std::string current_value_text(const json& option) {
  const json* v = member(option, "currentValue");
  if (!v) return "";
  if (v->is_string()) return v->get<std::string>();
  if (v->is_boolean()) return v->get<bool>() ? "true" : "false";
  return rpc::dump(*v);
}

std::string offered_values(const json& option) {
  if (string_of(option, "type") == "boolean") return "true, false";
  std::vector<std::string> values;
  for (auto& [value, name] : config_option_values(option)) values.push_back(value);
  return values.empty() ? "nothing" : join(values, ", ");
}

std::string offered_options(const json& config_options) {
  std::vector<std::string> ids;
  if (config_options.is_array())
    for (const auto& o : config_options)
      if (auto id = string_of(o, "id"); !id.empty()) ids.push_back(id);
  return ids.empty() ? "none" : join(ids, ", ");
}

json usage_error(std::string message) { return error_object("usage", std::move(message)); }

// A set_config_option request for `option` set to `value` (text from the command line), or an
// error when the option does not take it.
std::variant<SettingRequest, json> config_request(const std::string& session_id, const json& option,
                                                  const std::string& value, const std::string& flag_name) {
  const std::string id = string_of(option, "id");
  SettingRequest r;
  r.method = "session/set_config_option";
  r.what = id + " " + value;
  if (string_of(option, "type") == "boolean") {
    if (value != "true" && value != "false")
      return usage_error(flag_name + ": the agent's option " + id + " is true or false, not \"" + value + "\"");
    r.params = {{"sessionId", session_id}, {"configId", id}, {"type", "boolean"}, {"value", value == "true"}};
    return r;
  }
  auto values = config_option_values(option);
  bool offered = std::any_of(values.begin(), values.end(), [&](const auto& v) { return v.first == value; });
  if (!offered)
    return usage_error(flag_name + ": the agent does not offer \"" + value + "\" for " + id + "; it offers: " +
                       offered_values(option));
  r.params = {{"sessionId", session_id}, {"configId", id}, {"value", value}};
  return r;
}

}  // namespace

json initialize_params(std::string_view client_name, std::string_view client_version, bool allow_fs,
                       bool allow_terminal) {
  json caps = json::object();
  if (allow_fs) caps["fs"] = {{"readTextFile", true}, {"writeTextFile", true}};
  if (allow_terminal) caps["terminal"] = true;
  return {{"protocolVersion", kProtocolVersion},
          {"clientCapabilities", std::move(caps)},
          {"clientInfo", {{"name", client_name}, {"title", "tether"}, {"version", client_version}}}};
}

std::variant<AgentProfile, json> read_initialize(const json& r) {
  const json* v = member(r, "protocolVersion");
  if (!v || !v->is_number_integer() || v->get<long long>() != kProtocolVersion) {
    std::string got = v ? rpc::dump(*v) : "no version";
    return error_object("protocol_error", "the agent speaks ACP protocol version " + got + "; tether speaks version " +
                                            std::to_string(kProtocolVersion));
  }
  AgentProfile p;
  if (const json* info = member(r, "agentInfo"); info && info->is_object()) p.info = *info;
  if (const json* caps = member(r, "agentCapabilities"); caps && caps->is_object()) p.capabilities = *caps;
  if (const json* auth = member(r, "authMethods"); auth && auth->is_array()) p.auth_methods = *auth;
  p.load = flag(p.capabilities, "loadSession");
  const json* sc = member(p.capabilities, "sessionCapabilities");
  p.resume = present(sc, "resume");
  p.close = present(sc, "close");
  p.list = present(sc, "list");
  return p;
}

json mcp_servers_param(const std::vector<McpServer>& servers, const json& agent_capabilities,
                       std::vector<std::string>* left_out) {
  json out = json::array();
  const json* mcp = member(agent_capabilities, "mcpCapabilities");
  for (const auto& s : servers) {
    auto pairs = [](const std::vector<std::pair<std::string, std::string>>& kv) {
      json a = json::array();
      for (const auto& [name, value] : kv) a.push_back({{"name", name}, {"value", value}});
      return a;
    };
    if (s.type == "stdio") {
      out.push_back({{"name", s.name}, {"command", s.command}, {"args", s.args}, {"env", pairs(s.env)}});
    } else if (flag(mcp ? *mcp : json(), s.type.c_str())) {
      out.push_back({{"type", s.type}, {"name", s.name}, {"url", s.url}, {"headers", pairs(s.headers)}});
    } else if (left_out) {
      left_out->push_back(s.name);
    }
  }
  return out;
}

std::string describe_mcp_server(const McpServer& s) {
  if (s.type != "stdio") return s.name + ": " + s.type + " " + s.url;
  std::string text = s.name + ": " + s.command;
  for (const auto& a : s.args) text += " " + a;
  return text;
}

json new_session_params(const std::string& cwd, const json& mcp_servers) {
  return {{"cwd", cwd}, {"mcpServers", mcp_servers.is_array() ? mcp_servers : json::array()}};
}

json reopen_params(const std::string& session_id, const std::string& cwd, const json& mcp_servers) {
  return {{"sessionId", session_id}, {"cwd", cwd}, {"mcpServers", mcp_servers.is_array() ? mcp_servers : json::array()}};
}

std::string rpc_error_reason(const json& err) {
  const json* data = member(err, "data");
  if (!data || data->is_null()) return "";
  std::string reason;
  if (data->is_string()) {
    reason = data->get<std::string>();
  } else if (data->is_object()) {
    for (const char* k : {"details", "message", "error", "reason"}) {
      const json* d = member(*data, k);
      if (d && d->is_string() && !d->get_ref<const std::string&>().empty()) {
        reason = d->get<std::string>();
        break;
      }
      if (d && d->is_object()) {  // {"error":{"message":…}}
        if (auto m = string_of(*d, "message"); !m.empty()) {
          reason = m;
          break;
        }
      }
    }
  }
  // One line: the agent's dump may span many.
  for (char& c : reason)
    if (c == '\n' || c == '\r') c = ' ';
  if (reason == string_of(err, "message")) return "";  // says nothing more
  return cut(std::move(reason), kMaxReason);
}

std::string rpc_error_text(const json& err) {
  std::string s = "error";
  if (const json* c = member(err, "code"); c && c->is_number_integer()) s += " " + std::to_string(c->get<long long>());
  if (auto m = string_of(err, "message"); !m.empty()) s += ": " + m;
  if (auto reason = rpc_error_reason(err); !reason.empty()) s += " (" + reason + ")";
  return s;
}

json rpc_error_extra(const json& err) {
  json extra = json::object();
  if (const json* c = member(err, "code"); c && c->is_number_integer()) extra["rpcCode"] = *c;
  if (const json* d = member(err, "data"); d && !d->is_null()) extra["data"] = *d;
  return extra;
}

bool is_auth_required(const json& err) {
  const json* c = member(err, "code");
  return c && c->is_number_integer() && c->get<long long>() == kAuthRequired;
}

std::vector<std::string> auth_method_vars(const json& m) {
  std::vector<std::string> vars;
  if (const json* list = member(m, "vars"); list && list->is_array()) {
    for (const auto& v : *list) {
      if (v.is_string()) vars.push_back(v.get<std::string>());
      else if (auto name = string_of(v, "name"); !name.empty() && !flag(v, "optional")) vars.push_back(name);
    }
  }
  if (auto name = string_of(m, "varName"); !name.empty()) vars.push_back(name);
  return vars;
}

std::string describe_auth_methods(const json& methods) {
  std::string s;
  if (!methods.is_array()) return s;
  for (const auto& m : methods) {
    std::string id = string_of(m, "id");
    if (id.empty()) continue;
    std::string type = method_type(m);
    std::string line = "  " + id;
    if (auto name = string_of(m, "name"); !name.empty() && name != id) line += ": " + name;
    line += " (" + type;
    if (type == "env_var") {
      auto vars = auth_method_vars(m);
      if (!vars.empty()) line += ", needs " + join(vars, ", ");
    } else if (type == "terminal" || terminal_meta(m)) {
      line += ", runs in a terminal";
    } else {
      line += ", run by the agent: possibly a browser or device login";
    }
    line += ")";
    if (auto d = string_of(m, "description"); !d.empty()) line += ": " + cut(d, 200);
    for (char& c : line)
      if (c == '\n' || c == '\r') c = ' ';
    s += line + "\n";
  }
  if (!s.empty()) s.pop_back();
  return s;
}

AuthChoice choose_auth(const json& methods, const std::string& requested, const EnvLookup& env, const json& agent_error) {
  AuthChoice c;
  json extra = rpc_error_extra(agent_error);
  std::string reason = rpc_error_reason(agent_error);
  std::string agent_says = string_of(agent_error, "message");
  if (!reason.empty()) agent_says += (agent_says.empty() ? "" : ": ") + reason;
  std::string head = "the agent requires authentication" + (agent_says.empty() ? std::string() : " (" + agent_says + ")");
  std::string listing = describe_auth_methods(methods);
  const std::string how =
      "Pick one with --auth METHOD_ID (or auth = \"METHOD_ID\" in the config file), set the variables of an "
      "env_var method, or sign in with the agent's own tool first.";

  auto fail = [&](std::string message) {
    c.method_id.clear();
    c.error = error_object("auth_required", std::move(message), extra);
    return c;
  };
  if (!methods.is_array() || methods.empty())
    return fail(head + ", and offers no authentication method: sign in with the agent's own tool first");

  if (!requested.empty()) {
    for (const auto& m : methods) {
      if (string_of(m, "id") != requested) continue;
      if (method_type(m) == "terminal")
        return fail(head + "; the method " + requested + " runs in a terminal: run the agent's command with " +
                    rpc::dump(m.contains("args") ? m["args"] : json::array()) +
                    " added, in a terminal, then try again");
      c.method_id = requested;
      return c;
    }
    return fail(head + "; it offers no method " + requested + ". It offers:\n" + listing + "\n" + how);
  }
  for (const auto& m : methods) {
    if (method_type(m) != "env_var") continue;
    auto vars = auth_method_vars(m);
    bool all_set = !vars.empty() && std::all_of(vars.begin(), vars.end(), [&](const std::string& v) {
      const char* value = env(v.c_str());
      return value && *value;
    });
    if (all_set && !string_of(m, "id").empty()) {
      c.method_id = string_of(m, "id");
      return c;
    }
  }
  return fail(head + ", and tether starts no sign-in nobody asked for. The agent offers:\n" + listing + "\n" + how);
}

std::vector<std::pair<std::string, std::string>> config_option_values(const json& option) {
  std::vector<std::pair<std::string, std::string>> out;
  const json* opts = member(option, "options");
  if (!opts || !opts->is_array()) return out;
  for (const auto& o : *opts) {
    if (const json* group = member(o, "options"); group && group->is_array()) {
      for (const auto& g : *group)
        if (auto v = string_of(g, "value"); !v.empty()) out.emplace_back(v, string_of(g, "name"));
    } else if (auto v = string_of(o, "value"); !v.empty()) {
      out.emplace_back(v, string_of(o, "name"));
    }
  }
  return out;
}

const json* model_option(const json& config_options) {
  if (const json* o = option_by_category(config_options, "model")) return o;
  return find_option(config_options, "model");
}

std::variant<std::vector<SettingRequest>, json> plan_settings(const SessionSettings& want, const std::string& session_id,
                                                              const json& modes, const json& config_options) {
  std::vector<SettingRequest> out;
  if (!want.mode.empty()) {
    auto ids = mode_ids(modes);
    const json* mode_opt = option_by_category(config_options, "mode");
    if (std::find(ids.begin(), ids.end(), want.mode) != ids.end()) {
      if (string_of(modes, "currentModeId") != want.mode)
        out.push_back({"session/set_mode", {{"sessionId", session_id}, {"modeId", want.mode}}, "mode " + want.mode});
    } else if (mode_opt) {
      auto r = config_request(session_id, *mode_opt, want.mode, "--mode");
      if (auto* err = std::get_if<json>(&r)) return *err;
      if (current_value_text(*mode_opt) != want.mode) out.push_back(std::move(std::get<SettingRequest>(r)));
    } else {
      return usage_error("--mode " + want.mode + ": the agent offers " +
                         (ids.empty() ? std::string("no modes") : "the modes: " + join(ids, ", ")));
    }
  }
  if (!want.model.empty()) {
    const json* opt = model_option(config_options);
    if (!opt)
      return usage_error("--model " + want.model + ": the agent offers no model option (its options: " +
                         offered_options(config_options) + ")");
    auto r = config_request(session_id, *opt, want.model, "--model");
    if (auto* err = std::get_if<json>(&r)) return *err;
    if (current_value_text(*opt) != want.model) out.push_back(std::move(std::get<SettingRequest>(r)));
  }
  // The same key twice: the last one wins, as on a command line.
  std::vector<std::pair<std::string, std::string>> set;
  for (const auto& kv : want.set) {
    std::erase_if(set, [&](const auto& old) { return old.first == kv.first; });
    set.push_back(kv);
  }
  for (const auto& [key, value] : set) {
    const json* opt = find_option(config_options, key);
    if (!opt)
      return usage_error("--set " + key + "=" + value + ": the agent has no option " + key + " (its options: " +
                         offered_options(config_options) + ")");
    auto r = config_request(session_id, *opt, value, "--set " + key);
    if (auto* err = std::get_if<json>(&r)) return *err;
    if (current_value_text(*opt) != value) out.push_back(std::move(std::get<SettingRequest>(r)));
  }
  return out;
}

std::vector<std::string> describe_settings(const json& modes, const json& config_options) {
  std::vector<std::string> lines;
  auto ids = mode_ids(modes);
  if (!ids.empty()) lines.push_back("mode: " + string_of(modes, "currentModeId") + " (offers " + join(ids, ", ") + ")");
  if (config_options.is_array()) {
    for (const auto& o : config_options) {
      std::string id = string_of(o, "id");
      if (id.empty()) continue;
      lines.push_back(id + ": " + current_value_text(o) + " (offers " + offered_values(o) + ")");
    }
  }
  return lines;
}

}  // namespace tether::acp
