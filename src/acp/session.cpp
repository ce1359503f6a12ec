#include "acp/session.h"

#include <errno.h>
#include <poll.h>

#include <deque>

#include "acp/fs.h"
#include "rpc/message.h"
#include "supervisor/bridge.h"

namespace tether::acp {
namespace {

using base::Clock;
using base::Deadline;
using nlohmann::json;
using rpc::Event;
using rpc::Reply;

constexpr int kProtocolVersion = 1;
// Updates for a session id we do not know yet (they may precede session/new's answer).
constexpr std::size_t kMaxBufferedUpdates = 256;
// Updates held before a turn's boundary is known (see TurnState::past_barrier). An agent that
// never answers the boundary's $/ping would otherwise have its whole answer held.
constexpr std::size_t kMaxHeldUpdates = 1024;
// How long updates are held for a ping answer. An agent that handles its input in order answers
// the previous prompt's ping before it reads this prompt, so the answer is normally already here;
// one that drops requests mid-turn would otherwise delay a whole answer.
constexpr auto kMaxHold = std::chrono::milliseconds(250);

using rpc::member;
using rpc::string_of;

// "error -32603: Internal error" from a JSON-RPC error object.
// A tether server's own failure (rpc::kTetherServerError), not an agent's error passed through.
bool is_server_error(const json& err) {
  const json* code = member(err, "code");
  return code && code->is_number_integer() && code->get<int>() == rpc::kTetherServerError;
}

std::string rpc_error_text(const json& err) {
  std::string s = "error";
  if (const json* c = member(err, "code"); c && c->is_number_integer()) s += " " + std::to_string(c->get<long long>());
  if (auto m = string_of(err, "message"); !m.empty()) s += ": " + m;
  return s;
}

json rpc_error_extra(const json& err) {
  json extra = json::object();
  if (const json* c = member(err, "code"); c && c->is_number_integer()) extra["rpcCode"] = *c;
  return extra;
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
  // The turn boundary. Nothing on the wire says whether an update that arrives after a prompt
  // was sent belongs to it or came late from the turn before (agents do send updates after
  // their final response). So a `$/ping` request follows each prompt, pipelined: an agent that
  // handles its input in order answers it once it is done with the prompt, after whatever it
  // sends late. If the ping that followed the previous prompt is still unanswered when this
  // prompt goes out, updates are held until it is answered (they were the previous turn's:
  // dropped), or until this prompt's own final response comes first (they were this turn's:
  // released in order). Usually the answer came with the previous turn's, and nothing is held.
  std::int64_t barrier_id = 0;
  std::uint64_t barrier_gen = 0;
  bool past_barrier = true;
  Deadline hold_until = Deadline::never();
  std::vector<TurnEvent> held;
  // Through a tether server (via_server) a prompt waits in the server's queue while other
  // clients' turns in the session run; the server says `_tether/turn_started` when it sends ours
  // on. What comes for the session before that is another client's.
  bool server_started = false;
};

// Everything behind AcpSession and Turn. Thread-bound (see session.h).
class SessionCore {
 public:
  SessionCore(supervisor::Bridge& bridge, ClientOptions options)
      : bridge_(bridge), opt_(std::move(options)), fs_(opt_.cwd) {}

  ~SessionCore() {
    // Nothing may block here: tell the agent, answer what it waits for, and let the bridge's owner
    // stop it.
    if (active_ && (active_->phase == TurnState::Phase::prompting)) send_cancel();
    for (auto& p : pending_perms_) bridge_.respond(p.gen, p.id, permission_result(std::nullopt));
  }

  int fd() const { return bridge_.events()->fd(); }
  const SessionState& state() const { return state_; }

  std::optional<TurnEvent> open(Deadline deadline, int interrupt_fd) {
    if (link_ == Link::idle || link_ == Link::failed) begin_handshake();
    for (;;) {
      pump();
      if (link_ == Link::ready) return std::nullopt;
      if (link_ == Link::failed) return failed_event(link_error_, true);
      if (deadline.expired()) return failed_event(error_object("timeout", "the agent did not complete the ACP handshake in time"), true);
      if (!wait_readable(Deadline::earliest(deadline, next_deadline()), interrupt_fd)) {
        TurnEvent e = failed_event(error_object("cancelled", "interrupted while connecting to the agent"), true);
        e.cancelled = CancelCause::interrupt;
        return e;
      }
    }
  }

  // See AcpSession::start_new_session.
  void start_new_session() {
    if (active_ && active_->phase == TurnState::Phase::prompting) cancel(*active_, CancelCause::caller_gone);
    withdraw_idle_permissions(0);  // the old session's questions have nobody left to ask
    // A tether server would go on treating us as attached to the old session (and asking us its
    // questions): say we leave it. The answer needs no one.
    if (opt_.via_server && link_ == Link::ready && !state_.session_id.empty())
      bridge_.call_queued("_tether/detach", {{"sessionId", state_.session_id}}, nullptr);
    // The old session's state goes with it; the agent's and the connection's stay.
    state_.on_main = false;
    other_turn_ = false;
    state_.session_id.clear();
    state_.commands.clear();
    state_.commands_announced = false;
    state_.mode_id.clear();
    state_.modes = nullptr;
    state_.title.clear();
    state_.usage.reset();
    buffered_.clear();
    context_lost_reason_.clear();
    // The turn barrier is not needed across sessions: the old session's late updates carry its id,
    // which is no longer ours, and are dropped for that.
    trailing_pending_ = false;
    switch (link_) {
      case Link::ready: send_new_session(); break;
      case Link::loading:
      case Link::attaching:
        // A restart was bringing the old session back (or we were joining the server's main
        // one): it is no longer wanted.
        bridge_.cancel(link_call_gen_, link_call_);
        send_new_session();
        break;
      case Link::idle:
      case Link::failed: begin_handshake(); break;
      case Link::waiting_bridge:
      case Link::initializing:
      case Link::authenticating:
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
      if (!active_->past_barrier) d = Deadline::earliest(d, active_->hold_until);
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
    c.id = bridge_.call_queued(method, std::move(params), &c.gen);
    ext_calls_.push_back(c);
    return c.token;
  }

 private:
  // attaching: session/load of a tether server's main session (via_server).
  enum class Link { idle, waiting_bridge, initializing, authenticating, creating, loading, attaching, ready, failed };

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
    std::uint64_t token;
    std::uint64_t gen;
    std::int64_t id;
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
    }
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
    } else if (opt_.via_server && name == "_tether/turn_started") {
      TurnState* t = active_.get();
      if (t && string_of(*params, "sessionId") == state_.session_id && t->phase != TurnState::Phase::waiting &&
          t->phase != TurnState::Phase::done) {
        t->server_started = true;
        other_turn_ = false;
      }
    } else if (opt_.via_server && name == "_tether/bridge_restarted") {
      notice(server_restart_text(*params), /*server_trouble=*/true);
    } else if (opt_.via_server && name == "_tether/bridge_gone") {
      std::string m = string_of(*params, "message");
      notice("the tether server gave up on its bridge" + (m.empty() ? std::string() : ": " + m), true);
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
      TurnEvent& e = (t->past_barrier ? t->out : t->held).emplace_back();
      e.kind = TurnEvent::Kind::update;
      e.update = std::move(*u);
      if (!t->past_barrier && t->held.size() >= kMaxHeldUpdates) {
        barrier_ignored_ = true;  // it does not answer pings: stop asking
        pass_barrier(*t, /*drop=*/false);
      }
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
      case Update::Kind::mode: state_.mode_id = u.mode_id; break;
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
    // another client's turn: the server asks us as the session's active client.
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
    for (auto it = ext_calls_.begin(); it != ext_calls_.end(); ++it) {
      if (it->id != ev.call_id || it->gen != ev.generation) continue;
      TurnEvent e;
      e.kind = TurnEvent::Kind::reply;
      e.request_id = it->token;
      if (ev.reply.status == Reply::Status::result) e.result = std::move(ev.reply.value);
      else if (ev.reply.status == Reply::Status::error || ev.reply.status == Reply::Status::closed) e.error = std::move(ev.reply.value);
      else e.error = error_object("cancelled", "the request was abandoned");
      ext_calls_.erase(it);
      notices_.push_back(std::move(e));
      return;
    }
    TurnState* t = active_.get();
    if (t && !t->past_barrier && ev.call_id == t->barrier_id && ev.generation == t->barrier_gen) {
      pass_barrier(*t, /*drop=*/true);
      return;
    }
    if (trailing_pending_ && ev.call_id == trailing_ping_ && ev.generation == trailing_gen_) {
      trailing_pending_ = false;
      return;
    }
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

  void begin_handshake() {
    json caps = json::object();
    if (opt_.allow_fs) caps["fs"] = {{"readTextFile", true}, {"writeTextFile", true}};
    send_setup(Link::initializing, "initialize",
               {{"protocolVersion", kProtocolVersion},
                {"clientCapabilities", std::move(caps)},
                {"clientInfo", {{"name", opt_.client_name}, {"title", "tether"}, {"version", opt_.client_version}}}});
  }

  void send_setup(Link phase, const char* method, json params) {
    std::uint64_t gen = 0;
    link_ = phase;
    link_method_ = method;
    link_deadline_ = Deadline::after(opt_.setup_timeout);
    link_call_ = bridge_.call_queued(method, std::move(params), &gen);
    link_call_gen_ = gen;
  }

  void send_new_session() {
    send_setup(Link::creating, "session/new", {{"cwd", opt_.cwd}, {"mcpServers", json::array()}});
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

  void on_setup_error(const json& err) {
    // A tether server's own failure (past its restart budget: restart_limit) is told as it is,
    // not as the agent's refusal of the method.
    if (const json* data = opt_.via_server && is_server_error(err) ? member(err, "data") : nullptr;
        data && data->is_object() && !string_of(*data, "code").empty()) {
      link_fail(*data);
      return;
    }
    const json* code = member(err, "code");
    switch (link_) {
      case Link::initializing:
        link_fail(error_object("protocol_error",
                               "the bridge answered initialize with " + rpc_error_text(err) + ": is it an ACP agent?",
                               rpc_error_extra(err)));
        return;
      case Link::creating:
        if (code && *code == -32000 && !auth_tried_) {
          // Authentication required: only methods the agent runs itself can be used from here.
          for (const auto& m : state_.auth_methods) {
            std::string type = string_of(m, "type");
            std::string id = string_of(m, "id");
            if (!id.empty() && (type.empty() || type == "agent")) {
              auth_tried_ = true;
              send_setup(Link::authenticating, "authenticate", {{"methodId", id}});
              return;
            }
          }
          link_fail(error_object("agent_error",
                                 "the agent requires authentication and offers no method tether can run "
                                 "(authenticate it outside tether first)",
                                 rpc_error_extra(err)));
          return;
        }
        link_fail(error_object("agent_error", "the agent refused session/new: " + rpc_error_text(err), rpc_error_extra(err)));
        return;
      case Link::authenticating:
        link_fail(error_object("agent_error", "authentication failed: " + rpc_error_text(err), rpc_error_extra(err)));
        return;
      case Link::loading:
        context_lost_reason_ = (opt_.via_server ? "the tether server could not re-attach the session ("
                                                : "the agent could not load the session (") +
                               rpc_error_text(err) + ")";
        send_new_session();
        return;
      case Link::attaching:
        link_fail(error_object("agent_error", "the tether server did not attach us to its main session: " + rpc_error_text(err),
                               rpc_error_extra(err)));
        return;
      default:
        return;
    }
  }

  void on_setup_result(const json& r) {
    switch (link_) {
      case Link::initializing: {
        const json* v = member(r, "protocolVersion");
        if (!v || !v->is_number_integer() || v->get<long long>() != kProtocolVersion) {
          std::string got = v ? rpc::dump(*v) : "no version";
          link_fail(error_object("protocol_error", "the agent speaks ACP protocol version " + got +
                                                       "; tether speaks version 1"));
          return;
        }
        state_.protocol_version = kProtocolVersion;
        state_.agent_info = r.contains("agentInfo") ? r["agentInfo"] : json();
        state_.agent_capabilities = r.contains("agentCapabilities") ? r["agentCapabilities"] : json::object();
        const json* load = member(state_.agent_capabilities, "loadSession");
        state_.load_session = load && load->is_boolean() && load->get<bool>();
        const json* auth = member(r, "authMethods");
        state_.auth_methods = auth && auth->is_array() ? *auth : json::array();
        auth_tried_ = false;
        if (opt_.via_server) {
          server_setup(r);
          return;
        }
        if (!state_.session_id.empty() && state_.load_session) {
          send_setup(Link::loading, "session/load",
                     {{"sessionId", state_.session_id}, {"cwd", opt_.cwd}, {"mcpServers", json::array()}});
        } else {
          if (!state_.session_id.empty())
            context_lost_reason_ = "the agent cannot load sessions (it does not advertise loadSession)";
          send_new_session();
        }
        return;
      }
      case Link::authenticating:
        send_new_session();
        return;
      case Link::attaching: {
        // The server answers {} at once: the session's history is not replayed.
        bool again = !state_.session_id.empty();
        bool other = again && state_.session_id != attach_id_;
        state_.session_id = attach_id_;
        state_.on_main = true;
        other_turn_ = false;
        if (again) ++state_.sessions_loaded;
        session_ready();
        if (other) {
          notice("the tether server has a new main session (it was restarted): attached to it, and the "
                 "conversation context was lost");
        } else if (again) {
          notice("reconnected to the tether server and re-attached to its main session");
        }
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
        if (const json* modes = member(r, "modes"); modes && modes->is_object()) {
          state_.modes = *modes;
          state_.mode_id = string_of(*modes, "currentModeId");
        }
        session_ready();
        for (auto& params : std::exchange(buffered_, {}))
          if (string_of(params, "sessionId") == id) on_update(link_call_gen_, params);
        if (!context_lost_reason_.empty()) {
          notice(std::exchange(context_lost_reason_, {}) +
                 ": a new session was started and the conversation context was lost");
        }
        return;
      }
      case Link::loading:
        ++state_.sessions_loaded;
        session_ready();
        notice(opt_.via_server ? "reconnected to the tether server and re-attached to the session (session/load)"
                               : "the session was restored after the bridge restarted (session/load)");
        return;
      default:
        return;
    }
  }

  // After initialize through a tether server: it must be one, and the session is attached
  // (the main one, or ours again after a reconnect: the server knows the sessions opened through
  // it, whatever the agent can load) or created.
  void server_setup(const json& r) {
    const json* meta = member(r, "_meta");
    const json* t = meta ? member(*meta, "tether") : nullptr;
    if (!t || !t->is_object()) {
      link_fail(error_object("protocol_error",
                             "the peer is not a tether server (its initialize answer has no _meta.tether)"));
      return;
    }
    state_.server = *t;
    bool to_main = state_.session_id.empty() ? opt_.attach_main : state_.on_main;
    if (to_main) {
      attach_id_ = string_of(*t, "mainSessionId");
      if (attach_id_.empty()) {
        link_fail(error_object("protocol_error", "the tether server did not name its main session (_meta.tether.mainSessionId)"));
        return;
      }
      send_setup(Link::attaching, "session/load", {{"sessionId", attach_id_}, {"cwd", opt_.cwd}, {"mcpServers", json::array()}});
    } else if (!state_.session_id.empty()) {
      send_setup(Link::loading, "session/load",
                 {{"sessionId", state_.session_id}, {"cwd", opt_.cwd}, {"mcpServers", json::array()}});
    } else {
      send_new_session();
    }
  }

  void session_ready() {
    link_ = Link::ready;
    state_.generation = link_call_gen_;
    link_error_ = nullptr;
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
    // Late updates can only come from the process that ran the previous prompt.
    t.past_barrier = !(trailing_pending_ && trailing_gen_ == gen);
    t.barrier_id = trailing_ping_;
    t.barrier_gen = trailing_gen_;
    if (!t.past_barrier) t.hold_until = Deadline::after(kMaxHold);
    trailing_pending_ = false;
    // What comes after our turn is ours until another client's prompt shows. Through a server, a
    // prompt sent while another client's turn streams leaves that turn showing until the server
    // starts ours (_tether/turn_started).
    if (!opt_.via_server) other_turn_ = false;
    // A tether server answers $/ping itself, ahead of the agent's late updates: no boundary there.
    if (opt_.turn_barrier && !barrier_ignored_ && !opt_.via_server) {
      trailing_ping_ = bridge_.call_queued("$/ping", json::object(), &trailing_gen_);
      trailing_pending_ = true;
    }
  }

  void send_cancel() { bridge_.notify("session/cancel", {{"sessionId", state_.session_id}}); }

  void on_prompt_reply(TurnState& t, const Reply& r) {
    bool cancelling = t.phase == TurnState::Phase::cancelling;
    if (r.status == Reply::Status::timeout || r.status == Reply::Status::cancelled) return;
    // The final response before the ping's answer: what was held was this turn's.
    if (!t.past_barrier) pass_barrier(t, /*drop=*/false);
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
    advance();
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

  void pass_barrier(TurnState& t, bool drop) {
    t.past_barrier = true;
    if (drop) state_.late_updates += t.held.size();
    else
      for (auto& e : t.held) t.out.push_back(std::move(e));
    t.held.clear();
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
    if (!t.past_barrier && t.hold_until.expired(now)) {
      barrier_ignored_ = true;  // it does not answer pings in time: stop asking
      pass_barrier(t, /*drop=*/false);
    }
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
  bool barrier_ignored_ = false;                   // the agent does not answer $/ping
  std::int64_t trailing_ping_ = 0;                 // the $/ping that followed the last prompt
  std::uint64_t trailing_gen_ = 0;
  bool trailing_pending_ = false;                  // ... and it is not answered yet
};

// --- AcpSession and Turn: thin handles ---------------------------------------------------------

AcpSession::AcpSession(supervisor::Bridge& bridge, ClientOptions options)
    : core_(std::make_unique<SessionCore>(bridge, std::move(options))) {}

AcpSession::~AcpSession() = default;

std::optional<TurnEvent> AcpSession::open(Deadline deadline, int interrupt_fd) {
  return core_->open(deadline, interrupt_fd);
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
