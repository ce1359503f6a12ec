#include "acp/session.h"

#include <errno.h>
#include <poll.h>

#include <deque>

#include "acp/fs.h"
#include "acp/server_wire.h"
#include "rpc/message.h"
#include "supervisor/bridge.h"

namespace tether::acp {
namespace {

using base::Clock;
using base::Deadline;
using nlohmann::json;
using rpc::Event;
using rpc::Reply;

// Updates for a session id we do not know yet (they may precede session/new's answer).
constexpr std::size_t kMaxBufferedUpdates = 256;

using rpc::member;
using rpc::string_of;

// "error -32603: Internal error" from a JSON-RPC error object.
// A tether server's own failure (rpc::kTetherServerError), not an agent's error passed through.
bool is_server_error(const json& err) {
  const json* code = member(err, "code");
  return code && code->is_number_integer() && code->get<int>() == rpc::kTetherServerError;
}

std::string error_code(const json& err) { return string_of(err, "code"); }

}  // namespace

int exit_status(const TurnEvent& t) {
  if (t.cancelled == CancelCause::timeout) return kExitTimeout;
  if (t.cancelled == CancelCause::interrupt) return kExitInterrupted;
  if (t.kind == TurnEvent::Kind::completed) return exit_status_for_stop_reason(t.stop_reason);
  return exit_status_for_error(t.error, t.during_setup);
}

struct TurnState {
  enum class Phase { waiting, prompting, cancelling, done };
  json content;
  Phase phase = Phase::waiting;
  int retries_left = 0;
  int retries_total = 0;
  Deadline deadline = Deadline::never();   // the turn's timeout
  Deadline cancel_by = Deadline::never();  // cancelling: escalate after this
  CancelCause cancel_cause = CancelCause::none;
  std::int64_t call_id = 0;   // session/prompt's id
  std::uint64_t call_gen = 0; // generation it was sent to (0: none was running)
  bool abandoned = false;     // its Turn is gone: events are dropped
  std::vector<TurnEvent> out;
  // Through a tether server (via_server) a prompt waits in the server's queue while other
  // clients' turns in the session run; the server says `_tether/turn_started` when it sends ours
  // on. What comes for the session before that is another client's.
  bool server_started = false;
};

// Everything behind AcpSession and Turn. Thread-bound (see session.h).
class SessionCore {
 public:
  SessionCore(supervisor::Bridge& bridge, ClientOptions options)
      : bridge_(bridge), opt_(std::move(options)), fs_(opt_.cwd), settings_(opt_.settings) {}

  ~SessionCore() {
    // Nothing may block here: tell the agent, answer what it waits for, and let the bridge's owner
    // stop it.
    if (active_ && (active_->phase == TurnState::Phase::prompting)) send_cancel();
    for (auto& p : pending_perms_) bridge_.respond(p.gen, p.id, permission_result(std::nullopt));
  }

  int fd() const { return bridge_.events()->fd(); }
  const SessionState& state() const { return state_; }

  std::optional<TurnEvent> open(Deadline deadline, int interrupt_fd, const std::function<void()>& on_wait = {}) {
    in_open_ = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{in_open_};
    if (link_ == Link::idle || link_ == Link::failed) begin_handshake();
    else if (link_ == Link::closed) send_new_session();
    for (;;) {
      pump();
      if (link_ == Link::ready) return std::nullopt;
      if (link_ == Link::failed) return failed_event(link_error_, true);
      if (deadline.expired()) return failed_event(error_object("timeout", "the agent did not complete the ACP handshake in time"), true);
      Deadline until = Deadline::earliest(deadline, next_deadline());
      if (on_wait) until = Deadline::earliest(until, Deadline::after(std::chrono::seconds(1)));
      if (!wait_readable(until, interrupt_fd)) {
        TurnEvent e = failed_event(error_object("cancelled", "interrupted while connecting to the agent"), true);
        e.cancelled = CancelCause::interrupt;
        return e;
      }
      if (on_wait) on_wait();
    }
  }

  // See AcpSession::start_new_session.
  void start_new_session() {
    if (active_ && active_->phase == TurnState::Phase::prompting) cancel(*active_, CancelCause::caller_gone);
    withdraw_idle_permissions(0);  // the old session's questions have nobody left to ask
    // A tether server would go on treating us as attached to the old session (and asking us its
    // questions): say we leave it. The answer needs no one.
    if (opt_.via_server && link_ == Link::ready && !state_.session_id.empty())
      bridge_.call_queued(server_wire::kDetach, {{"sessionId", state_.session_id}}, nullptr);
    // The old session is closed at the agent, which may hold a process per open session (Claude's
    // is 200+ MB). Nobody waits for the answer: it is dropped as one we do not wait for.
    if (link_ == Link::ready) send_close();
    // The old session's state goes with it; the agent's and the connection's stay.
    const std::string old_id = state_.session_id;
    state_.on_main = false;
    other_turn_ = false;
    state_.session_id.clear();
    state_.commands.clear();
    state_.commands_announced = false;
    state_.mode_id.clear();
    state_.modes = nullptr;
    state_.config_options = nullptr;
    state_.title.clear();
    state_.usage.reset();
    buffered_.clear();
    context_lost_reason_.clear();
    ready_notice_.clear();
    pending_settings_.clear();
    switch (link_) {
      case Link::ready: send_new_session(); break;
      case Link::configuring:
        // The old session's settings are still being applied: the rest is not wanted, and the
        // session itself is closed (its id was cleared above, so by the one kept here), or left
        // at a tether server.
        bridge_.cancel(link_call_gen_, link_call_);
        if (opt_.via_server) bridge_.call_queued(server_wire::kDetach, {{"sessionId", old_id}}, nullptr);
        close_by_id(old_id);
        send_new_session();
        break;
      case Link::loading:
      case Link::resuming:
      case Link::attaching:
        // A restart was bringing the old session back (or we were joining the server's main
        // one): it is no longer wanted. The request is on the wire already: the agent may reopen
        // it, so a close follows it (an agent that handles requests in order closes it again);
        // a tether server, which attaches us, hears that we leave it.
        bridge_.cancel(link_call_gen_, link_call_);
        if (opt_.via_server)
          bridge_.call_queued(server_wire::kDetach, {{"sessionId", link_ == Link::attaching ? attach_id_ : old_id}}, nullptr);
        if (link_ != Link::attaching) close_by_id(old_id);
        send_new_session();
        break;
      case Link::closed: send_new_session(); break;
      case Link::idle:
      case Link::failed: begin_handshake(); break;
      case Link::authenticating:
        // authenticate is under way for the old session's load or resume: what follows it is a
        // new session instead.
        if (redo_.phase != Link::creating) redo_ = {Link::creating, "session/new", new_session_params(opt_.cwd, json::array())};
        break;
      case Link::waiting_bridge:
      case Link::initializing:
      case Link::creating:
        break;  // the handshake under way ends in session/new: the session id is empty
    }
  }

  std::shared_ptr<TurnState> start_turn(json content, base::Duration timeout) {
    auto t = std::make_shared<TurnState>();
    t->content = std::move(content);
    t->retries_left = t->retries_total = std::max(0, opt_.retries);
    if (timeout > base::Duration::zero()) t->deadline = Deadline::after(timeout);
    queue_.push_back(t);
    pump();  // handles what came in between turns, then sends the prompt if the session is ready
    return t;
  }

  std::vector<TurnEvent> poll_session() {
    pump();
    return std::exchange(notices_, {});
  }

  std::vector<TurnEvent> take_notices() { return std::exchange(notices_, {}); }

  std::vector<TurnEvent> poll_turn(TurnState& t) {
    pump();
    return std::exchange(t.out, {});
  }

  Deadline next_deadline() const {
    Deadline d = Deadline::never();
    if (link_call_) d = Deadline::earliest(d, link_deadline_);
    if (active_) {
      if (active_->phase == TurnState::Phase::cancelling) d = Deadline::earliest(d, active_->cancel_by);
      else if (active_->phase != TurnState::Phase::done) d = Deadline::earliest(d, active_->deadline);
    }
    for (const auto& t : queue_) d = Deadline::earliest(d, t->deadline);
    return d;
  }

  // For AcpSession::poll()'s caller: also now while events a turn's pump set aside wait (the
  // event fd does not announce those).
  Deadline session_deadline() const {
    return notices_.empty() ? next_deadline() : Deadline::at(base::TimePoint{});
  }

  // Waits until the event queue or `interrupt_fd` is readable or `deadline` passes. False when
  // interrupt_fd is readable.
  bool wait_readable(Deadline deadline, int interrupt_fd) {
    pollfd p[2] = {{fd(), POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
    nfds_t n = interrupt_fd >= 0 ? 2 : 1;
    for (;;) {
      int r = ::poll(p, n, deadline.poll_timeout_ms());
      if (r < 0 && errno == EINTR) continue;
      return !(n == 2 && (p[1].revents & POLLIN));
    }
  }

  void cancel(TurnState& t, CancelCause cause) {
    if (t.phase == TurnState::Phase::done) return;
    if (t.cancel_cause == CancelCause::none) t.cancel_cause = cause;
    switch (t.phase) {
      case TurnState::Phase::waiting:
        // Nothing reached the agent for this turn yet (or its bridge died): end it now.
        finish(t, failed_event(cancel_error(t.cancel_cause), false));
        for (auto it = queue_.begin(); it != queue_.end(); ++it)
          if (it->get() == &t) {
            queue_.erase(it);
            break;
          }
        advance();
        break;
      case TurnState::Phase::prompting:
        send_cancel();
        answer_pending_cancelled(&t);
        t.phase = TurnState::Phase::cancelling;
        t.cancel_by = Deadline::after(opt_.cancel_grace);
        break;
      case TurnState::Phase::cancelling:
      case TurnState::Phase::done:
        break;
    }
  }

  void abandon(const std::shared_ptr<TurnState>& t) {
    if (t->phase == TurnState::Phase::done) return;
    t->abandoned = true;
    t->out.clear();
    cancel(*t, CancelCause::caller_gone);
  }

  // `t`: only a request of that turn; null: any.
  bool answer_permission(const TurnState* t, std::uint64_t token, const std::optional<std::string>& option_id) {
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

  std::uint64_t request(std::string_view method, json params) {
    ExtensionCall c;
    c.token = ++next_ext_token_;
    c.method = std::string(method);
    if (method == "session/set_config_option" || method == "session/set_mode") c.params = params;
    c.id = bridge_.call_queued(method, std::move(params), &c.gen);
    const std::uint64_t token = c.token;
    ext_calls_.push_back(std::move(c));
    return token;
  }

  bool close(Deadline deadline) {
    if (active_ && active_->phase != TurnState::Phase::done) cancel(*active_, CancelCause::caller_gone);
    if (link_ != Link::ready || !send_close()) {
      state_.session_id.clear();
      return false;
    }
    state_.session_id.clear();
    link_ = Link::closed;
    for (;;) {
      pump();
      if (!close_call_) return close_answered_;
      if (deadline.expired() || link_ != Link::closed) {
        bridge_.cancel(close_gen_, close_call_);
        close_call_ = 0;
        return false;
      }
      wait_readable(Deadline::earliest(deadline, next_deadline()), -1);
    }
  }

  std::variant<std::uint64_t, json> change_settings(const SessionSettings& change) {
    if (link_ != Link::ready) return error_object("usage", "the session is not ready yet");
    auto plan = plan_settings(change, state_.session_id, state_.modes, state_.config_options);
    if (auto* err = std::get_if<json>(&plan)) return *err;
    // Kept once the agent accepts it (remember_setting), so that a re-established session gets
    // it again; a refused one is not replayed.
    std::uint64_t token = 0;
    for (auto& r : std::get<std::vector<SettingRequest>>(plan)) token = request(r.method, std::move(r.params));
    return token;
  }

 private:
  // attaching: session/load of a tether server's main session (via_server). configuring: the
  // session exists and the requested settings are being applied. closed: close() ended it.
  enum class Link {
    idle, waiting_bridge, initializing, authenticating, creating, loading, resuming, attaching, configuring, ready,
    closed, failed,
  };

  // A setup request, kept so that it can be sent again after authenticate.
  struct SetupStep {
    Link phase = Link::idle;
    std::string method;
    json params;
  };

  struct PendingPermission {
    std::uint64_t token;
    std::uint64_t gen;
    json id;
    TurnState* turn;  // identity only; cleared from the list before the turn is released. Null:
                      // asked while no turn of ours was in flight (via_server), told by poll()
    std::vector<PermissionOption> options;
  };

  // A request() whose answer is awaited.
  struct ExtensionCall {
    std::uint64_t token = 0;
    std::uint64_t gen = 0;
    std::int64_t id = 0;
    std::string method;
    json params;  // a setting's request: what the session state becomes when it succeeds
  };

  // --- the event pump ---------------------------------------------------------------------------

  void pump() {
    // Always drain, even when size() says empty: drain() also clears the queue's fd, which a
    // push racing with the previous drain may have left readable (skipping it would spin).
    auto events = bridge_.events()->drain();
    if (active_ && !active_->abandoned) active_->out.reserve(active_->out.size() + events.size());
    for (auto& ev : events) handle(ev);
    check_timers();
    advance();
  }

  void handle(Event& ev) {
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
  void on_output(const Event& ev) {
    ++state_.stray_lines;
    TurnEvent e;
    e.kind = TurnEvent::Kind::output;
    e.text = string_of(ev.message, "text");
    TurnState* t = active_.get();
    if (t && !t->abandoned && t->phase != TurnState::Phase::done) t->out.push_back(std::move(e));
    else notices_.push_back(std::move(e));
  }

  void on_notification(Event& ev) {
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
  static std::string server_restart_text(const json& p) {
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

  void on_update(std::uint64_t gen, json& params) {
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
    apply_state(*u);
    TurnState* t = active_.get();
    bool in_turn = t && gen == t->call_gen && (!opt_.via_server || t->server_started) &&
                   (t->phase == TurnState::Phase::prompting || t->phase == TurnState::Phase::cancelling);
    if (!in_turn && opt_.via_server && link_ == Link::ready) {
      // Another client's turn in our session: the server sends its prompt first, as user
      // chunks. Until one comes, what arrives between our turns is our last turn's late output.
      if (u->kind == Update::Kind::user_message) other_turn_ = true;
      if (other_turn_ && (u->kind == Update::Kind::user_message || is_turn_content(u->kind))) {
        TurnEvent& e = outside_event();
        e.kind = TurnEvent::Kind::update;
        e.update = std::move(*u);
        return;
      }
    }
    if (in_turn) {
      if (t->abandoned) return;
      // Built in place: a flood passes here a million times.
      TurnEvent& e = t->out.emplace_back();
      e.kind = TurnEvent::Kind::update;
      e.update = std::move(*u);
      return;
    }
    // Outside a turn only session state changes; a replayed history (session/load) or a chunk
    // that came after its turn's answer is not shown.
    if (link_ != Link::loading && is_turn_content(u->kind)) ++state_.late_updates;
  }

  static bool is_turn_content(Update::Kind k) {
    return k == Update::Kind::agent_message || k == Update::Kind::agent_thought ||
           k == Update::Kind::tool_call || k == Update::Kind::tool_call_update || k == Update::Kind::plan;
  }

  void apply_state(const Update& u) {
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

  void on_cancel_request(std::uint64_t gen, const json& params) {
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

  void on_request(Event& ev) {
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
    } else if (opt_.allow_fs && (method == "fs/read_text_file" || method == "fs/write_text_file")) {
      auto r = method == "fs/read_text_file" ? fs_.read_text_file(*params) : fs_.write_text_file(*params);
      if (auto* err = std::get_if<FsError>(&r)) bridge_.respond_error(ev.generation, id, err->code, err->message);
      else bridge_.respond(ev.generation, id, std::move(std::get<json>(r)));
    } else {
      // Not advertised, not implemented: the one answer the spec allows.
      bridge_.respond_error(ev.generation, id, rpc::kMethodNotFound, "Method not found: " + method);
    }
  }

  void on_permission(std::uint64_t gen, const json& id, const json& params) {
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

  void answer_pending_cancelled(const TurnState* t) {
    for (auto it = pending_perms_.begin(); it != pending_perms_.end();) {
      if (t && it->turn != t) {
        ++it;
        continue;
      }
      bridge_.respond(it->gen, it->id, permission_result(std::nullopt));
      it = pending_perms_.erase(it);
    }
  }

  void on_response(Event& ev) {
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
      on_prompt_reply(*t, ev.reply);
    }
    // Anything else answers a request we gave up on (deadline, escalation): nothing to do.
  }

  void on_status(const Event& ev) {
    std::string st = string_of(ev.message, "state");
    if (st == "ready") {
      if (link_ == Link::waiting_bridge && ev.generation > dead_gen_) begin_handshake();
    } else if (st == "exited") {
      if (link_ == Link::ready && ev.generation == state_.generation) lose_link(ev.generation);
      // Requests of a dead generation can no longer be answered.
      withdraw_idle_permissions(ev.generation);
    } else if (st == "failed") {
      json err = ev.message.contains("error") ? ev.message["error"] : error_object("restart_limit", string_of(ev.message, "message"));
      if (link_ == Link::waiting_bridge || link_ == Link::ready) link_fail(err);
    }
  }

  void lose_link(std::uint64_t gen) {
    link_ = Link::waiting_bridge;
    dead_gen_ = gen;
  }

  // Where what belongs to no turn of ours goes (another client's turn, a question routed to us):
  // the session's notices; or, while our own prompt waits in the server's queue, our turn's
  // events, marked other_client, so that a front-end reading the turn sees everything in wire
  // order (theirs, then ours from _tether/turn_started on).
  TurnEvent& outside_event() {
    TurnState* t = active_.get();
    bool queued = opt_.via_server && t && !t->abandoned && !t->server_started &&
                  (t->phase == TurnState::Phase::prompting || t->phase == TurnState::Phase::cancelling);
    TurnEvent& e = queued ? t->out.emplace_back() : notices_.emplace_back();
    e.other_client = queued;
    return e;
  }

  // Ends the pending requests that came while no turn of ours was in flight (of generation `gen`;
  // 0: all): answered `cancelled` (a dead generation drops it) and told as withdrawn.
  // Through a server a connection's end also ends its turn's questions (`gen` != 0): the turn is
  // sent again on the next connection, and an answer to the old one would go nowhere.
  void withdraw_idle_permissions(std::uint64_t gen) {
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

  // --- the handshake ----------------------------------------------------------------------------
  // The order of setup requests, one at a time (ACP.md §10): initialize; then session/new, or to
  // bring a session back session/resume, else session/load (a tether server: its attach); on
  // auth_required, authenticate and the same request again, once; then the settings, one request
  // each; then ready. What each request carries and what each answer means is acp/setup.h's.

  void begin_handshake() {
    send_setup(Link::initializing, "initialize", initialize_params(opt_.client_name, opt_.client_version, opt_.allow_fs));
  }

  void send_setup(Link phase, const char* method, json params) {
    std::uint64_t gen = 0;
    link_ = phase;
    link_method_ = method;
    link_deadline_ = Deadline::after(opt_.setup_timeout);
    if (phase == Link::creating || phase == Link::loading || phase == Link::resuming || phase == Link::attaching)
      last_step_ = {phase, method, params};
    link_call_ = bridge_.call_queued(method, std::move(params), &gen);
    link_call_gen_ = gen;
  }

  void send_new_session() { send_setup(Link::creating, "session/new", new_session_params(opt_.cwd, json::array())); }

  // Brings back the session we had, on a fresh connection: resume (no replay) when the agent
  // offers it, else load, else a new session and a notice that the context is lost.
  void reopen_session() {
    forget_current_settings();
    if (state_.can_resume) {
      send_setup(Link::resuming, "session/resume", reopen_params(state_.session_id, opt_.cwd, json::array()));
    } else if (state_.load_session) {
      send_setup(Link::loading, "session/load", reopen_params(state_.session_id, opt_.cwd, json::array()));
    } else {
      context_lost_reason_ = "the agent cannot load or resume sessions (it advertises neither)";
      send_new_session();
    }
  }

  // Before a session is brought back on a new connection: what it offered is kept, not what was in
  // effect. A new process may have reopened it in its defaults, and an answer that does not say
  // otherwise must not let a setting be skipped as already in effect.
  void forget_current_settings() {
    if (state_.modes.is_object()) state_.modes.erase("currentModeId");
    if (state_.config_options.is_array())
      for (auto& o : state_.config_options)
        if (o.is_object()) o.erase("currentValue");
    state_.mode_id.clear();
  }

  // session/close for the session we have, when the agent offers it; never through a tether
  // server (it closes what its clients leave). True when it was sent.
  bool send_close() {
    if (opt_.via_server || !state_.can_close || state_.session_id.empty()) return false;
    close_answered_ = false;
    close_call_ = bridge_.call_queued("session/close", {{"sessionId", state_.session_id}}, &close_gen_);
    ++state_.sessions_closed;
    return true;
  }

  // session/close for a session we no longer track (its answer goes to no one).
  void close_by_id(const std::string& id) {
    if (opt_.via_server || !state_.can_close || id.empty()) return;
    bridge_.call_queued("session/close", {{"sessionId", id}}, nullptr);
    ++state_.sessions_closed;
  }

  void on_setup_reply(const Reply& r) {
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
  bool try_authenticate(const json& err) {
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

  void on_setup_error(const json& err) {
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
        // An agent that advertises resume but cannot do it: load, or a new session.
        if (state_.load_session) {
          send_setup(Link::loading, "session/load", reopen_params(state_.session_id, opt_.cwd, json::array()));
        } else {
          context_lost_reason_ = "the agent could not resume the session (" + rpc_error_text(err) + ")";
          send_new_session();
        }
        return;
      case Link::loading:
        if (!opt_.via_server && try_authenticate(err)) return;
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

  void on_setup_result(const json& r) {
    switch (link_) {
      case Link::initializing: {
        auto read = read_initialize(r);
        if (auto* err = std::get_if<json>(&read)) {
          link_fail(*err);
          return;
        }
        const AgentProfile& p = std::get<AgentProfile>(read);
        state_.protocol_version = kProtocolVersion;
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
        if (!state_.session_id.empty()) reopen_session();
        else send_new_session();
        return;
      }
      case Link::authenticating:
        send_setup(redo_.phase, redo_.method.c_str(), redo_.params);
        return;
      case Link::attaching: {
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
        return;
      }
      case Link::creating: {
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
        return;
      }
      case Link::loading:
      case Link::resuming:
        ++state_.sessions_loaded;
        ready_notice_ = opt_.via_server ? "reconnected to the tether server and re-attached to the session (session/load)"
                        : link_ == Link::resuming
                            ? "the session was restored after the bridge restarted (session/resume)"
                            : "the session was restored after the bridge restarted (session/load)";
        read_session_settings(r);
        begin_configure();
        return;
      case Link::configuring: {
        apply_setting(link_method_, setting_params_, r);
        send_next_setting();
        return;
      }
      default:
        return;
    }
  }

  // modes and configOptions of a session/new, load or resume answer (load's may be null).
  void read_session_settings(const json& r) {
    if (const json* modes = member(r, "modes"); modes && modes->is_object()) {
      state_.modes = *modes;
      state_.mode_id = string_of(*modes, "currentModeId");
    }
    if (const json* opts = member(r, "configOptions"); opts && opts->is_array()) state_.config_options = *opts;
  }

  // A setting request succeeded: the session state follows it (set_config_option answers with the
  // whole list; set_mode with nothing, and a current_mode_update may or may not follow).
  void apply_setting(const std::string& method, const json& params, const json& result) {
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
  void remember_setting(const std::string& method, const json& params) {
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

  void begin_configure() {
    auto plan = plan_settings(settings_, state_.session_id, state_.modes, state_.config_options);
    if (auto* err = std::get_if<json>(&plan)) {
      link_fail(*err);
      return;
    }
    auto& steps = std::get<std::vector<SettingRequest>>(plan);
    pending_settings_.assign(std::make_move_iterator(steps.begin()), std::make_move_iterator(steps.end()));
    send_next_setting();
  }

  void send_next_setting() {
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

  // After initialize through a tether server: it must be one, and the session is attached
  // (the main one, or ours again after a reconnect: the server knows the sessions opened through
  // it, whatever the agent can load) or created.
  void server_setup(const json& r) {
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
      send_setup(Link::attaching, "session/load", reopen_params(attach_id_, opt_.cwd, json::array()));
    } else if (!state_.session_id.empty()) {
      forget_current_settings();
      send_setup(Link::loading, "session/load", reopen_params(state_.session_id, opt_.cwd, json::array()));
    } else {
      send_new_session();
    }
  }

  void session_ready() {
    link_ = Link::ready;
    state_.generation = link_call_gen_;
    link_error_ = nullptr;
    if (!ready_notice_.empty()) notice(std::exchange(ready_notice_, {}));
  }

  void link_fail(json error) {
    link_ = Link::failed;
    link_call_ = 0;
    link_error_ = std::move(error);
    if (active_ && active_->phase == TurnState::Phase::waiting) finish(*active_, failed_event(link_error_, true));
    for (auto& t : std::exchange(queue_, {})) {
      t->phase = TurnState::Phase::done;
      if (!t->abandoned) t->out.push_back(failed_event(link_error_, true));
    }
  }

  // --- turns ------------------------------------------------------------------------------------

  void advance() {
    if (!active_) {
      if (queue_.empty()) return;
      active_ = queue_.front();
      queue_.pop_front();
    }
    TurnState& t = *active_;
    if (t.phase != TurnState::Phase::waiting) return;
    if (link_ == Link::ready) {
      send_prompt(t);
    } else if (link_ == Link::closed) {
      send_new_session();
    } else if (link_ == Link::idle || link_ == Link::failed) {
      begin_handshake();
    }
  }

  void send_prompt(TurnState& t) {
    std::uint64_t gen = 0;
    t.phase = TurnState::Phase::prompting;
    t.server_started = false;  // a retry waits in the server's queue again
    t.call_id = bridge_.call_queued("session/prompt", {{"sessionId", state_.session_id}, {"prompt", t.content}}, &gen);
    t.call_gen = gen;
    // What comes after our turn is ours until another client's prompt shows. Through a server, a
    // prompt sent while another client's turn streams leaves that turn showing until the server
    // starts ours (_tether/turn_started).
    if (!opt_.via_server) other_turn_ = false;
  }

  void send_cancel() { bridge_.notify("session/cancel", {{"sessionId", state_.session_id}}); }

  void on_prompt_reply(TurnState& t, const Reply& r) {
    bool cancelling = t.phase == TurnState::Phase::cancelling;
    if (r.status == Reply::Status::timeout || r.status == Reply::Status::cancelled) return;
    switch (r.status) {
      case Reply::Status::timeout:
      case Reply::Status::cancelled:
        return;
      case Reply::Status::result: {
        TurnEvent e;
        e.kind = TurnEvent::Kind::completed;
        e.stop_reason = string_of(r.value, "stopReason");
        if (e.stop_reason.empty()) {
          if (cancelling) e.stop_reason = "cancelled";
          else e = failed_event(error_object("protocol_error", "the agent's session/prompt result has no stopReason"), false);
        }
        finish(t, std::move(e));
        break;
      }
      case Reply::Status::error:
        if (cancelling) {
          // The spec wants stopReason cancelled, but an error after a cancel still ends the turn.
          TurnEvent e;
          e.kind = TurnEvent::Kind::completed;
          e.stop_reason = "cancelled";
          finish(t, std::move(e));
        } else if (const json* data = opt_.via_server && is_server_error(r.value) ? member(r.value, "data") : nullptr;
                   data && data->is_object() && !string_of(*data, "code").empty()) {
          // The server's own failure in tether's error object. Its bridge died mid-turn: sent
          // again, as a direct run would (the server holds it until its bridge is back).
          // Anything else (its restart budget is spent, ...) fails the turn as it is.
          if (string_of(*data, "code") == "bridge_exited" && t.retries_left > 0) {
            send_again(t, string_of(*data, "message"), "once the tether server's bridge is back");
          } else {
            finish(t, failed_event(*data, false));
          }
        } else {
          finish(t, failed_event(error_object("agent_error", "the agent failed the prompt: " + rpc_error_text(r.value),
                                              rpc_error_extra(r.value)),
                                 false));
        }
        break;
      case Reply::Status::closed: {
        if (link_ == Link::ready) lose_link(t.call_gen);
        if (cancelling) {
          finish(t, failed_event(cancel_error(t.cancel_cause), false));
        } else if (t.retries_left > 0 && error_code(r.value) != "restart_limit") {
          send_again(t, string_of(r.value, "message"), "after the restart");
          if (link_ == Link::failed) finish(t, failed_event(link_error_, true));
        } else {
          finish(t, failed_event(r.value, false));
        }
        break;
      }
    }
    // The next turn is sent by pump() once this batch of events is handled: what came after the
    // response in the same read is this turn's late output, not the next turn's.
  }

  // A turn the bridge died under goes back to waiting, to be sent again (one retry spent), with a
  // retry event that says why and when.
  void send_again(TurnState& t, const std::string& why, const char* when) {
    --t.retries_left;
    t.phase = TurnState::Phase::waiting;
    int n = t.retries_total - t.retries_left;
    if (t.abandoned) return;
    TurnEvent e;
    e.kind = TurnEvent::Kind::retry;
    e.text = why + "; sending the prompt again " + when + " (retry " + std::to_string(n) + " of " +
             std::to_string(t.retries_total) + ")";
    t.out.push_back(std::move(e));
  }

  void check_timers() {
    auto now = Clock::now();
    if (link_call_ && link_deadline_.expired(now)) {
      bridge_.cancel(link_call_gen_, link_call_);
      link_call_ = 0;
      link_fail(error_object("timeout", "the agent did not answer " + link_method_ + " within " +
                                            duration_text(opt_.setup_timeout)));
    }
    // Turns still queued behind another one time out where they wait.
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (!(*it)->deadline.expired(now)) {
        ++it;
        continue;
      }
      TurnState& q = **it;
      q.cancel_cause = CancelCause::timeout;
      q.phase = TurnState::Phase::done;
      if (!q.abandoned) {
        q.out.push_back(failed_event(cancel_error(CancelCause::timeout), false));
        q.out.back().cancelled = CancelCause::timeout;
      }
      it = queue_.erase(it);
    }
    if (!active_) return;
    TurnState& t = *active_;
    if (t.phase == TurnState::Phase::cancelling) {
      if (t.cancel_by.expired(now)) escalate(t);
    } else if (t.phase != TurnState::Phase::done && t.deadline.expired(now)) {
      cancel(t, CancelCause::timeout);
    }
  }

  // The agent ignored session/cancel: end the turn anyway and replace the process, which may still
  // be working on it.
  void escalate(TurnState& t) {
    bridge_.cancel(t.call_gen, t.call_id);
    std::string why = "the agent did not answer session/cancel within " + duration_text(opt_.cancel_grace);
    bridge_.recycle(t.call_gen, why);
    if (link_ == Link::ready) lose_link(t.call_gen);
    json err = cancel_error(t.cancel_cause);
    err["message"] = err["message"].get<std::string>() + "; " + why +
                     (opt_.via_server ? ", so tether reconnected to the tether server" : ", so the bridge was restarted");
    finish(t, failed_event(std::move(err), false));
    advance();
  }

  json cancel_error(CancelCause cause) const {
    switch (cause) {
      case CancelCause::timeout: return error_object("timeout", "the turn did not finish within the timeout");
      case CancelCause::caller_gone: return error_object("cancelled", "the turn was cancelled: its caller went away");
      default: return error_object("cancelled", "the turn was cancelled");
    }
  }

  TurnEvent failed_event(json error, bool during_setup) const {
    TurnEvent e;
    e.kind = TurnEvent::Kind::failed;
    e.error = std::move(error);
    e.during_setup = during_setup;
    return e;
  }

  void finish(TurnState& t, TurnEvent terminal) {
    answer_pending_cancelled(&t);  // every request answered exactly once, even unanswered asks
    t.phase = TurnState::Phase::done;
    terminal.cancelled = t.cancel_cause;
    if (!t.abandoned) t.out.push_back(std::move(terminal));
    if (active_.get() == &t) active_.reset();
  }

  void notice(std::string text, bool server_trouble = false) {
    TurnEvent e;
    e.kind = TurnEvent::Kind::notice;
    e.text = std::move(text);
    e.server_trouble = server_trouble;
    if (active_ && !active_->abandoned) active_->out.push_back(std::move(e));
    else notices_.push_back(std::move(e));
  }

  supervisor::Bridge& bridge_;
  const ClientOptions opt_;
  const FsRoot fs_;
  SessionState state_;

  Link link_ = Link::idle;
  std::int64_t link_call_ = 0;       // the setup request in flight (0: none)
  std::uint64_t link_call_gen_ = 0;  // its generation (0: none was running)
  std::string link_method_;
  Deadline link_deadline_ = Deadline::never();
  std::uint64_t dead_gen_ = 0;       // waiting_bridge: handshake again on a later generation
  json link_error_;                  // failed: why
  bool auth_tried_ = false;
  bool in_open_ = false;             // open() runs: a person may be asked (ask_auth)
  std::string picked_auth_;          // the method a person picked (ask_auth), used again later
  SetupStep last_step_;              // the last session/new, load, resume or attach sent
  SetupStep redo_;                   // authenticating: the step that asked for it, sent again after
  std::string setting_what_;         // configuring: the setting in flight ("mode plan"), for messages
  json setting_params_;              // ... and its params
  SessionSettings settings_;         // --mode/--model/--set, and what change_settings() added
  std::deque<SettingRequest> pending_settings_;  // configuring: the settings still to send
  std::string ready_notice_;         // told once the session is ready (restored, reattached)
  std::int64_t close_call_ = 0;      // close(): the session/close awaited (0: none)
  std::uint64_t close_gen_ = 0;
  bool close_answered_ = false;
  std::string context_lost_reason_;  // set when the next session/new replaces a lost session
  std::vector<json> buffered_;       // params of updates for a session id not known yet

  std::shared_ptr<TurnState> active_;              // the turn whose prompt is (or will be) in flight
  std::deque<std::shared_ptr<TurnState>> queue_;   // turns waiting for it
  std::vector<PendingPermission> pending_perms_;   // policy ask: requests a person must answer
  std::uint64_t next_token_ = 0;
  std::vector<TurnEvent> notices_;                 // what poll() returns next (see AcpSession::poll)
  std::vector<ExtensionCall> ext_calls_;           // request()s awaiting their answer
  std::uint64_t next_ext_token_ = 0;
  std::string attach_id_;                          // attaching: the session being attached
  bool other_turn_ = false;                        // via_server: another client's turn is streaming
};

// --- AcpSession and Turn: thin handles ---------------------------------------------------------

AcpSession::AcpSession(supervisor::Bridge& bridge, ClientOptions options)
    : core_(std::make_unique<SessionCore>(bridge, std::move(options))) {}

AcpSession::~AcpSession() = default;

std::optional<TurnEvent> AcpSession::open(Deadline deadline, int interrupt_fd, const std::function<void()>& on_wait) {
  return core_->open(deadline, interrupt_fd, on_wait);
}

void AcpSession::start_new_session() { core_->start_new_session(); }

std::optional<TurnEvent> AcpSession::new_session(Deadline deadline, int interrupt_fd) {
  core_->start_new_session();
  return core_->open(deadline, interrupt_fd);
}

Turn AcpSession::prompt(std::string text, base::Duration timeout) {
  return prompt_blocks(json::array({{{"type", "text"}, {"text", std::move(text)}}}), timeout);
}

Turn AcpSession::prompt_blocks(json content, base::Duration timeout) {
  return Turn(core_.get(), core_->start_turn(std::move(content), timeout));
}

std::vector<TurnEvent> AcpSession::poll() { return core_->poll_session(); }
std::vector<TurnEvent> AcpSession::take_notices() { return core_->take_notices(); }
bool AcpSession::answer_permission(std::uint64_t token, const std::optional<std::string>& option_id) {
  return core_->answer_permission(nullptr, token, option_id);
}
std::uint64_t AcpSession::request(std::string_view method, json params) {
  return core_->request(method, std::move(params));
}
bool AcpSession::close(Deadline deadline) { return core_->close(deadline); }
std::variant<std::uint64_t, json> AcpSession::change_settings(const SessionSettings& change) {
  return core_->change_settings(change);
}
int AcpSession::fd() const { return core_->fd(); }
Deadline AcpSession::next_deadline() const { return core_->session_deadline(); }
const SessionState& AcpSession::state() const { return core_->state(); }

Turn::Turn(Turn&& other) noexcept : core_(other.core_), state_(std::move(other.state_)) {}

Turn::~Turn() {
  if (state_ && core_) core_->abandon(state_);
}

int Turn::fd() const { return core_->fd(); }
Deadline Turn::next_deadline() const { return core_->next_deadline(); }

std::vector<TurnEvent> Turn::poll() { return core_->poll_turn(*state_); }

std::vector<TurnEvent> Turn::wait(Deadline deadline, int interrupt_fd) {
  for (;;) {
    auto out = poll();
    if (!out.empty() || finished() || deadline.expired()) return out;
    if (!core_->wait_readable(Deadline::earliest(deadline, next_deadline()), interrupt_fd)) return out;
  }
}

void Turn::cancel(CancelCause cause) { core_->cancel(*state_, cause); }

bool Turn::answer_permission(std::uint64_t token, const std::optional<std::string>& option_id) {
  return core_->answer_permission(state_.get(), token, option_id);
}

bool Turn::finished() const { return state_->phase == TurnState::Phase::done && state_->out.empty(); }

}  // namespace tether::acp
