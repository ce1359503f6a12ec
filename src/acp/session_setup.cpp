// SessionCore's setup sequence (see session_core.h), one request at a time (ACP.md §10):
// initialize; then session/new, or to bring a session back session/resume, else session/load (a
// tether server: its attach); on auth_required, authenticate and the same request again, once;
// then the settings (session_settings.cpp); then ready. The same sequence re-establishes the
// session after a bridge restart. What each request carries and what each answer means is
// acp/setup.h's; here is only the order and what a failure at each step does.
#include "acp/server_wire.h"
#include "acp/session_core.h"

#include "supervisor/bridge.h"

namespace tether::acp {

void SessionCore::begin_handshake() {
  send_setup(Link::initializing, "initialize",
             initialize_params(opt_.client_name, opt_.client_version, opt_.allow_fs, terminals_ != nullptr));
}

void SessionCore::send_setup(Link phase, const char* method, json params) {
  std::uint64_t gen = 0;
  link_ = phase;
  link_method_ = method;
  link_deadline_ = Deadline::after(opt_.setup_timeout);
  if (phase == Link::creating || phase == Link::loading || phase == Link::resuming || phase == Link::attaching)
    last_step_ = {phase, method, params};
  link_call_ = bridge_.call_queued(method, std::move(params), &gen);
  link_call_gen_ = gen;
}

void SessionCore::send_new_session() { send_setup(Link::creating, "session/new", new_session_params(opt_.cwd, mcp_servers())); }

// The session step after initialize (or after start_new_session, load_session): session/new when
// there is no session id, else bringing that session back.
void SessionCore::send_session_step() {
  if (state_.session_id.empty()) send_new_session();
  else reopen_session();
}

// Brings back the session we had (or the one asked for), on a fresh connection: resume (no
// replay) when the agent offers it, else load, else a new session and a notice that the context
// is lost; a session the user asked to continue fails instead.
void SessionCore::reopen_session() {
  forget_current_settings();
  if (state_.can_resume) {
    send_setup(Link::resuming, "session/resume", reopen_params(state_.session_id, opt_.cwd, mcp_servers()));
  } else if (state_.load_session) {
    send_load();
  } else if (continuing_) {
    link_fail(cannot_continue_error());
  } else {
    context_lost_reason_ = "the agent cannot load or resume sessions (it advertises neither)";
    send_new_session();
  }
}

// session/load of our session. A continued session's replay is counted afresh: a load sent again
// (after a restart in the middle of one, or after a refused resume) replays the whole history
// again. (Once ready, a restart's replay is not counted, and the count stays.)
void SessionCore::send_load() {
  if (continuing_) {
    state_.replayed_turns = 0;
    replay_user_ = false;
  }
  send_setup(Link::loading, "session/load", reopen_params(state_.session_id, opt_.cwd, mcp_servers()));
}

// The agent by the name it gave (agentInfo), for the sentences below.
json SessionCore::cannot_continue_error() const {
  std::string name = string_of(state_.agent_info, "name");
  return error_object("agent_error", (name.empty() ? std::string("the agent") : name) +
                                         " cannot continue a session: it advertises neither session/resume nor "
                                         "session/load; start a new conversation instead");
}

json SessionCore::not_continued_error(const char* method, const json& err) const {
  json extra = rpc_error_extra(err);
  extra["sessionId"] = state_.session_id;
  std::string why = rpc_error_text(err);
  const json* c = member(err, "code");
  bool unknown = c && c->is_number_integer() && c->get<long long>() == kResourceNotFound;
  return error_object("agent_error",
                      "cannot continue session " + state_.session_id + ": the agent answered " + method + " with " + why +
                          (unknown ? " (it does not know that session, or no longer keeps it)" : ""),
                      std::move(extra));
}

// Before a session is brought back on a new connection: what it offered is kept, not what was in
// effect. A new process may have reopened it in its defaults, and an answer that does not say
// otherwise must not let a setting be skipped as already in effect.
void SessionCore::forget_current_settings() {
  if (state_.modes.is_object()) state_.modes.erase("currentModeId");
  if (state_.config_options.is_array())
    for (auto& o : state_.config_options)
      if (o.is_object()) o.erase("currentValue");
  state_.mode_id.clear();
}

// session/close for the session we have, when the agent offers it; never through a tether
// server (it closes what its clients leave). True when it was sent.
bool SessionCore::send_close() {
  if (opt_.via_server || !state_.can_close || state_.session_id.empty()) return false;
  close_answered_ = false;
  close_call_ = bridge_.call_queued("session/close", {{"sessionId", state_.session_id}}, &close_gen_);
  ++state_.sessions_closed;
  return true;
}

// session/close for a session we no longer track (its answer goes to no one).
void SessionCore::close_by_id(const std::string& id) {
  if (opt_.via_server || !state_.can_close || id.empty()) return;
  bridge_.call_queued("session/close", {{"sessionId", id}}, nullptr);
  ++state_.sessions_closed;
}

void SessionCore::on_setup_reply(const Reply& r) {
  switch (r.status) {
    case Reply::Status::timeout:
    case Reply::Status::cancelled:
      return;  // we gave up on it already
    case Reply::Status::closed:
      // The bridge died under the handshake: start over on the next generation, or give up
      // with the supervisor when it does.
      if (error_code(r.value) == "restart_limit") link_fail(r.value);
      else lose_link(link_call_gen_);
      return;
    case Reply::Status::error:
      on_setup_error(r.value);
      return;
    case Reply::Status::result:
      on_setup_result(r.value);
      return;
  }
}

// auth_required from session/new, load or resume: authenticate with the method the user chose
// (or whose variables are set) and send the same request again; at most once per connection.
bool SessionCore::try_authenticate(const json& err) {
  if (!is_auth_required(err) || auth_tried_ || opt_.via_server) return false;
  auth_tried_ = true;
  EnvLookup env = opt_.env ? opt_.env : EnvLookup([](const char* name) { return std::getenv(name); });
  // The method the user named, else the one a person picked earlier (a restart asks again).
  const std::string& named = opt_.auth.empty() ? picked_auth_ : opt_.auth;
  AuthChoice choice = choose_auth(state_.auth_methods, named, env, err);
  // A person is asked only inside open(): elsewhere (a restart mid-session) the terminal belongs
  // to the front-end's line editor.
  if (choice.method_id.empty() && named.empty() && opt_.ask_auth && in_open_ && state_.auth_methods.is_array() &&
      !state_.auth_methods.empty()) {
    std::string picked = opt_.ask_auth(state_.auth_methods, err);
    if (!picked.empty()) choice = choose_auth(state_.auth_methods, picked, env, err);
    if (!choice.method_id.empty()) picked_auth_ = choice.method_id;
  }
  if (choice.method_id.empty()) {
    link_fail(choice.error);
    return true;
  }
  redo_ = last_step_;
  state_.auth_method = choice.method_id;
  send_setup(Link::authenticating, "authenticate", {{"methodId", choice.method_id}});
  return true;
}

void SessionCore::on_setup_error(const json& err) {
  // A tether server's own failure (past its restart budget: restart_limit) is told as it is,
  // not as the agent's refusal of the method.
  if (const json* data = opt_.via_server && is_server_error(err) ? member(err, "data") : nullptr;
      data && data->is_object() && !string_of(*data, "code").empty()) {
    link_fail(*data);
    return;
  }
  switch (link_) {
    case Link::initializing:
      link_fail(error_object("protocol_error",
                             "the bridge answered initialize with " + rpc_error_text(err) + ": is it an ACP agent?",
                             rpc_error_extra(err)));
      return;
    case Link::creating:
      if (try_authenticate(err)) return;
      link_fail(error_object(is_auth_required(err) ? "auth_required" : "agent_error",
                             "the agent refused session/new: " + rpc_error_text(err), rpc_error_extra(err)));
      return;
    case Link::authenticating:
      if (picked_auth_ == state_.auth_method) picked_auth_.clear();  // ask again next time
      link_fail(error_object("auth_required", "authentication with " + state_.auth_method + " failed: " + rpc_error_text(err),
                             rpc_error_extra(err)));
      return;
    case Link::resuming:
      if (try_authenticate(err)) return;
      // An agent that advertises resume but cannot do it: load, or a new session (a session
      // the user asked to continue: a failure).
      if (state_.load_session) {
        send_load();
      } else if (continuing_) {
        link_fail(not_continued_error("session/resume", err));
      } else {
        context_lost_reason_ = "the agent could not resume the session (" + rpc_error_text(err) + ")";
        send_new_session();
      }
      return;
    case Link::loading:
      if (!opt_.via_server && try_authenticate(err)) return;
      if (continuing_) {
        link_fail(not_continued_error("session/load", err));
        return;
      }
      context_lost_reason_ = (opt_.via_server ? "the tether server could not re-attach the session ("
                                              : "the agent could not load the session (") +
                             rpc_error_text(err) + ")";
      send_new_session();
      return;
    case Link::attaching:
      link_fail(error_object("agent_error", "the tether server did not attach us to its main session: " + rpc_error_text(err),
                             rpc_error_extra(err)));
      return;
    case Link::configuring:
      link_fail(error_object("agent_error", "the agent refused " + setting_what_ + ": " + rpc_error_text(err),
                             rpc_error_extra(err)));
      return;
    default:
      return;
  }
}

// A setup request succeeded: the next step, by the step it answered.
void SessionCore::on_setup_result(const json& r) {
  switch (link_) {
    case Link::initializing: on_initialized(r); return;
    case Link::authenticating: send_setup(redo_.phase, redo_.method.c_str(), redo_.params); return;
    case Link::attaching: on_attached(r); return;
    case Link::creating: on_created(r); return;
    case Link::loading:
    case Link::resuming: on_reopened(r); return;
    case Link::configuring:
      apply_setting(link_method_, setting_params_, r);
      send_next_setting();
      return;
    default: return;
  }
}

// initialize answered: the agent's profile, then the session (new, or brought back after a
// restart), or a tether server's own sequence.
void SessionCore::on_initialized(const json& r) {
  auto read = read_initialize(r);
  if (auto* err = std::get_if<json>(&read)) {
    link_fail(*err);
    return;
  }
  const AgentProfile& p = std::get<AgentProfile>(read);
  state_.protocol_version = kProtocolVersion;
  live_gen_ = link_call_gen_;
  state_.agent_info = p.info;
  state_.agent_capabilities = p.capabilities;
  state_.auth_methods = p.auth_methods;
  state_.load_session = p.load;
  state_.can_resume = p.resume;
  state_.can_close = p.close;
  state_.can_list = p.list;
  auth_tried_ = false;
  if (opt_.via_server) {
    server_setup(r);
    return;
  }
  send_session_step();
}

// A tether server attached us to its main session.
void SessionCore::on_attached(const json& r) {
  // The server answers {} at once: the session's history is not replayed.
  bool again = !state_.session_id.empty();
  bool other = again && state_.session_id != attach_id_;
  state_.session_id = attach_id_;
  state_.on_main = true;
  other_turn_ = false;
  if (again) ++state_.sessions_loaded;
  if (other) {
    ready_notice_ = "the tether server has a new main session (it was restarted): attached to it, and the "
                    "conversation context was lost";
  } else if (again) {
    ready_notice_ = "reconnected to the tether server and re-attached to its main session";
  }
  read_session_settings(r);
  begin_configure();
}

// session/new answered: its updates that came before the answer are handled now.
void SessionCore::on_created(const json& r) {
  std::string id = string_of(r, "sessionId");
  if (id.empty()) {
    link_fail(error_object("protocol_error", "the agent's session/new result has no sessionId"));
    return;
  }
  state_.session_id = id;
  state_.on_main = false;
  ++state_.sessions_created;
  read_session_settings(r);
  for (auto& params : std::exchange(buffered_, {}))
    if (string_of(params, "sessionId") == id) on_update(link_call_gen_, params);
  if (!context_lost_reason_.empty())
    ready_notice_ = std::exchange(context_lost_reason_, {}) + ": a new session was started and the conversation context was lost";
  begin_configure();
}

// session/load or session/resume answered: the session is back.
void SessionCore::on_reopened(const json& r) {
  ++state_.sessions_loaded;
  // A session the user asked to continue is what they expect: the front-end says so its way.
  // continuing_ stays set until session_ready(): a restart while the settings are applied must
  // still fail rather than fall back to a new session.
  ready_notice_ = continuing_ ? ""
                  : opt_.via_server ? "reconnected to the tether server and re-attached to the session (session/load)"
                  : link_ == Link::resuming
                      ? "the session was restored after the bridge restarted (session/resume)"
                      : "the session was restored after the bridge restarted (session/load)";
  read_session_settings(r);
  begin_configure();
}

// After initialize through a tether server: it must be one, and the session is attached
// (the main one, or ours again after a reconnect: the server knows the sessions opened through
// it, whatever the agent can load) or created.
void SessionCore::server_setup(const json& r) {
  const json* meta = member(r, "_meta");
  const json* t = meta ? member(*meta, server_wire::kMetaKey) : nullptr;
  if (!t || !t->is_object()) {
    link_fail(error_object("protocol_error",
                           "the peer is not a tether server (its initialize answer has no _meta.tether)"));
    return;
  }
  state_.server = *t;
  bool to_main = state_.session_id.empty() ? opt_.attach_main : state_.on_main;
  if (to_main) {
    attach_id_ = string_of(*t, server_wire::kMainSessionId);
    if (attach_id_.empty()) {
      link_fail(error_object("protocol_error", "the tether server did not name its main session (_meta.tether.mainSessionId)"));
      return;
    }
    send_setup(Link::attaching, "session/load", reopen_params(attach_id_, opt_.cwd, mcp_servers()));
  } else if (!state_.session_id.empty()) {
    forget_current_settings();
    send_load();
  } else {
    send_new_session();
  }
}

void SessionCore::session_ready() {
  link_ = Link::ready;
  continuing_ = false;
  state_.generation = link_call_gen_;
  link_error_ = nullptr;
  if (!ready_notice_.empty()) notice(std::exchange(ready_notice_, {}));
}

void SessionCore::link_fail(json error) {
  link_ = Link::failed;
  link_call_ = 0;
  link_error_ = std::move(error);
  if (active_ && active_->phase == TurnState::Phase::waiting) finish(*active_, failed_event(link_error_, true));
  for (auto& t : std::exchange(queue_, {})) {
    t->phase = TurnState::Phase::done;
    if (!t->abandoned) t->out.push_back(failed_event(link_error_, true));
  }
}

}  // namespace tether::acp
