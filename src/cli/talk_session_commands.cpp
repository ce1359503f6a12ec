// Talk (talk_private.h): the commands that act on the session, the bridge or the tether server
// (/mode, /model, /set, /status, /stderr, /restart, /session new), and the server's own requests
// behind them in connect mode (_tether/status, _tether/restart).
#include <poll.h>
#include <signal.h>

#include <cstdio>

#include "cli/talk_private.h"
#include "cli/terminal_text.h"
#include "serve/protocol.h"

namespace tether::cli {

using namespace talk_detail;

// --- /mode, /model, /set --------------------------------------------------------------------------

// /mode, /model, /set: with an argument, the change (its answer comes later, see
// on_setting_reply); without, what the agent offers.
void Talk::change_setting(talk::LineKind kind, const std::string& arg) {
  if (arg.empty()) {
    show_settings(kind);
    return;
  }
  acp::SessionSettings change;
  if (kind == talk::LineKind::mode) change.mode = arg;
  else if (kind == talk::LineKind::model) change.model = arg;
  else change.set.emplace_back(arg.substr(0, arg.find('=')), arg.substr(arg.find('=') + 1));
  auto r = session_->change_settings(change);
  if (auto* err = std::get_if<nlohmann::json>(&r)) {
    renderer_.error(err->value("message", "cannot change that"));
    if (!interactive_) last_status_ = acp::worse_exit(last_status_, kExitUsage);
    return;
  }
  std::uint64_t token = std::get<std::uint64_t>(r);
  if (token == 0) {
    renderer_.dim("(already so)");
    return;
  }
  setting_token_ = token;
  setting_what_ = kind == talk::LineKind::mode ? "mode " + arg : kind == talk::LineKind::model ? "model " + arg : arg;
  // A script waits for the answer, so that the next prompt runs with the new setting.
  if (!interactive_) {
    auto deadline = base::Deadline::after(kRestartWait);
    while (setting_token_ != 0 && !deadline.expired()) {
      pollfd p = {session_->fd(), POLLIN, 0};
      ::poll(&p, 1, base::Deadline::earliest(deadline, session_->next_deadline()).poll_timeout_ms());
      on_session_events(session_->poll());
    }
  }
}

// /mode, /model, /set without an argument: what the agent offers.
void Talk::show_settings(talk::LineKind kind) {
  const auto& st = session_->state();
  std::vector<std::string> lines = acp::describe_settings(st.modes, kind == talk::LineKind::set ? st.config_options : nlohmann::json());
  if (kind == talk::LineKind::model) {
    lines.clear();
    if (const auto* opt = acp::model_option(st.config_options)) lines = acp::describe_settings(nullptr, nlohmann::json::array({*opt}));
  } else if (kind == talk::LineKind::mode && lines.empty()) {
    for (const auto& o : st.config_options.is_array() ? st.config_options : nlohmann::json::array())
      if (o.value("category", "") == "mode") lines = acp::describe_settings(nullptr, nlohmann::json::array({o}));
  }
  if (lines.empty()) {
    renderer_.dim(kind == talk::LineKind::mode    ? "(the agent offers no modes)"
                  : kind == talk::LineKind::model ? "(the agent offers no model choice)"
                                                  : "(the agent offers no session options)");
  } else {
    std::string text;
    for (auto& l : lines) text += terminal_line(l) + "\n";
    renderer_.info(text);
  }
}

// The answer to a /mode, /model or /set: told, and consumed (true).
bool Talk::on_setting_reply(const acp::TurnEvent& e) {
  if (setting_token_ == 0 || e.request_id != setting_token_) return false;
  setting_token_ = 0;
  std::string what = terminal_line(setting_what_);
  if (e.error.is_null()) {
    renderer_.note(what + ": set");
  } else {
    renderer_.error("the agent refused " + what + ": " +
                    (e.error.contains("code") && e.error["code"].is_number() ? acp::rpc_error_text(e.error)
                                                                             : e.error.value("message", "error")));
    if (!interactive_) last_status_ = acp::worse_exit(last_status_, kExitNotClean);
  }
  return true;
}

// --- a tether server's own requests (connect mode) ----------------------------------------------

// Sends a request to the tether server and waits for its answer, showing what comes meanwhile.
// The result, or nothing with `why` set (its error, no answer within `limit`, or Ctrl-C).
std::optional<nlohmann::json> Talk::ask_server(std::string_view method, base::Duration limit, std::string& why,
                                               nlohmann::json params) {
  std::uint64_t id = session_->request(method, std::move(params));
  auto deadline = base::Deadline::after(limit);
  for (;;) {
    for (auto& r : replies_) {
      if (r.request_id != id) continue;
      acp::TurnEvent e = std::move(r);
      replies_.clear();
      if (e.error.is_null()) return std::move(e.result);
      why = reply_error_text(e.error);
      return std::nullopt;
    }
    replies_.clear();  // answers to requests given up on
    if (deadline.expired()) {
      why = "no answer within " + acp::duration_text(limit);
      return std::nullopt;
    }
    pollfd p[2] = {{sig_.get(), POLLIN, 0}, {session_->fd(), POLLIN, 0}};
    ::poll(p, 2, base::Deadline::earliest(deadline, session_->next_deadline()).poll_timeout_ms());
    if (p[0].revents & POLLIN) {
      int sig = read_signal(sig_.get());
      if (sig == SIGINT) {
        why = "stopped waiting (Ctrl-C)";
        return std::nullopt;
      }
      if (sig == SIGTERM || sig == SIGHUP) {
        shutdown_now();
        reraise(sig);
      }
    }
    on_session_events(session_->poll());
  }
}

// /restart through a server: its bridge gets a fresh process and a fresh restart budget; every
// client hears of it (_tether/bridge_restarted).
void Talk::restart_server_bridge() {
  renderer_.dim("(asking the tether server to restart its bridge...)");
  flush();
  server_trouble_shown_ = false;
  std::string why;
  auto r = ask_server(serve::protocol::kRestart, kRestartWait, why);
  if (!r) {
    renderer_.error("the tether server did not restart its bridge: " + why);
  } else if (!server_trouble_shown_) {
    std::string gen = r->is_object() && r->contains("generation") ? " (generation " + r->at("generation").dump() + ")" : "";
    renderer_.note("the tether server restarted its bridge" + gen);
  }
  flush();
}

// /stderr through a server: the bridge's stderr is the server's; what it kept of the last exit.
void Talk::server_stderr() {
  std::string why;
  auto r = ask_server(serve::protocol::kStatus, kServerStatusWait, why);
  if (!r) {
    renderer_.error("the tether server did not answer _tether/status: " + why);
    return;
  }
  std::string tail;
  if (r->is_object() && r->contains("lastExit") && (*r)["lastExit"].is_object())
    tail = (*r)["lastExit"].value("stderrTail", "");
  if (tail.empty()) renderer_.dim("(the bridge runs in the tether server, whose own stderr or log has its output)");
  else renderer_.info(renderer_.style().sanitize ? talk::sanitize_text(tail) : tail);
}

// The server's side of /status, from _tether/status.
std::string Talk::server_status_lines(const supervisor::BridgeStatus& st) {
  using nlohmann::json;
  std::string s = "server:    " + server_;
  std::string why;
  auto got = ask_server(serve::protocol::kStatus, kServerStatusWait, why);
  const json r = got && got->is_object() ? *got : json::object();
  auto number = [&](const char* key) { return r.contains(key) && r[key].is_number() ? r[key].dump() : std::string(); };
  // Counts (not ids) in talk's one number format.
  auto count = [&](const char* key) {
    return r.contains(key) && r[key].is_number_integer() ? talk::number_text(r[key].get<std::int64_t>()) : number(key);
  };
  if (auto pid = number("serverPid"); !pid.empty()) s += ", pid " + pid;
  if (auto clients = count("clients"); !clients.empty()) s += ", " + clients + " client" + (clients == "1" ? "" : "s");
  s += "\n";
  s += "link:      " + std::string(supervisor::to_string(st.state)) + ", connection " + std::to_string(st.generation) +
       (st.restarts_total ? " (reconnected " + talk::number_text(st.restarts_total) + "x)" : "");
  if (st.state == supervisor::State::ready) s += ", up " + duration_text(st.uptime);
  s += "\n";
  if (st.last_exit && st.last_exit->reason != supervisor::ExitReason::stopped)
    s += "last drop: " + supervisor::describe(*st.last_exit) + "\n";
  if (!got) return s + "bridge:    (the server did not answer _tether/status: " + why + ")\n";
  if (r.contains("bridge") && r["bridge"].is_array()) {
    std::vector<std::string> words;
    for (const auto& w : r["bridge"])
      if (w.is_string()) words.push_back(w.get<std::string>());
    s += "bridge:    " + shell_command(words) + "\n";
  }
  s += "state:     " + r.value("state", std::string("?"));
  if (auto pid = number("pid"); !pid.empty() && pid != "-1") s += ", pid " + pid;
  if (auto gen = number("generation"); !gen.empty()) s += ", generation " + gen;
  if (r.value("state", "") == "ready" && r.contains("uptimeMs") && r["uptimeMs"].is_number_integer())
    s += ", up " + duration_text(std::chrono::milliseconds(r["uptimeMs"].get<long long>()));
  if (auto link = r.value("link", std::string()); !link.empty() && link != "ready") s += ", ACP link " + link;
  s += "\n";
  s += "restarts:  " + (count("restartsInWindow").empty() ? "?" : count("restartsInWindow")) + " in the server's window, " +
       (count("restartsTotal").empty() ? "?" : count("restartsTotal")) + " in all\n";
  if (r.contains("lastExit") && r["lastExit"].is_object())
    s += "last exit: " + r["lastExit"].value("message", std::string("?")) + "\n";
  return s;
}

// /status: the bridge (or the server and our link to it), the session, the agent, the counters.
std::string Talk::status_text() {
  auto st = bridge_.status();
  const auto& ss = session_->state();
  std::string s;
  if (connected_mode()) {
    s += server_status_lines(st);
  } else {
    s += "bridge:    " + shell_command(argv_) + "\n";
    s += "state:     " + std::string(supervisor::to_string(st.state));
    if (st.pid > 0) s += ", pid " + std::to_string(st.pid);
    s += ", generation " + std::to_string(st.generation);
    if (st.state == supervisor::State::ready) s += ", up " + duration_text(st.uptime);
    s += "\n";
    char window[32];
    std::snprintf(window, sizeof window, "%g s", o_.common.restart_window);
    s += "restarts:  " + talk::number_text(st.restarts_in_window) + " in the last " + window + " (" +
         talk::number_text(o_.common.max_restarts) + " allowed), " + talk::number_text(st.restarts_total) + " in all\n";
    if (st.last_exit) s += "last exit: " + supervisor::describe(*st.last_exit) + "\n";
  }
  s += "session:   " + (ss.session_id.empty() ? std::string("(none)") : terminal_line(ss.session_id));
  if (connected_mode() && !ss.session_id.empty())
    s += ss.on_main ? " (the server's main session)" : " (a session of our own)";
  if (ss.sessions_loaded) s += ", restored " + talk::number_text(static_cast<std::int64_t>(ss.sessions_loaded)) + "x by session/load";
  if (ss.sessions_created > 1) s += ", " + talk::number_text(static_cast<std::int64_t>(ss.sessions_created)) + " sessions created";
  s += "\n";
  std::string name, version;
  if (ss.agent_info.is_object()) {
    name = ss.agent_info.value("name", "");
    version = ss.agent_info.value("version", "");
  }
  s += "agent:     " + (name.empty() ? std::string("(unnamed)") : terminal_line(name)) + (version.empty() ? "" : " " + terminal_line(version)) +
       ", ACP v" + std::to_string(ss.protocol_version) + (ss.load_session ? ", can load sessions" : "") + "\n";
  for (const auto& l : acp::describe_settings(ss.modes, ss.config_options))
    s += "setting:   " + terminal_line(l) + "\n";
  if (ss.modes.is_null() && !ss.mode_id.empty()) s += "mode:      " + terminal_line(ss.mode_id) + "\n";
  for (const auto& m : o_.common.mcp)  // --mcp and the config's; an http/sse one the agent cannot take was left out
    s += "mcp:       " + terminal_line(acp::describe_mcp_server(m)) +
         (acp::mcp_servers_param({m}, ss.agent_capabilities).empty() ? " (left out: the agent takes no " + m.type + " servers)" : "") + "\n";
  if (!ss.auth_method.empty()) s += "auth:      " + terminal_line(ss.auth_method) + "\n";
  // Counts in talk's one number format (talk::number_text), like the turn footer's usage.
  auto n = [](auto v) { return talk::number_text(static_cast<std::int64_t>(v)); };
  if (ss.sessions_closed) s += "closed:    " + n(ss.sessions_closed) + " session(s) closed at the agent\n";
  if (ss.usage) s += "context:   " + talk::usage_text(*ss.usage) + "\n";
  const auto& c = st.counters;
  s += "anomalies: " + n(c.invalid_json) + " invalid JSON, " + n(c.not_jsonrpc) + " not JSON-RPC, " + n(c.oversize_lines) +
       " oversize, " + n(c.unknown_responses) + " unknown responses, " + n(ss.ignored_updates) + " ignored updates, " +
       n(ss.late_updates) + " late updates\n";
  s += "traffic:   " + n(c.frames_in) + " frames in, " + n(c.frames_out) + " out, " + n(c.stderr_bytes) + " stderr bytes\n";
  return s;
}

// --- /restart, /session new -----------------------------------------------------------------------

// /restart: a fresh process with a fresh budget, then the session back (loaded, or new).
// Connect mode: a reconnect, with a fresh budget of reconnects.
void Talk::restart() {
  auto before = bridge_.status().generation;
  renderer_.dim(connected_mode() ? "(reconnecting to the tether server...)" : "(restarting the bridge...)");
  flush();
  bridge_.restart();
  auto deadline = base::Deadline::after(kRestartWait);
  for (;;) {
    auto st = bridge_.status();
    if (st.generation > before &&
        (st.state == supervisor::State::ready || st.state == supervisor::State::failed)) break;
    if (deadline.expired()) {
      renderer_.error(connected_mode() ? "not reconnected to the tether server within 30 s; /status shows where it is"
                                       : "the bridge has not come back within 30 s; /status shows where it is");
      flush();
      return;
    }
    pollfd p[2] = {{sig_.get(), POLLIN, 0}, {session_->fd(), POLLIN, 0}};
    ::poll(p, 2, 50);  // status changes also wake the event fd; 50 ms bounds a missed one
    if (p[0].revents & POLLIN) {
      int sig = read_signal(sig_.get());
      if (sig == SIGINT) {
        renderer_.dim(connected_mode() ? "(stopped waiting; tether keeps reconnecting in the background)"
                                       : "(stopped waiting; the bridge keeps restarting in the background)");
        flush();
        return;
      }
      if (sig == SIGTERM || sig == SIGHUP) {
        shutdown_now();
        reraise(sig);
      }
    }
    on_session_events(session_->poll());
  }
  auto st = bridge_.status();
  if (st.state == supervisor::State::failed) {
    sync_bridge_state();
    renderer_.error(give_up_text(st));
    flush();
    return;
  }
  auto failed = session_->open(base::Deadline::after(kRestartWait), sig_.get());
  sync_bridge_state();
  if (failed) {
    renderer_.error(acp::message_with_tail(failed->error));
  } else {
    st = bridge_.status();
    // Through a server, the session's own notice says that we are back (re-attached).
    if (!connected_mode())
      renderer_.note("the bridge was restarted (pid " + std::to_string(st.pid) + ", generation " +
                     std::to_string(st.generation) + ")");
    trouble_shown_ = false;
    on_session_events(session_->poll());
  }
  flush();
}

// /session new: a new session on the connection as it is; the conversation so far is forgotten.
void Talk::new_session() {
  if (bridge_down()) return;
  // session/new on the connection as it is: the agent is initialized already.
  auto failed = session_->new_session(base::Deadline::after(kRestartWait), sig_.get());
  seen_loaded_ = session_->state().sessions_loaded;
  if (failed) renderer_.error(acp::message_with_tail(failed->error));
  else renderer_.note("new session " + terminal_line(session_->state().session_id));
  flush();
}
}  // namespace tether::cli
