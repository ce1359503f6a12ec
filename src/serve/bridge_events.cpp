// What the bridge sends: its state changes, the answers to what was asked of it (passed back to
// the client that asked), its updates (to every attached client) and its own questions (to the
// client that answers for the session).
#include "serve/server_core.h"

#include "acp/permission.h"
#include "base/byte_ring.h"

namespace tether::serve {

using base::Clock;
using rpc::member;
using rpc::string_of;

void Server::on_bridge_events() {
  auto events = bridge_.events()->drain();
  holding_output_ = true;
  for (auto& ev : events) {
    switch (ev.kind) {
      case rpc::Event::Kind::status: on_bridge_status(ev); break;
      case rpc::Event::Kind::output: log("the agent wrote on stdout: " + string_of(ev.message, "text")); break;
      case rpc::Event::Kind::response: on_bridge_response(ev); break;
      case rpc::Event::Kind::notification: on_bridge_notification(ev); break;
      case rpc::Event::Kind::request: on_bridge_request(ev); break;
    }
  }
  for (auto& sid : std::exchange(turn_ended_, {})) {
    if (Session* s = session(sid)) {
      pump(*s);
      forget_session_if_unused(sid);
    }
  }
  holding_output_ = false;
  flush_all();
}

void Server::on_bridge_status(const rpc::Event& ev) {
  const std::string state = string_of(ev.message, "state");
  if (state == "ready") {
    if (ev.generation > link_gen_) begin_setup(ev.generation);
  } else if (state == "exited") {
    if (ev.generation != link_gen_ || shutting_down_) return;
    const json* err = member(ev.message, "error");
    if (err) {
      last_cause_ = string_of(*err, "message");
      last_stderr_line_ = base::last_telling_line(string_of(*err, "stderrTail"));
    }
    if (!ever_ready_) {
      startup_error_ = "the bridge stopped before the ACP handshake completed: " + last_cause_;
      return;
    }
    if (link_ != Link::gone) link_ = Link::down;
    setup_deadline_ = Deadline::never();
    log(last_cause_.empty() ? "the bridge stopped" : last_cause_);
    // What the dead generation asked the clients can no longer be answered: withdraw it.
    for (auto it = routed_.begin(); it != routed_.end();) {
      if (it->second.generation != ev.generation) {
        ++it;
        continue;
      }
      send_json(it->second.client, rpc::make_notification("$/cancel_request", {{"requestId", it->first}}));
      it = routed_.erase(it);
    }
  } else if (state == "backoff") {
    if (auto d = member(ev.message, "delayMs")) log("restarting the bridge in " + d->dump() + " ms");
  } else if (state == "failed") {
    if (shutting_down_) return;
    std::string msg = string_of(ev.message, "message");
    if (msg.empty())
      if (const json* err = member(ev.message, "error")) msg = string_of(*err, "message");
    if (!ever_ready_) {
      startup_error_ = msg;
      return;
    }
    if (!restart_waiters_.empty() && ev.generation <= restart_from_gen_) return;  // the restart follows
    link_gone(msg);
  }
}

void Server::on_bridge_response(rpc::Event& ev) {
  const CallKey key{ev.generation, ev.call_id};
  auto it = calls_.find(key);
  if (it == calls_.end()) return;
  Call call = std::move(it->second);
  calls_.erase(it);
  const rpc::Reply& r = ev.reply;
  // A closed reply is the first sign of a dead generation (its waiters are failed before the
  // supervisor reports the exit): nothing more goes to the bridge until a new generation is set up.
  // Only a call sent to the generation set up now says so: a made-up reply to a call that found a
  // newer generation running (call_queued_to) must not take down a link already set up again.
  if (r.status == rpc::Reply::Status::closed && call.generation == link_gen_ &&
      (link_ == Link::ready || link_ == Link::setting_up)) {
    link_ = Link::down;
    setup_deadline_ = Deadline::never();
  }

  if (call.kind == Call::Kind::setup) return on_setup_reply(call, r);

  if (call.kind == Call::Kind::prompt) {
    // By the spec the final response follows the turn's updates: the next turn may start at once
    // (no $/ping boundary: nothing the agent did not advertise goes on the wire).
    if (Session* s = session(call.session); s && s->busy && s->turn_call == key) {
      s->busy = false;
      s->orphan_until = Deadline::never();
    }
  }
  if (call.kind == Call::Kind::new_session && r.ok()) on_new_session_answer(call, r);
  if (call.kind == Call::Kind::load_session) {
    on_load_answer(call, key, r);
    if (call.client) reply_to(call, r);
    return forget_session_if_unused(call.session);  // its loader may have left meanwhile
  }

  if (call.client) reply_to(call, r);
  // The next turn of the session starts once this batch of the bridge's events is handled
  // (on_bridge_events): what the agent wrote after the response in the same read is the ended
  // turn's late output, and goes out before the next sender's _tether/turn_started.
  if (call.kind == Call::Kind::prompt) turn_ended_.push_back(call.session);
}

// A session a client opened: known from now on, with its creator attached.
void Server::on_new_session_answer(const Call& call, const rpc::Reply& r) {
  std::string sid = string_of(r.value, "sessionId");
  if (sid.empty() || session(sid) || !call.client) return;
  Session s;
  s.public_id = s.bridge_id = sid;
  s.cwd = string_of(call.params, "cwd");
  if (const json* m = member(call.params, "mcpServers")) s.mcp_servers = *m;
  s.attached.push_back(call.client);  // the session's creator is its first attached client
  s.keep_settings(r.value);
  sessions_.emplace(sid, std::move(s));
  by_bridge_id_[sid] = sid;
}

// A session a client loaded at the bridge: those who waited for it attach, or it is forgotten.
void Server::on_load_answer(const Call& call, const CallKey& key, const rpc::Reply& r) {
  Session* s = session(call.session);
  if (!s || s->load_call != key) return;
  s->loading = false;
  s->load_call.reset();
  auto waiters = std::exchange(s->load_waiters, {});
  if (r.ok()) {
    s->keep_settings(r.value);
    for (auto& [c, id] : waiters) {
      if (!client(c)) continue;
      attach(*s, c);
      reply(c, id, s->settings);
    }
  } else {
    for (auto& [c, id] : waiters) reply_error(c, id, rpc::kInvalidParams, "Unknown session: " + call.session);
    for (auto& q : s->queue) reply_error(q.client, q.id, rpc::kInvalidParams, "Unknown session: " + call.session);
    by_bridge_id_.erase(s->bridge_id);
    sessions_.erase(call.session);
  }
}

void Server::reply_to(const Call& call, const rpc::Reply& r) {
  switch (r.status) {
    case rpc::Reply::Status::result: reply(call.client, call.client_id, r.value); break;
    case rpc::Reply::Status::error: send_json(call.client, {{"jsonrpc", "2.0"}, {"id", call.client_id}, {"error", r.value}}); break;
    case rpc::Reply::Status::closed:
      reply_tether_error(call.client, call.client_id,
                         r.value.is_object() ? r.value : acp::error_object("bridge_exited", "the bridge is not running"));
      break;
    case rpc::Reply::Status::timeout:
    case rpc::Reply::Status::cancelled:
      reply_tether_error(call.client, call.client_id, acp::error_object("cancelled", "the request was cancelled"));
      break;
  }
}

void Server::on_bridge_notification(rpc::Event& ev) {
  json& msg = ev.message;
  const std::string method = string_of(msg, "method");
  auto pit = msg.find("params");
  if (pit == msg.end() || !pit->is_object()) return;
  json& params = *pit;
  if (method == "session/update") {
    Session* s = session_by_bridge_id(string_of(params, "sessionId"));
    if (!s || (s->loading && link_ != Link::ready)) return;  // unknown, or a replay we asked for ourselves
    if (const json* u = member(params, "update")) {
      std::string kind = string_of(*u, "sessionUpdate");
      if (kind == "available_commands_update" || kind == "current_mode_update" || kind == "session_info_update" ||
          kind == "usage_update" || kind == "config_option_update")
        s->state_updates[kind] = *u;
      if (kind == "current_mode_update" && s->settings.contains("modes") && s->settings["modes"].is_object())
        s->settings["modes"]["currentModeId"] = u->value("currentModeId", json());
      if (kind == "config_option_update" && u->contains("configOptions")) s->settings["configOptions"] = (*u)["configOptions"];
    }
    params["sessionId"] = s->public_id;
    std::string line = rpc::dump(msg);
    for (std::uint64_t c : s->attached) send(c, line);
  } else if (method == "$/cancel_request") {
    const json* rid = member(params, "requestId");
    if (!rid) return;
    for (auto& [id, r] : routed_) {
      if (r.generation == ev.generation && r.bridge_id == *rid) {
        // The agent withdrew it; the client still answers it (cancelled), and that answer is passed on.
        send_json(r.client, rpc::make_notification("$/cancel_request", {{"requestId", id}}));
        break;
      }
    }
  }
}

void Server::on_bridge_request(rpc::Event& ev) {
  json& msg = ev.message;
  Routed r;
  r.generation = ev.generation;
  r.bridge_id = msg["id"];
  r.method = string_of(msg, "method");
  r.params = msg.contains("params") && msg["params"].is_object() ? msg["params"] : json::object();
  Session* s = session_by_bridge_id(string_of(r.params, "sessionId"));
  if (!s) return answer_unroutable(r, "it names no session a tether client is attached to");
  r.session = s->public_id;
  r.params["sessionId"] = s->public_id;
  if (!s->active()) return answer_unroutable(r, "no tether client is attached to the session");
  if (r.method == "session/request_permission" && s->busy && s->turn_client == 0)
    return answer_unroutable(r, "the turn is being cancelled");
  route(std::move(r));
}

bool Server::can_answer(std::uint64_t id, const std::string& method) {
  const Client* c = client(id);
  if (!c) return false;
  // ACP §4: never call a method the client did not advertise.
  if (method == "fs/read_text_file") return c->fs_read;
  if (method == "fs/write_text_file") return c->fs_write;
  return true;
}

std::uint64_t Server::answerer(const Session& s, const std::string& method) {
  // The person who sent the prompt is the one who expects its questions ...
  if (s.busy && s.turn_client != 0 && s.has(s.turn_client) && can_answer(s.turn_client, method)) return s.turn_client;
  // ... else the last client to attach wins.
  for (auto it = s.attached.rbegin(); it != s.attached.rend(); ++it)
    if (can_answer(*it, method)) return *it;
  return 0;
}

void Server::route(Routed r) {
  Session* s = session(r.session);
  if (!s || !s->active()) return answer_unroutable(r, "no tether client is attached to the session");
  r.client = answerer(*s, r.method);
  if (!r.client) {
    if (r.method == "fs/read_text_file" || r.method == "fs/write_text_file") {
      bridge_.respond_error(r.generation, r.bridge_id, rpc::kMethodNotFound,
                            "Method not found: " + r.method + " (no attached tether client serves files)");
      return;
    }
    return answer_unroutable(r, "no tether client is attached to the session");
  }
  std::int64_t id = ++next_routed_;
  std::string line = rpc::dump(rpc::make_request(id, r.method, r.params));
  std::uint64_t to = r.client;
  // The turn's sender waits on someone else's answer: it hears so once per turn, for the first
  // question it is not asked (one line, not one per file an agent reads through another client).
  std::uint64_t sender = s->busy && !s->told_elsewhere ? s->turn_client : 0;
  json note = rpc::make_notification(protocol::kAskedElsewhere, {{"sessionId", r.session}, {"method", r.method}});
  routed_.emplace(id, std::move(r));
  if (sender && sender != to) {
    s->told_elsewhere = true;
    send_json(sender, note);
  }
  send(to, line);  // a failed send is a dead client: drop_client() hands the request on
}

void Server::answer_unroutable(const Routed& r, std::string_view why) {
  if (r.method == "session/request_permission") {
    bridge_.respond(r.generation, r.bridge_id, acp::permission_result(std::nullopt));
  } else {
    bridge_.respond_error(r.generation, r.bridge_id, rpc::kInternalError,
                          "tether serve cannot answer " + r.method + ": " + std::string(why));
  }
}

}  // namespace tether::serve
