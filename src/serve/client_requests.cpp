// What clients send: the server's own requests, the routing of session requests to the bridge,
// and each session's turn queue (one prompt at a bridge at a time, in arrival order).
#include "serve/server_core.h"

#include <unistd.h>

#include "acp/permission.h"

namespace tether::serve {

using base::Clock;
using rpc::member;
using rpc::string_of;

void Server::on_client_line(Client& c, std::string_view line) {
  auto msg = rpc::parse_line(line);
  const std::uint64_t id = c.id;
  if (!msg) {
    reply_error(id, nullptr, rpc::kParseError, "Parse error: the line is not JSON");
    return;
  }
  switch (rpc::classify(*msg).kind) {
    case rpc::MessageKind::request: on_client_request(id, *msg); break;
    case rpc::MessageKind::notification: on_client_notification(id, *msg); break;
    case rpc::MessageKind::response: on_client_response(id, *msg); break;
    case rpc::MessageKind::invalid:
      reply_error(id, msg->is_object() && msg->contains("id") ? (*msg)["id"] : json(nullptr), rpc::kInvalidRequest,
                  "Invalid Request: not a JSON-RPC 2.0 message");
      break;
  }
}

// Every request is answered exactly once: here, by the bridge's answer (reply_to), or when it is
// replayed after the bridge is back (deferred_).
void Server::on_client_request(std::uint64_t c, json& msg) {
  const json id = msg["id"];
  const std::string method = string_of(msg, "method");
  json params = msg.contains("params") ? msg["params"] : json::object();
  if (!params.is_object()) params = json::object();
  if (on_server_request(c, id, method, params)) return;

  if (method == "session/load") {
    // Attaching to a session the server knows needs nothing from the bridge (no replay).
    if (Session* known = session(string_of(params, "sessionId"))) {
      if (known->load_call) {  // another client's load of it is under way: its outcome is ours
        known->load_waiters.emplace_back(c, id);
        return;
      }
      attach(*known, c);
      return reply(c, id, known->settings);
    }
  }
  // Everything else needs the bridge: wait while it (re)starts; fail at once when it is gone.
  if (link_ == Link::gone && !(method == "initialize" && ever_ready_)) {
    return reply_tether_error(c, id, gone_error());
  }
  if (link_ != Link::ready && !(method == "initialize" && ever_ready_)) {
    if (deferred_.size() >= kMaxDeferred)
      return reply_tether_error(c, id, acp::error_object("bridge_exited", "the bridge is restarting and too many requests wait for it"));
    deferred_.push_back({c, std::move(msg)});
    return;
  }

  if (method == "initialize") return answer_initialize(c, id, params);
  if (method == "session/new") {
    Call call;
    call.kind = Call::Kind::new_session;
    call.params = params;
    return forward(c, id, method, std::move(params), std::move(call));
  }
  if (method == "session/load") {
    // The id first: an argument list may move `params` into the call before it reads the id.
    std::string sid = string_of(params, "sessionId");
    return load_at_bridge(c, id, sid, std::move(params));
  }
  on_session_request(c, id, method, std::move(params));
}

// The requests the server answers itself, whatever the bridge's state: true when it was one.
bool Server::on_server_request(std::uint64_t c, const json& id, const std::string& method, const json& params) {
  if (method == "$/ping") {
    reply(c, id, json::object());
  } else if (method == protocol::kStatus) {
    reply(c, id, status_json());
  } else if (method == protocol::kShutdown) {
    begin_shutdown(c, id);
  } else if (method == protocol::kRestart) {
    if (!ever_ready_) {
      reply_error(c, id, rpc::kInternalError, "the server is still starting its bridge");
      return true;
    }
    log("restarting the bridge (asked by client " + std::to_string(c) + ")");
    restart_waiters_.emplace_back(c, id);
    // A give-up the bridge reported before this restart took effect must not fail its waiters:
    // only a failure of a generation started after it does.
    restart_from_gen_ = bridge_.status().generation;
    if (link_ == Link::gone) link_ = Link::down;
    bridge_.restart();
  } else if (method == "authenticate") {
    reply(c, id, json::object());
  } else if (method == protocol::kDetach) {
    Session* s = session(string_of(params, "sessionId"));
    if (!s || !s->has(c)) {
      reply_error(c, id, rpc::kInvalidParams, "Not attached to that session");
      return true;
    }
    std::string sid = s->public_id;
    leave_session(*s, c, "the client that was asked left the session");
    forget_session_if_unused(sid);
    reply(c, id, json::object());
  } else {
    return false;
  }
  return true;
}

void Server::answer_initialize(std::uint64_t c, const json& id, const json& params) {
  json result = init_result_.is_object() ? init_result_ : json::object();
  result["protocolVersion"] = acp::kProtocolVersion;
  json& caps = result["agentCapabilities"];
  if (!caps.is_object()) caps = json::object();
  // The server can always attach to a session it knows (session/load without a replay); it does
  // not offer what it does not route (listing, resuming, closing or deleting sessions).
  caps["loadSession"] = true;
  caps.erase("sessionCapabilities");
  result["authMethods"] = json::array();
  json& meta = result["_meta"];
  if (!meta.is_object()) meta = json::object();
  meta[protocol::kMetaKey] = protocol::ready_meta(main_session_, link_gen_);
  if (Client* cl = client(c)) {
    const json* cc = member(params, "clientCapabilities");
    const json* fs = cc ? member(*cc, "fs") : nullptr;
    auto has = [&](const char* k) { const json* v = fs ? member(*fs, k) : nullptr; return v && v->is_boolean() && v->get<bool>(); };
    cl->fs_read = has("readTextFile");
    cl->fs_write = has("writeTextFile");
  }
  reply(c, id, std::move(result));
}

// session/load of a session the server does not know, which the agent may have kept: loaded at
// the bridge; the replay goes to this client.
void Server::load_at_bridge(std::uint64_t c, const json& id, const std::string& sid, json params) {
  if (!bridge_loads_) return reply_error(c, id, rpc::kInvalidParams, "Unknown session: " + sid);
  Session fresh;
  fresh.public_id = fresh.bridge_id = sid;
  fresh.cwd = string_of(params, "cwd");
  if (const json* m = member(params, "mcpServers")) fresh.mcp_servers = *m;
  fresh.attached.push_back(c);
  fresh.loading = true;
  Session& loading = sessions_.emplace(sid, std::move(fresh)).first->second;
  by_bridge_id_[sid] = sid;
  Call call;
  call.kind = Call::Kind::load_session;
  call.session = sid;
  call.client = c;
  call.client_id = id;
  loading.load_call = send_call("session/load", std::move(params), std::move(call));
}

// The other session/* requests: those of a session the sender is attached to go to the bridge
// (a prompt through the session's queue).
void Server::on_session_request(std::uint64_t c, const json& id, const std::string& method, json params) {
  const std::string sid = string_of(params, "sessionId");
  if (method == "session/list" || method == "session/resume" || method == "session/close" ||
      method == "session/delete")
    return reply_error(c, id, rpc::kMethodNotFound, "Method not found: " + method + " (not offered by tether serve)");
  if (method.rfind("session/", 0) != 0 || sid.empty())
    return reply_error(c, id, rpc::kMethodNotFound, "Method not found: " + method);
  Session* s = session(sid);
  if (!s) return reply_error(c, id, rpc::kInvalidParams, "Unknown session: " + sid);
  if (!s->has(c))
    return reply_error(c, id, rpc::kInvalidParams, "Not attached to session " + sid + " (session/load it first)");
  if (method == "session/prompt") {
    s->queue.push_back({c, id, std::move(params)});
    return pump(*s);
  }
  params["sessionId"] = s->bridge_id;
  forward(c, id, method, std::move(params), Call{});
}

void Server::forward(std::uint64_t c, const json& id, const std::string& method, json params, Call call) {
  call.client = c;
  call.client_id = id;
  send_call(method, std::move(params), std::move(call));
}

CallKey Server::send_call(const std::string& method, json params, Call call) {
  call.generation = link_gen_;
  CallKey key;
  // Only to the generation the server set up: a newer one gets nothing before its initialize.
  key.id = bridge_.call_queued_to(link_gen_, method, std::move(params), &key.generation);
  calls_[key] = std::move(call);
  return key;
}

void Server::attach(Session& s, std::uint64_t c) {
  s.detach(c);
  s.attached.push_back(c);  // the newest attached client is the active one
  // What a new client would have learned from the session's updates so far.
  for (auto& [kind, update] : s.state_updates)
    send_json(c, rpc::make_notification("session/update", {{"sessionId", s.public_id}, {"update", update}}));
}

void Server::pump(Session& s) {
  if (s.busy || s.queue.empty()) return;
  if (link_ == Link::gone) {
    while (!s.queue.empty()) {
      QueuedPrompt q = std::move(s.queue.front());
      s.queue.pop_front();
      reply_tether_error(q.client, q.id, gone_error());
    }
    return;
  }
  if (link_ != Link::ready) return;  // sent once the bridge is back
  QueuedPrompt q = std::move(s.queue.front());
  s.queue.pop_front();
  // The other attached clients see the prompt as the user's message, then the answer stream.
  if (const json* blocks = member(q.params, "prompt"); blocks && blocks->is_array()) {
    std::vector<std::string> lines;
    for (const json& b : *blocks)
      lines.push_back(rpc::dump(rpc::make_notification(
          "session/update",
          {{"sessionId", s.public_id}, {"update", {{"sessionUpdate", "user_message_chunk"}, {"content", b}}}})));
    for (std::uint64_t other : s.attached)
      if (other != q.client)
        for (auto& l : lines) send(other, l);
  }
  // The sender learns where its turn begins: what it saw of the session before this was another
  // client's turn.
  send_json(q.client, rpc::make_notification(protocol::kTurnStarted, {{"sessionId", s.public_id}}));
  q.params["sessionId"] = s.bridge_id;
  Call call;
  call.kind = Call::Kind::prompt;
  call.client = q.client;
  call.client_id = q.id;
  call.session = s.public_id;
  s.busy = true;
  s.told_elsewhere = false;
  s.turn_client = q.client;
  s.orphan_until = Deadline::never();
  s.turn_call = send_call("session/prompt", std::move(q.params), std::move(call));
}

void Server::cancel_turn(Session& s, std::uint64_t by) {
  // Prompts of this client still waiting for the bridge to come back end here, cancelled ...
  for (auto q = deferred_.begin(); q != deferred_.end();) {
    const json* p = member(q->message, "params");
    if (q->client == by && string_of(q->message, "method") == "session/prompt" && p &&
        string_of(*p, "sessionId") == s.public_id) {
      reply(by, q->message["id"], {{"stopReason", "cancelled"}});
      q = deferred_.erase(q);
    } else {
      ++q;
    }
  }
  // ... and so do those waiting their turn.
  for (auto q = s.queue.begin(); q != s.queue.end();) {
    if (q->client == by) {
      reply(by, q->id, {{"stopReason", "cancelled"}});
      q = s.queue.erase(q);
    } else {
      ++q;
    }
  }
  if (!s.busy || s.turn_client != by) return;  // another client's turn is not ours to cancel
  bridge_.notify("session/cancel", {{"sessionId", s.bridge_id}}, link_gen_);
  withdraw_permissions(s.public_id, by);
}

void Server::withdraw_permissions(const std::string& session, std::uint64_t except) {
  // ACP: a cancelled turn's pending permission requests are answered `cancelled`. The client that
  // cancelled answers those it holds itself; the others are answered here and withdrawn.
  for (auto it = routed_.begin(); it != routed_.end();) {
    Routed& r = it->second;
    if (r.session != session || r.method != "session/request_permission" || r.client == except) {
      ++it;
      continue;
    }
    bridge_.respond(r.generation, r.bridge_id, acp::permission_result(std::nullopt));
    send_json(r.client, rpc::make_notification("$/cancel_request", {{"requestId", it->first}}));
    it = routed_.erase(it);
  }
}

void Server::on_client_notification(std::uint64_t c, const json& msg) {
  const std::string method = string_of(msg, "method");
  const json* params = member(msg, "params");
  if (method == "session/cancel" && params) {
    if (Session* s = session(string_of(*params, "sessionId")); s && s->has(c)) cancel_turn(*s, c);
  }
  // Anything else ($/cancel_request of a request of ours, extensions) needs nothing from us.
}

void Server::on_client_response(std::uint64_t c, const json& msg) {
  auto idit = msg.find("id");
  if (idit == msg.end()) return;
  auto rid = rpc::our_id(*idit);
  if (!rid) return;
  auto it = routed_.find(*rid);
  if (it == routed_.end() || it->second.client != c) return;  // stale, or not this client's to answer
  Routed r = std::move(it->second);
  routed_.erase(it);
  if (const json* err = member(msg, "error")) {
    int code = err->is_object() && err->contains("code") && (*err)["code"].is_number_integer() ? (*err)["code"].get<int>()
                                                                                             : rpc::kInternalError;
    bridge_.respond_error(r.generation, r.bridge_id, code, string_of(*err, "message"));
  } else {
    bridge_.respond(r.generation, r.bridge_id, msg.contains("result") ? msg["result"] : json(nullptr));
  }
}

json Server::status_json() {
  auto st = bridge_.status();
  json sessions = json::array();
  for (auto& [id, s] : sessions_)
    sessions.push_back({{"sessionId", id},
                        {"main", s.main},
                        {"attached", s.attached.size()},
                        {"busy", s.busy},
                        {"queued", s.queue.size()}});
  json j = {{"state", supervisor::to_string(st.state)},
            {"link", link_ == Link::ready ? "ready" : link_ == Link::gone ? "gone" : link_ == Link::down ? "down" : "setting_up"},
            {"generation", st.generation},
            {"pid", st.pid},
            {"restartsInWindow", st.restarts_in_window},
            {"restartsTotal", st.restarts_total},
            {"uptimeMs", std::chrono::duration_cast<std::chrono::milliseconds>(st.uptime).count()},
            {"clients", clients_.size()},
            {"sessions", std::move(sessions)},
            {"mainSessionId", main_session_},
            {"bridge", o_.bridge},
            {"socket", where_.path},
            {"serverPid", ::getpid()}};
  if (st.last_exit) j["lastExit"] = st.last_exit->to_json();
  if (!init_result_.is_null()) j["agentInfo"] = init_result_.value("agentInfo", json::object());
  return j;
}


}  // namespace tether::serve
