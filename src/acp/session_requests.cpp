// SessionCore's answers to the requests the agent makes of us (see session_core.h): permission
// (chosen by the --permission policy, or left to a person with `ask` and answered through
// Turn/AcpSession::answer_permission), fs reads and writes (when --allow-fs), the terminal/*
// methods (when --allow-terminal: acp/terminals.h), and -32601 for anything else. Every request is answered exactly once: by policy, by a person, `cancelled` when
// its turn ends or the agent withdraws it, or dropped with a dead generation.
#include "acp/session_core.h"

#include "supervisor/bridge.h"

namespace tether::acp {

// `t`: only a request of that turn; null: any.
bool SessionCore::answer_permission(const TurnState* t, std::uint64_t token, const std::optional<std::string>& option_id) {
  for (auto it = pending_perms_.begin(); it != pending_perms_.end(); ++it) {
    if (it->token != token || (t && it->turn != t)) continue;
    if (option_id) {
      bool offered = false;
      for (const auto& o : it->options) offered = offered || o.id == *option_id;
      if (!offered) return false;  // never invent an option id
    }
    bridge_.respond(it->gen, it->id, permission_result(option_id));
    pending_perms_.erase(it);
    return true;
  }
  return false;
}

void SessionCore::on_request(Event& ev) {
  json& msg = ev.message;
  const json& id = msg["id"];
  const std::string method = string_of(msg, "method");
  static const json kEmpty = json::object();
  const json* params = member(msg, "params");
  if (!params) params = &kEmpty;
  if (method == "session/request_permission") {
    on_permission(ev.generation, id, *params);
  } else if (opt_.via_server && (method.rfind("fs/", 0) == 0) && string_of(*params, "sessionId") != state_.session_id) {
    // Through a server, only our own session's files are ours to serve.
    bridge_.respond_error(ev.generation, id, rpc::kInvalidParams, "not a session of this client");
  } else if (terminals_ && method.rfind("terminal/", 0) == 0) {
    terminals_->request(ev.generation, id, method, *params, state_.session_id);
    pump_terminals();
  } else if (opt_.allow_fs && (method == "fs/read_text_file" || method == "fs/write_text_file")) {
    auto r = method == "fs/read_text_file" ? fs_.read_text_file(*params) : fs_.write_text_file(*params);
    if (auto* err = std::get_if<FsError>(&r)) bridge_.respond_error(ev.generation, id, err->code, err->message);
    else bridge_.respond(ev.generation, id, std::move(std::get<json>(r)));
  } else {
    // Not advertised, not implemented: the one answer the spec allows.
    bridge_.respond_error(ev.generation, id, rpc::kMethodNotFound, "Method not found: " + method);
  }
}

// Reads the terminals' output and exits, and sends what they answer (wait_for_exit answers
// when its command exits).
void SessionCore::pump_terminals() {
  if (!terminals_) return;
  terminals_->pump();
  for (auto& a : terminals_->take_answers()) {
    if (a.error_code) bridge_.respond_error(a.generation, a.id, a.error_code, a.error_message);
    else bridge_.respond(a.generation, a.id, std::move(a.result));
  }
}

void SessionCore::on_permission(std::uint64_t gen, const json& id, const json& params) {
  PermissionRequest pr;
  pr.token = ++next_token_;
  pr.options = parse_options(params);
  if (const json* tc = member(params, "toolCall")) {
    if (auto tool = parse_tool_call(*tc, false)) pr.tool = std::move(*tool);
  }
  TurnState* t = active_.get();
  bool ours = string_of(params, "sessionId") == state_.session_id;
  // Through a server, our turn is ours only once the server started it (see server_started).
  bool started = t && (!opt_.via_server || t->server_started);
  bool in_turn = started && ours && gen == t->call_gen && t->phase == TurnState::Phase::prompting;
  bool cancelling = started && t->phase == TurnState::Phase::cancelling;
  // Through a server, a request for our session while no turn of ours is in flight comes from
  // another client's turn: the server asks us in its place (serve/protocol.h).
  bool idle = opt_.via_server && ours && !state_.session_id.empty() && !in_turn && !cancelling;
  if (idle) {
    pr.outside_turn = true;
    if (opt_.permission == PermissionPolicy::ask) {
      pending_perms_.push_back({pr.token, gen, id, nullptr, pr.options});
    } else {
      pr.chosen = choose_option(opt_.permission, pr.options);
      bridge_.respond(gen, id, permission_result(pr.chosen ? std::optional<std::string>(pr.chosen->id) : std::nullopt));
      pr.answered = true;
    }
    TurnEvent& e = outside_event();
    e.kind = TurnEvent::Kind::permission;
    e.permission = std::move(pr);
    return;
  }
  if (opt_.via_server && !ours) {
    // Not our session (one we left with start_new_session, say): no policy of ours applies.
    bridge_.respond(gen, id, permission_result(std::nullopt));
    return;
  }
  if (in_turn && opt_.permission == PermissionPolicy::ask && !t->abandoned) {
    pending_perms_.push_back({pr.token, gen, id, t, pr.options});
  } else {
    // Asked when nobody can be asked, or while the turn is being cancelled: cancelled.
    // Otherwise the policy picks an offered option, or cancelled when none fits.
    std::optional<PermissionOption> chosen;
    if (!cancelling && opt_.permission != PermissionPolicy::ask) chosen = choose_option(opt_.permission, pr.options);
    bridge_.respond(gen, id, permission_result(chosen ? std::optional<std::string>(chosen->id) : std::nullopt));
    pr.answered = true;
    pr.chosen = std::move(chosen);
  }
  if (in_turn || (cancelling && ours)) {
    if (t->abandoned) return;
    TurnEvent e;
    e.kind = TurnEvent::Kind::permission;
    e.permission = std::move(pr);
    t->out.push_back(std::move(e));
  }
}

void SessionCore::on_cancel_request(std::uint64_t gen, const json& params) {
  const json* rid = member(params, "requestId");
  if (!rid) return;
  for (auto it = pending_perms_.begin(); it != pending_perms_.end(); ++it) {
    if (it->gen != gen || it->id != *rid) continue;
    // The spec still wants an answer to the withdrawn request: a cancelled outcome.
    bridge_.respond(it->gen, it->id, permission_result(std::nullopt));
    TurnEvent e;
    e.kind = TurnEvent::Kind::permission_withdrawn;
    e.permission.token = it->token;
    TurnState* t = it->turn;
    pending_perms_.erase(it);
    if (!t) notices_.push_back(std::move(e));
    else if (!t->abandoned) t->out.push_back(std::move(e));
    return;
  }
}

void SessionCore::answer_pending_cancelled(const TurnState* t) {
  for (auto it = pending_perms_.begin(); it != pending_perms_.end();) {
    if (t && it->turn != t) {
      ++it;
      continue;
    }
    bridge_.respond(it->gen, it->id, permission_result(std::nullopt));
    it = pending_perms_.erase(it);
  }
}

// Ends the pending requests that came while no turn of ours was in flight (of generation `gen`;
// 0: all): answered `cancelled` (a dead generation drops it) and told as withdrawn.
// Through a server a connection's end also ends its turn's questions (`gen` != 0): the turn is
// sent again on the next connection, and an answer to the old one would go nowhere.
void SessionCore::withdraw_idle_permissions(std::uint64_t gen) {
  const bool turns_too = opt_.via_server && gen != 0;
  for (auto it = pending_perms_.begin(); it != pending_perms_.end();) {
    if ((it->turn && !turns_too) || (gen != 0 && it->gen != gen)) {
      ++it;
      continue;
    }
    bridge_.respond(it->gen, it->id, permission_result(std::nullopt));
    TurnState* t = it->turn;
    if (!t || !t->abandoned) {  // an abandoned turn has nobody to tell
      TurnEvent& e = t ? t->out.emplace_back() : outside_event();
      e.kind = TurnEvent::Kind::permission_withdrawn;
      e.permission.token = it->token;
    }
    it = pending_perms_.erase(it);
  }
}

}  // namespace tether::acp
