// SessionCore's session settings (see session_core.h): the mode and config options the user asked
// for (--mode, --model, --set) are applied after every session setup, one request each; talk's
// /mode, /model and /set change them between turns (change_settings), and what the agent accepts
// is remembered so that a re-established session gets it again. What each request carries is
// acp/setup.h's plan_settings.
#include "acp/session_core.h"

#include "supervisor/bridge.h"

namespace tether::acp {

std::variant<std::uint64_t, json> SessionCore::change_settings(const SessionSettings& change) {
  if (link_ != Link::ready) return error_object("usage", "the session is not ready yet");
  auto plan = plan_settings(change, state_.session_id, state_.modes, state_.config_options);
  if (auto* err = std::get_if<json>(&plan)) return *err;
  // Kept once the agent accepts it (remember_setting), so that a re-established session gets
  // it again; a refused one is not replayed.
  std::uint64_t token = 0;
  for (auto& r : std::get<std::vector<SettingRequest>>(plan)) token = request(r.method, std::move(r.params));
  return token;
}

// The MCP servers the user gave (--mcp, the config's `mcp`), for session/new, load and resume.
// An http or sse server the agent does not advertise is left out, with a notice once per session
// core: the rest of the session still works, and the user learns why that server is missing.
json SessionCore::mcp_servers() {
  std::vector<std::string> left_out;
  json servers = mcp_servers_param(opt_.mcp, state_.agent_capabilities, &left_out);
  if (!left_out.empty() && !mcp_notice_given_) {
    mcp_notice_given_ = true;
    std::string names;
    for (const auto& n : left_out) names += (names.empty() ? "" : ", ") + n;
    notice("MCP server" + std::string(left_out.size() > 1 ? "s " : " ") + names +
           " left out: the agent does not advertise http or sse MCP servers (mcpCapabilities)");
  }
  return servers;
}

// modes and configOptions of a session/new, load or resume answer (load's may be null).
void SessionCore::read_session_settings(const json& r) {
  if (const json* modes = member(r, "modes"); modes && modes->is_object()) {
    state_.modes = *modes;
    state_.mode_id = string_of(*modes, "currentModeId");
  }
  if (const json* opts = member(r, "configOptions"); opts && opts->is_array()) state_.config_options = *opts;
}

// A setting request succeeded: the session state follows it (set_config_option answers with the
// whole list; set_mode with nothing, and a current_mode_update may or may not follow).
void SessionCore::apply_setting(const std::string& method, const json& params, const json& result) {
  if (method == "session/set_mode") {
    state_.mode_id = string_of(params, "modeId");
    if (state_.modes.is_object()) state_.modes["currentModeId"] = state_.mode_id;
  } else if (method == "session/set_config_option") {
    if (const json* opts = member(result, "configOptions"); opts && opts->is_array()) {
      state_.config_options = *opts;
    } else if (state_.config_options.is_array()) {
      for (auto& o : state_.config_options)
        if (string_of(o, "id") == string_of(params, "configId") && params.contains("value")) o["currentValue"] = params["value"];
    }
  }
}

// A setting changed by change_settings() and accepted: applied again after re-establishment.
void SessionCore::remember_setting(const std::string& method, const json& params) {
  if (method == "session/set_mode") {
    settings_.mode = string_of(params, "modeId");
  } else if (method == "session/set_config_option") {
    std::string key = string_of(params, "configId");
    const json* v = member(params, "value");
    if (key.empty() || !v) return;
    std::string value = v->is_string() ? v->get<std::string>() : v->is_boolean() ? (v->get<bool>() ? "true" : "false") : "";
    // It may have been asked as --model or as --mode (a mode option): the explicit key wins from
    // now on, so that a re-establishment does not set the old value first.
    if (const json* m = model_option(state_.config_options); m && string_of(*m, "id") == key) settings_.model.clear();
    if (state_.config_options.is_array())
      for (const auto& o : state_.config_options)
        if (string_of(o, "category") == "mode" && string_of(o, "id") == key) settings_.mode.clear();
    std::erase_if(settings_.set, [&](const auto& old) { return old.first == key; });
    settings_.set.emplace_back(key, value);
  }
}

void SessionCore::begin_configure() {
  auto plan = plan_settings(settings_, state_.session_id, state_.modes, state_.config_options);
  if (auto* err = std::get_if<json>(&plan)) {
    link_fail(*err);
    return;
  }
  auto& steps = std::get<std::vector<SettingRequest>>(plan);
  pending_settings_.assign(std::make_move_iterator(steps.begin()), std::make_move_iterator(steps.end()));
  send_next_setting();
}

void SessionCore::send_next_setting() {
  if (pending_settings_.empty()) {
    session_ready();
    return;
  }
  SettingRequest next = std::move(pending_settings_.front());
  pending_settings_.pop_front();
  setting_what_ = next.what;
  setting_params_ = next.params;
  send_setup(Link::configuring, next.method == "session/set_mode" ? "session/set_mode" : "session/set_config_option",
             std::move(next.params));
}

}  // namespace tether::acp
