// SessionCore's event pump (see session_core.h): everything the bridge's event queue brings
// (notifications, the agent's requests, answers to ours, the bridge's status changes, stray
// stdout lines) is handled here in wire order, and sorted into the active turn's events, the
// session's state, or the session's notices (what AcpSession::poll() returns). Requests the agent
// makes are handed to session_requests.cpp, answers to setup requests to session_setup.cpp.
#include "acp/server_wire.h"
#include "acp/session_core.h"

#include "supervisor/bridge.h"

namespace tether::acp {

void SessionCore::pump(bool clear_fd) {
  // Always drain, even when size() says empty: drain() also clears the queue's fd, which a
  // push racing with the previous drain may have left readable (skipping it would spin). Only a
  // pump that another follows before the front-end polls again may skip that (`clear_fd` false:
  // a turn started right after the last one was polled, which saves a system call per turn).
  auto events = clear_fd ? bridge_.events()->drain_unparsed() : bridge_.events()->drain_unparsed_if_any();
  if (terminals_) terminals_->new_round(bridge_.counters().outbound_backlog);  // bounds output answers
  if (active_ && !active_->abandoned) active_->out.reserve(active_->out.size() + events.size());
  for (auto& ev : events) handle(ev);
  bridge_.events()->recycle(std::move(events));  // freed by the dispatcher, which allocated them
  pump_terminals();
  check_timers();
  advance();
}

void SessionCore::handle(Event& ev) {
  // A chunk of this session's answer is read straight from its line (most lines of a turn).
  if (ev.kind == Event::Kind::notification && !ev.line.empty()) {
    if (auto u = read_chunk_line(ev.line, state_.session_id)) {
      on_session_update(ev.generation, std::move(*u));
      return;
    }
  }
  rpc::parse_message(ev);
  switch (ev.kind) {
    case Event::Kind::notification: on_notification(ev); break;
    case Event::Kind::request: on_request(ev); break;
    case Event::Kind::response: on_response(ev); break;
    case Event::Kind::status: on_status(ev); break;
    case Event::Kind::output: on_output(ev); break;
  }
}

// A line on the agent's stdout that is not JSON: shown as a notice, since agents print what a
// person must see there (a sign-in URL), against the spec.
void SessionCore::on_output(const Event& ev) {
  ++state_.stray_lines;
  TurnEvent e;
  e.kind = TurnEvent::Kind::output;
  e.text = string_of(ev.message, "text");
  TurnState* t = active_.get();
  if (t && !t->abandoned && t->phase != TurnState::Phase::done) t->out.push_back(std::move(e));
  else notices_.push_back(std::move(e));
}

void SessionCore::on_notification(Event& ev) {
  json& msg = ev.message;
  auto method = msg.find("method");
  auto params = msg.find("params");
  if (method == msg.end() || params == msg.end() || !params->is_object()) return;
  const std::string& name = method->get_ref<const std::string&>();
  if (name == "session/update") {
    on_update(ev.generation, *params);
  } else if (name == "$/cancel_request") {
    on_cancel_request(ev.generation, *params);
  } else if (opt_.via_server && name == server_wire::kTurnStarted) {
    TurnState* t = active_.get();
    if (t && string_of(*params, "sessionId") == state_.session_id && t->phase != TurnState::Phase::waiting &&
        t->phase != TurnState::Phase::done) {
      t->server_started = true;
      other_turn_ = false;
    }
  } else if (opt_.via_server && name == server_wire::kBridgeRestarted) {
    notice(server_restart_text(*params), /*server_trouble=*/true);
  } else if (opt_.via_server && name == server_wire::kBridgeGone) {
    std::string m = string_of(*params, "message");
    notice("the tether server gave up on its bridge" + (m.empty() ? std::string() : ": " + m), true);
  } else if (opt_.via_server && name == server_wire::kAskedElsewhere &&
             string_of(*params, "sessionId") == state_.session_id) {
    notice(string_of(*params, "method") == "session/request_permission"
               ? "waiting: the permission question went to another client of the tether server"
               : "waiting: the agent's " + string_of(*params, "method") + " request went to another client of the tether server");
  }
  // Other notifications ($/progress, extensions) are ignored, as the spec asks.
}

// One line about the server's bridge coming back: what ended it, and whether the sessions came
// back with it.
std::string SessionCore::server_restart_text(const json& p) {
  std::string s = "the tether server restarted its bridge";
  if (const json* g = member(p, "generation"); g && g->is_number_unsigned()) s += " (generation " + std::to_string(g->get<std::uint64_t>()) + ")";
  std::string cause = string_of(p, "cause");
  std::string line = string_of(p, "stderrLine");
  if (!cause.empty()) s += ": " + cause;
  // The cause usually quotes the last stderr line already.
  if (!line.empty() && cause.find(line) == std::string::npos) s += "; its last stderr line: " + line;
  if (const json* r = member(p, "sessionsRestored"); r && r->is_boolean())
    s += r->get<bool>() ? "; the session was restored" : "; the agent lost the conversation context";
  return s;
}

void SessionCore::on_update(std::uint64_t gen, json& params) {
  auto sid = params.find("sessionId");
  auto update = params.find("update");
  if (sid == params.end() || !sid->is_string() || update == params.end()) {
    ++state_.ignored_updates;
    return;
  }
  const std::string& id = sid->get_ref<const std::string&>();
  if (id != state_.session_id || state_.session_id.empty()) {
    if (link_ == Link::attaching && id == attach_id_) {
      // A tether server sends what a newcomer to its session must know (commands, mode,
      // usage) before it answers the attach: kept as state, never shown as a turn.
      if (auto u = parse_update(std::move(*update)); u && u->kind != Update::Kind::unknown) apply_state(*u);
      return;
    }
    // Before session/new answers, its session's updates can only be buffered.
    if (link_ == Link::creating && buffered_.size() < kMaxBufferedUpdates) buffered_.push_back(std::move(params));
    else ++state_.ignored_updates;
    return;
  }
  auto u = parse_update(std::move(*update));
  if (!u || u->kind == Update::Kind::unknown) {
    ++state_.ignored_updates;
    return;
  }
  on_session_update(gen, std::move(*u));
}

// An update for this session, parsed: its state changes, and the active turn's events.
void SessionCore::on_session_update(std::uint64_t gen, Update&& u) {
  apply_state(u);
  TurnState* t = active_.get();
  bool in_turn = t && gen == t->call_gen && (!opt_.via_server || t->server_started) &&
                 (t->phase == TurnState::Phase::prompting || t->phase == TurnState::Phase::cancelling);
  if (!in_turn && opt_.via_server && link_ == Link::ready) {
    // Another client's turn in our session: the server sends its prompt first, as user
    // chunks. Until one comes, what arrives between our turns is our last turn's late output.
    if (u.kind == Update::Kind::user_message) other_turn_ = true;
    if (other_turn_ && (u.kind == Update::Kind::user_message || is_turn_content(u.kind))) {
      TurnEvent& e = outside_event();
      e.kind = TurnEvent::Kind::update;
      e.update = std::move(u);
      return;
    }
  }
  if (in_turn) {
    if (t->abandoned) return;
    // Built in place: a flood passes here a million times.
    TurnEvent& e = t->out.emplace_back();
    e.kind = TurnEvent::Kind::update;
    e.update = std::move(u);
    return;
  }
  // Outside a turn only session state changes; a replayed history (session/load) or a chunk
  // that came after its turn's answer is not shown.
  if (link_ == Link::loading && continuing_) count_replayed(u);
  if (link_ != Link::loading && is_turn_content(u.kind)) ++state_.late_updates;
}

// A continued session's replay: each run of the user's chunks is one earlier prompt.
void SessionCore::count_replayed(const Update& u) {
  bool user = u.kind == Update::Kind::user_message;
  if (user && !replay_user_) ++state_.replayed_turns;
  if (user || is_turn_content(u.kind)) replay_user_ = user;
}

bool SessionCore::is_turn_content(Update::Kind k) {
  return k == Update::Kind::agent_message || k == Update::Kind::agent_thought ||
         k == Update::Kind::tool_call || k == Update::Kind::tool_call_update || k == Update::Kind::plan;
}

void SessionCore::apply_state(const Update& u) {
  switch (u.kind) {
    case Update::Kind::commands:
      state_.commands = u.commands;
      state_.commands_announced = true;
      break;
    case Update::Kind::mode:
      state_.mode_id = u.mode_id;
      if (state_.modes.is_object()) state_.modes["currentModeId"] = u.mode_id;
      break;
    case Update::Kind::config_options:
      if (const json* opts = member(u.raw, "configOptions"); opts && opts->is_array()) state_.config_options = *opts;
      break;
    case Update::Kind::session_info:
      if (u.title) state_.title = *u.title;
      break;
    case Update::Kind::usage: state_.usage = u.usage; break;
    default: break;
  }
}

void SessionCore::on_response(Event& ev) {
  if (link_call_ && ev.call_id == link_call_ && ev.generation == link_call_gen_) {
    link_call_ = 0;
    on_setup_reply(ev.reply);
    return;
  }
  if (close_call_ && ev.call_id == close_call_ && ev.generation == close_gen_) {
    close_call_ = 0;
    close_answered_ = ev.reply.status == Reply::Status::result;
    return;
  }
  for (auto it = ext_calls_.begin(); it != ext_calls_.end(); ++it) {
    if (it->id != ev.call_id || it->gen != ev.generation) continue;
    TurnEvent e;
    e.kind = TurnEvent::Kind::reply;
    e.request_id = it->token;
    // A setting's answer for a session we have left (/session new meanwhile) changes nothing.
    if (ev.reply.status == Reply::Status::result && !it->params.is_null() &&
        string_of(it->params, "sessionId") == state_.session_id) {
      apply_setting(it->method, it->params, ev.reply.value);
      remember_setting(it->method, it->params);
    }
    if (ev.reply.status == Reply::Status::result) e.result = std::move(ev.reply.value);
    else if (ev.reply.status == Reply::Status::error || ev.reply.status == Reply::Status::closed) e.error = std::move(ev.reply.value);
    else e.error = error_object("cancelled", "the request was abandoned");
    ext_calls_.erase(it);
    notices_.push_back(std::move(e));
    return;
  }
  TurnState* t = active_.get();
  if (t && ev.call_id == t->call_id && ev.generation == t->call_gen &&
      (t->phase == TurnState::Phase::prompting || t->phase == TurnState::Phase::cancelling)) {
    on_prompt_reply(*t, std::move(ev.reply));
  }
  // Anything else answers a request we gave up on (deadline, escalation): nothing to do.
}

void SessionCore::on_status(const Event& ev) {
  std::string st = string_of(ev.message, "state");
  if (st == "ready") {
    if (link_ == Link::waiting_bridge && ev.generation > dead_gen_) begin_handshake();
  } else if (st == "exited") {
    if (ev.generation == live_gen_) live_gen_ = 0;
    if (link_ == Link::ready && ev.generation == state_.generation) lose_link(ev.generation);
    // Requests of a dead generation can no longer be answered; its terminals end with it.
    withdraw_idle_permissions(ev.generation);
    if (terminals_) terminals_->drop_generation(ev.generation);
  } else if (st == "failed") {
    json err = ev.message.contains("error") ? ev.message["error"] : error_object("restart_limit", string_of(ev.message, "message"));
    live_gen_ = 0;
    if (link_ == Link::waiting_bridge || link_ == Link::ready) link_fail(err);
  }
}

void SessionCore::lose_link(std::uint64_t gen) {
  link_ = Link::waiting_bridge;
  if (gen == live_gen_) live_gen_ = 0;
  dead_gen_ = gen;
}

// Where what belongs to no turn of ours goes (another client's turn, a question routed to us):
// the session's notices; or, while our own prompt waits in the server's queue, our turn's
// events, marked other_client, so that a front-end reading the turn sees everything in wire
// order (theirs, then ours from _tether/turn_started on).
TurnEvent& SessionCore::outside_event() {
  TurnState* t = active_.get();
  bool queued = opt_.via_server && t && !t->abandoned && !t->server_started &&
                (t->phase == TurnState::Phase::prompting || t->phase == TurnState::Phase::cancelling);
  TurnEvent& e = queued ? t->out.emplace_back() : notices_.emplace_back();
  e.other_client = queued;
  return e;
}

void SessionCore::notice(std::string text, bool server_trouble) {
  TurnEvent e;
  e.kind = TurnEvent::Kind::notice;
  e.text = std::move(text);
  e.server_trouble = server_trouble;
  if (active_ && !active_->abandoned) active_->out.push_back(std::move(e));
  else notices_.push_back(std::move(e));
}

}  // namespace tether::acp
