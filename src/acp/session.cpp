// AcpSession and Turn (session.h): the thin handles, and the operations of SessionCore they
// forward to: open, a fresh session, close, starting a turn, polling. Each operation starts what
// it needs and lets the event pump (session_pump.cpp) and the setup sequence (session_setup.cpp)
// carry it on; the ones that block (open, close) pump until their condition holds. The sections
// of SessionCore and the files they live in are listed in session_core.h.
#include "acp/session.h"

#include <errno.h>
#include <poll.h>

#include "acp/server_wire.h"
#include "acp/session_core.h"
#include "rpc/json_write.h"
#include "supervisor/bridge.h"

namespace tether::acp {

int exit_status(const TurnEvent& t) {
  if (t.cancelled == CancelCause::timeout) return kExitTimeout;
  if (t.cancelled == CancelCause::interrupt) return kExitInterrupted;
  if (t.kind == TurnEvent::Kind::completed) return exit_status_for_stop_reason(t.stop_reason);
  return exit_status_for_error(t.error, t.during_setup);
}

// --- SessionCore: the operations ------------------------------------------------------------------

SessionCore::SessionCore(supervisor::Bridge& bridge, ClientOptions options)
    : bridge_(bridge), opt_(std::move(options)), fs_(opt_.cwd), settings_(opt_.settings) {
  // A session to continue is opened as a restart brings ours back (session_setup.cpp), except
  // that failing is a failure.
  state_.session_id = opt_.session_id;
  continuing_ = !opt_.session_id.empty();
  if (opt_.allow_terminal && !opt_.via_server)
    terminals_ = std::make_unique<Terminals>(opt_.cwd, bridge_.events()->fd(), opt_.permission == PermissionPolicy::deny,
                                             opt_.on_terminal);
}

SessionCore::~SessionCore() {
  // Nothing may block here: tell the agent, answer what it waits for, and let the bridge's owner
  // stop it.
  if (active_ && (active_->phase == TurnState::Phase::prompting)) send_cancel();
  for (auto& p : pending_perms_) bridge_.respond(p.gen, p.id, permission_result(std::nullopt));
}

// With terminals, an epoll set of the event queue's fd and the terminals' own.
int SessionCore::fd() const { return terminals_ ? terminals_->fd() : bridge_.events()->fd(); }

bool SessionCore::is_server_error(const json& err) {
  const json* code = rpc::member(err, "code");
  return code && code->is_number_integer() && code->get<int>() == rpc::kTetherServerError;
}

std::optional<TurnEvent> SessionCore::open(Deadline deadline, int interrupt_fd, const std::function<void()>& on_wait) {
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

void SessionCore::start_new_session() { switch_session(""); }

std::optional<TurnEvent> SessionCore::start_load_session(const std::string& id) {
  // Checked before anything changes: an agent that cannot bring a session back keeps the one it
  // has. (A tether server can always attach; it says so itself when it cannot.) Known once
  // initialize was answered, whether or not the session is ready (a session/new under way).
  if (state_.protocol_version != 0 && !opt_.via_server && !state_.can_resume && !state_.load_session)
    return failed_event(cannot_continue_error(), true);
  switch_session(id);
  return std::nullopt;
}

// Leaves the session we have for a new one (`id` empty) or the session `id`.
void SessionCore::switch_session(const std::string& id) {
  if (active_ && active_->phase == TurnState::Phase::prompting) cancel(*active_, CancelCause::caller_gone);
  withdraw_idle_permissions(0);  // the old session's questions have nobody left to ask
  if (terminals_) terminals_->release_all();  // the old session's commands end with it
  // A tether server would go on treating us as attached to the old session (and asking us its
  // questions): say we leave it. The answer needs no one.
  if (opt_.via_server && link_ == Link::ready && !state_.session_id.empty())
    bridge_.call_queued(server_wire::kDetach, {{"sessionId", state_.session_id}}, nullptr);
  // The old session is closed at the agent, which may hold a process per open session (Claude's
  // is 200+ MB). Nobody waits for the answer: it is dropped as one we do not wait for.
  if (link_ == Link::ready) send_close();
  const std::string old_id = state_.session_id;
  drop_session_state();
  state_.session_id = id;
  continuing_ = !id.empty();
  leave_session_in_setup(old_id);
}

// The old session's state goes with it; the agent's and the connection's stay.
void SessionCore::drop_session_state() {
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
  continuing_ = false;
  replay_user_ = false;
  state_.replayed_turns = 0;
}

// switch_session(), by where the setup sequence stands: what is under way for the old session
// (`old_id`) is abandoned, and the sequence ends in session/new, or in bringing back the session
// now in state_.session_id (send_session_step).
void SessionCore::leave_session_in_setup(const std::string& old_id) {
  switch (link_) {
    case Link::ready: send_session_step(); break;
    case Link::configuring:
      // The old session's settings are still being applied: the rest is not wanted, and the
      // session itself is closed (its id was cleared already, so by the one kept here), or left
      // at a tether server.
      bridge_.cancel(link_call_gen_, link_call_);
      if (opt_.via_server) bridge_.call_queued(server_wire::kDetach, {{"sessionId", old_id}}, nullptr);
      close_by_id(old_id);
      send_session_step();
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
      send_session_step();
      break;
    case Link::closed: send_session_step(); break;
    case Link::idle: begin_handshake(); break;
    case Link::failed:
      // A refused step (a /load of an unknown id) fails the link on a connection still
      // initialized: a second initialize there is a protocol error, and through a tether server
      // server_setup() would attach us to its main session instead of what was asked.
      if (live_gen_ != 0) send_session_step();
      else begin_handshake();
      break;
    case Link::authenticating:
      if (!state_.session_id.empty()) {
        // A session to bring back instead of what authenticate was for: that is given up.
        bridge_.cancel(link_call_gen_, link_call_);
        send_session_step();
      } else if (redo_.phase != Link::creating) {
        // authenticate is under way for the old session's load or resume: what follows it is a
        // new session instead.
        redo_ = {Link::creating, "session/new", new_session_params(opt_.cwd, mcp_servers())};
      }
      break;
    case Link::creating:
      // A session/new under way, when a session is to be brought back instead: given up (if the
      // agent makes it anyway, its answer goes to no one).
      if (!state_.session_id.empty()) {
        bridge_.cancel(link_call_gen_, link_call_);
        send_session_step();
      }
      break;
    case Link::waiting_bridge:
    case Link::initializing:
      break;  // the handshake under way ends in send_session_step()
  }
}

std::shared_ptr<TurnState> SessionCore::start_turn(std::string content, base::Duration timeout,
                                                   AcpSession::ContentBuilder build) {
  auto t = std::make_shared<TurnState>();
  t->content = std::move(content);
  t->build = std::move(build);
  t->retries_left = t->retries_total = std::max(0, opt_.retries);
  if (timeout > base::Duration::zero()) t->deadline = Deadline::after(timeout);
  queue_.push_back(t);
  // Handles what came in between turns, then sends the prompt if the session is ready. The
  // front-end polls the turn next, and that pump clears the queue's fd.
  pump(/*clear_fd=*/false);
  return t;
}

std::vector<TurnEvent> SessionCore::poll_session() {
  pump();
  return std::exchange(notices_, {});
}

std::vector<TurnEvent> SessionCore::poll_turn(TurnState& t) {
  pump();
  return std::exchange(t.out, {});
}

Deadline SessionCore::next_deadline() const {
  Deadline d = Deadline::never();
  if (link_call_) d = Deadline::earliest(d, link_deadline_);
  if (active_) {
    if (active_->phase == TurnState::Phase::cancelling) d = Deadline::earliest(d, active_->cancel_by);
    else if (active_->phase != TurnState::Phase::done) d = Deadline::earliest(d, active_->deadline);
  }
  for (const auto& t : queue_) d = Deadline::earliest(d, t->deadline);
  if (terminals_) d = Deadline::earliest(d, terminals_->next_deadline());
  return d;
}

Deadline SessionCore::session_deadline() const {
  return notices_.empty() ? next_deadline() : Deadline::at(base::TimePoint{});
}

bool SessionCore::wait_readable(Deadline deadline, int interrupt_fd) {
  pollfd p[2] = {{fd(), POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
  nfds_t n = interrupt_fd >= 0 ? 2 : 1;
  for (;;) {
    int r = ::poll(p, n, deadline.poll_timeout_ms());
    if (r < 0 && errno == EINTR) continue;
    return !(n == 2 && (p[1].revents & POLLIN));
  }
}

std::uint64_t SessionCore::request(std::string_view method, json params) {
  ExtensionCall c;
  c.token = ++next_ext_token_;
  c.method = std::string(method);
  if (method == "session/set_config_option" || method == "session/set_mode") c.params = params;
  c.id = bridge_.call_queued(method, std::move(params), &c.gen);
  const std::uint64_t token = c.token;
  ext_calls_.push_back(std::move(c));
  return token;
}

bool SessionCore::close(Deadline deadline) {
  if (active_ && active_->phase != TurnState::Phase::done) cancel(*active_, CancelCause::caller_gone);
  if (terminals_) terminals_->release_all();
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

std::optional<TurnEvent> AcpSession::load_session(const std::string& id, Deadline deadline, int interrupt_fd) {
  if (auto refused = core_->start_load_session(id)) return refused;
  return core_->open(deadline, interrupt_fd);
}

Turn AcpSession::prompt(std::string text, base::Duration timeout) {
  // One text block, written as dump() writes it (members sorted), without building a value.
  std::string content;
  content.reserve(32 + text.size());  // the text without escapes: one allocation
  content = "[{\"text\":";
  rpc::append_json_string(content, text);
  content += ",\"type\":\"text\"}]";
  return Turn(core_.get(), core_->start_turn(std::move(content), timeout));
}

Turn AcpSession::prompt_blocks(json content, base::Duration timeout) {
  return Turn(core_.get(), core_->start_turn(rpc::dump(content), timeout));
}

Turn AcpSession::prompt_built(ContentBuilder build, base::Duration timeout) {
  return Turn(core_.get(), core_->start_turn(std::string(), timeout, std::move(build)));
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
std::optional<std::string> AcpSession::terminal_output(std::string_view terminal_id) const {
  return core_->terminal_output(terminal_id);
}

Turn::Turn(Turn&& other) noexcept : core_(other.core_), state_(std::move(other.state_)) {}

Turn::~Turn() {
  if (state_ && core_) core_->abandon(state_);
}

int Turn::fd() const { return core_->fd(); }
// Events the turn already holds are due now: a turn can end inside prompt() itself (its bridge gave
// up while the prompt was queued: the status event was drained there), and then nothing would make
// fd() readable again; a front-end that polls until this deadline would wait forever.
Deadline Turn::next_deadline() const { return state_->out.empty() ? core_->next_deadline() : Deadline::at(base::TimePoint{}); }

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
