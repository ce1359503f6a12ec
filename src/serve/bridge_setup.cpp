// The server's own ACP client toward the bridge: the session setup after each start of a
// generation (initialize, the main session, authentication when asked, the main session's
// settings, and every known session brought back after a restart), then the link's ups and downs.
#include "serve/server_core.h"

#include <cstdlib>

#include "tether_config.h"

namespace tether::serve {

using base::Clock;
using rpc::member;
using rpc::string_of;

void Server::begin_setup(std::uint64_t generation) {
  link_gen_ = generation;
  link_ = Link::setting_up;
  setup_deadline_ = Deadline::after(kSetupTimeout);
  sessions_restored_ = true;
  setup_todo_.clear();
  setting_todo_.clear();
  auth_tried_ = false;
  setup_call("initialize", acp::initialize_params("tether-serve", TETHER_VERSION, o_.allow_fs), "");
}

void Server::setup_call(const std::string& method, json params, std::string session) {
  Call call;
  call.kind = Call::Kind::setup;
  call.step = method;
  call.session = std::move(session);
  call.params = params;
  send_call(method, std::move(params), std::move(call));
}

// session/new, load or resume answered auth_required: authenticate (with --auth, or an env_var
// method whose variables are set) and send it again, once per generation. False when that is
// not possible (then setup fails with the reason and the methods).
bool Server::setup_authenticate(const Call& call, const json& err) {
  if (!acp::is_auth_required(err) || auth_tried_) return false;
  auth_tried_ = true;
  auto choice = acp::choose_auth(profile_.auth_methods, o_.auth, [](const char* n) { return std::getenv(n); }, err);
  if (choice.method_id.empty()) {
    setup_failed(string_of(choice.error, "message"));
    return true;
  }
  auth_redo_ = {{"method", call.step}, {"params", call.params}, {"session", call.session}};
  log("the agent asks for authentication: using its method " + choice.method_id);
  setup_call("authenticate", {{"methodId", choice.method_id}}, "");
  return true;
}

namespace {
// The text of a setup answer that was not a result.
std::string setup_error_text(const rpc::Reply& r) {
  if (r.status == rpc::Reply::Status::error) return acp::rpc_error_text(r.value);
  return "no answer";
}
}  // namespace

void Server::on_setup_reply(const Call& call, const rpc::Reply& r) {
  // A reply of a generation that is already gone, or the closed reply that says this one is: the
  // next generation's "ready" starts the setup again.
  if (link_ != Link::setting_up || call.generation != link_gen_ || r.status == rpc::Reply::Status::closed) return;
  if (call.step == "initialize") return on_setup_initialized(r);
  if (call.step == "authenticate") {
    if (!r.ok()) return setup_failed("authentication failed: " + setup_error_text(r));
    setup_call(string_of(auth_redo_, "method"), auth_redo_["params"], string_of(auth_redo_, "session"));
    return;
  }
  if (call.step == "session/set_mode" || call.step == "session/set_config_option") {
    if (!r.ok()) return setup_failed("the agent refused the main session's " + call.step.substr(12) + ": " + setup_error_text(r));
    if (Session* m = session(main_session_)) {
      if (call.step == "session/set_config_option") m->keep_settings(r.value);
      else if (m->settings.contains("modes") && m->settings["modes"].is_object())
        m->settings["modes"]["currentModeId"] = call.params.value("modeId", json());
    }
    return setup_next();
  }
  Session* s = call.session.empty() ? nullptr : session(call.session);
  if (!call.session.empty() && !s) return setup_next();  // its last client left meanwhile
  if (r.status == rpc::Reply::Status::error && setup_authenticate(call, r.value)) return;
  if (call.step == "session/new") return on_setup_new_session(r, s);
  if (call.step == "session/load" || call.step == "session/resume") return on_setup_reopened(call, r, s);
}

void Server::on_setup_initialized(const rpc::Reply& r) {
  if (!r.ok()) return setup_failed("the bridge refused initialize: " + setup_error_text(r));
  auto read = acp::read_initialize(r.value);
  if (auto* err = std::get_if<json>(&read)) return setup_failed("the bridge does not speak ACP v1: " + string_of(*err, "message"));
  profile_ = std::get<acp::AgentProfile>(read);
  init_result_ = r.value;
  bridge_loads_ = profile_.load;
  if (main_session_.empty()) {
    // --mcp and the config's servers, for the main session (clients bring their own for theirs).
    std::vector<std::string> left_out;
    main_mcp_ = acp::mcp_servers_param(o_.mcp, profile_.capabilities, &left_out);
    for (const auto& name : left_out)
      log("MCP server " + name + " left out: the agent does not advertise http or sse MCP servers (mcpCapabilities)");
    setup_call("session/new", acp::new_session_params(o_.cwd, main_mcp_), "");
    return;
  }
  for (auto& [id, s] : sessions_) setup_todo_.push_back(id);
  setup_next();
}

// session/new answered: the main session the first time (`s` null), else a session the agent
// lost, re-created under the same public id.
void Server::on_setup_new_session(const rpc::Reply& r, Session* s) {
  std::string sid = r.ok() ? string_of(r.value, "sessionId") : "";
  if (sid.empty()) {
    if (!s) return setup_failed("the bridge refused session/new: " + setup_error_text(r));
    // A lost session that cannot be re-created: its clients keep the id; prompts will fail.
    sessions_restored_ = false;
    return setup_next();
  }
  if (!s) {  // the main session, first time (call.session is empty)
    Session m;
    m.public_id = m.bridge_id = sid;
    m.cwd = o_.cwd;
    m.mcp_servers = main_mcp_;
    m.main = true;
    main_session_ = sid;
    m.keep_settings(r.value);
    sessions_.emplace(sid, std::move(m));
    by_bridge_id_[sid] = sid;
    plan_main_settings(r.value);
    return setup_next();
  }
  by_bridge_id_.erase(s->bridge_id);
  s->bridge_id = sid;
  by_bridge_id_[sid] = s->public_id;
  s->keep_settings(r.value);
  sessions_restored_ = false;  // a fresh session: the agent lost the conversation
  if (s->main) plan_main_settings(r.value);
  setup_next();
}

// session/resume or session/load answered after a restart.
void Server::on_setup_reopened(const Call& call, const rpc::Reply& r, Session* s) {
  if (s) s->loading = false;
  if (!r.ok() && s) {
    // The agent could not bring it back after all: load when resume failed and it can, else a
    // fresh session under the same public id.
    if (call.step == "session/resume" && profile_.load) {
      s->loading = true;
      setup_call("session/load", acp::reopen_params(s->bridge_id, s->cwd, s->mcp_servers), s->public_id);
    } else {
      setup_call("session/new", acp::new_session_params(s->cwd, s->mcp_servers), s->public_id);
    }
    return;
  }
  if (s) {
    // What the answer does not report may have changed with the new process: forgotten, so
    // that a client attaching later does not skip a setting as already in effect.
    for (const char* key : {"modes", "configOptions"}) {
      if (r.value.is_object() && r.value.contains(key)) continue;
      if (!s->settings.contains(key)) continue;
      json& old = s->settings[key];
      if (old.is_object()) old.erase("currentModeId");
      if (old.is_array())
        for (auto& o : old)
          if (o.is_object()) o.erase("currentValue");
    }
    if (!r.value.is_object() || !r.value.contains("modes")) s->state_updates.erase("current_mode_update");
    if (!r.value.is_object() || !r.value.contains("configOptions")) s->state_updates.erase("config_option_update");
    s->keep_settings(r.value);
  }
  if (s && s->main) plan_main_settings(r.value);
  return setup_next();
}

// The main session's --mode/--model/--set, against what its setup answer offers; sent by
// setup_next() before anything else. An id the agent does not offer ends the server's start
// (exit 64), or, after a restart, is logged.
void Server::plan_main_settings(const json& answer) {
  if (settings_.empty()) return;
  // What the answer does not report is taken from what the session offered before, without its
  // current values: a new process may have reopened it in its defaults, so nothing is skipped as
  // already in effect.
  Session* m = session(main_session_);
  auto offered = [&](const char* key) -> json {
    if (answer.is_object() && answer.contains(key)) return answer[key];
    if (!m || !m->settings.contains(key)) return json();
    json old = m->settings[key];
    if (old.is_object()) old.erase("currentModeId");
    if (old.is_array())
      for (auto& o : old)
        if (o.is_object()) o.erase("currentValue");
    return old;
  };
  json modes = offered("modes");
  json opts = offered("configOptions");
  auto plan = acp::plan_settings(settings_, main_session_bridge_id(), modes, opts);
  if (auto* err = std::get_if<json>(&plan)) {
    if (!ever_ready_) {
      startup_exit_ = acp::exit_status_for_error(*err, true);
      startup_error_ = string_of(*err, "message");
    } else {
      log(string_of(*err, "message"));
    }
    return;
  }
  for (auto& step : std::get<std::vector<acp::SettingRequest>>(plan)) setting_todo_.push_back(std::move(step));
}

std::string Server::main_session_bridge_id() {
  Session* m = session(main_session_);
  return m ? m->bridge_id : main_session_;
}

void Server::setup_next() {
  if (!startup_error_.empty()) return;
  if (!setting_todo_.empty()) {
    acp::SettingRequest next = std::move(setting_todo_.front());
    setting_todo_.pop_front();
    setup_call(next.method, std::move(next.params), "");
    return;
  }
  while (!setup_todo_.empty()) {
    std::string id = setup_todo_.back();
    setup_todo_.pop_back();
    Session* s = session(id);
    if (!s) continue;
    // Back on a new process: resume (no replay) when the agent offers it, else load, else new.
    if (profile_.resume || profile_.load) {
      s->loading = true;
      setup_call(profile_.resume ? "session/resume" : "session/load", acp::reopen_params(s->bridge_id, s->cwd, s->mcp_servers), id);
    } else {
      setup_call("session/new", acp::new_session_params(s->cwd, s->mcp_servers), id);
    }
    return;
  }
  link_ready();
}

void Server::setup_failed(const std::string& why) {
  if (!ever_ready_) {
    startup_error_ = why;
    return;
  }
  log(why + "; restarting it");
  last_cause_ = why;
  link_ = Link::down;
  setup_deadline_ = Deadline::never();
  bridge_.recycle(link_gen_, why);
}

void Server::link_ready() {
  setup_deadline_ = Deadline::never();
  link_ = Link::ready;
  const bool first = !ever_ready_;
  ever_ready_ = true;
  if (first) {
    log("listening on " + where_.path + " (bridge generation " + std::to_string(link_gen_) + ", main session " +
             main_session_ + ")");
  } else {
    log("the bridge is back (generation " + std::to_string(link_gen_) + ")" +
             (sessions_restored_ ? "" : "; the agent lost the sessions' context"));
    broadcast(protocol::kBridgeRestarted, {{"generation", link_gen_},
                                           {"cause", last_cause_},
                                           {"stderrLine", last_stderr_line_},
                                           {"sessionsRestored", sessions_restored_}});
  }
  for (auto& [c, id] : std::exchange(restart_waiters_, {})) reply(c, id, {{"generation", link_gen_}});
  replay_deferred();
  for (auto& [id, s] : sessions_) pump(s);
}

void Server::link_gone(const std::string& message) {
  link_ = Link::gone;
  gone_message_ = message;
  setup_deadline_ = Deadline::never();
  log(message);
  broadcast(protocol::kBridgeGone, {{"message", message}});
  for (auto& [c, id] : std::exchange(restart_waiters_, {})) reply_tether_error(c, id, gone_error());
  replay_deferred();  // each now fails with restart_limit (initialize is still answered)
  for (auto& [id, s] : sessions_) pump(s);
}

void Server::replay_deferred() {
  auto waiting = std::exchange(deferred_, {});
  for (auto& q : waiting)
    if (client(q.client)) on_client_request(q.client, q.message);
}


}  // namespace tether::serve
