// The machinery behind AcpSession and Turn (session.h), shared by the files it is split into. Not
// a public header: only src/acp/session*.cpp include it.
//
// SessionCore is one class whose member functions live in the file of their section:
//   session.cpp           the operations AcpSession and Turn forward to (open, new session,
//                         close, prompt, poll), and the thin handles themselves
//   session_pump.cpp      the event pump: what the bridge's event queue brings, sorted into the
//                         active turn's events, the session's state and the session's notices
//   session_requests.cpp  requests the agent makes of us: permission (by policy or a person), fs
//                         and terminals (acp/terminals.h)
//   session_setup.cpp     the setup sequence: initialize, authenticate, session/new, load, resume,
//                         a tether server's attach, and re-establishing the session after a restart
//   session_settings.cpp  the session's mode and config options: applied after every setup,
//                         changed between turns, remembered for the next re-establishment
//   session_turns.cpp     turns: sending prompts one at a time, their answers, retries after a
//                         bridge death, cancellation, timeouts
//
// Thread contract: thread-bound, like AcpSession.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/fs.h"
#include "acp/session.h"
#include "rpc/message.h"

namespace tether::rpc {
struct Event;
struct Reply;
}

namespace tether::acp {

// The names every file of SessionCore uses (this header is private to them).
using base::Clock;
using base::Deadline;
using nlohmann::json;
using rpc::Event;
using rpc::member;
using rpc::Reply;
using rpc::string_of;

struct TurnState {
  enum class Phase { waiting, prompting, cancelling, done };
  // The prompt's content blocks as JSON text, written once (every send and retry sends it as
  // it is, without building a params object around a copy).
  std::string content;
  AcpSession::ContentBuilder build;  // when set: makes `content` at the first send (then cleared)
  Phase phase = Phase::waiting;
  int retries_left = 0;
  int retries_total = 0;
  base::Deadline deadline = base::Deadline::never();   // the turn's timeout
  base::Deadline cancel_by = base::Deadline::never();  // cancelling: escalate after this
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
  using json = nlohmann::json;

  SessionCore(supervisor::Bridge& bridge, ClientOptions options);
  ~SessionCore();

  int fd() const;
  const SessionState& state() const { return state_; }

  // session.cpp: what AcpSession and Turn forward to.
  std::optional<TurnEvent> open(base::Deadline deadline, int interrupt_fd, const std::function<void()>& on_wait = {});
  void start_new_session();  // see AcpSession::start_new_session
  // AcpSession::load_session's first half: tether's error object when the agent can neither
  // resume nor load (nothing changed), else the switch is under way (open() waits for it).
  std::optional<TurnEvent> start_load_session(const std::string& id);
  // `content`: the content blocks as JSON text (empty with `build`).
  std::shared_ptr<TurnState> start_turn(std::string content, base::Duration timeout, AcpSession::ContentBuilder build = {});
  std::vector<TurnEvent> poll_session();
  std::vector<TurnEvent> take_notices() { return std::exchange(notices_, {}); }
  std::vector<TurnEvent> poll_turn(TurnState& t);
  base::Deadline next_deadline() const;
  // For AcpSession::poll()'s caller: also now while events a turn's pump set aside wait (the
  // event fd does not announce those).
  base::Deadline session_deadline() const;
  // Waits until the event queue or `interrupt_fd` is readable or `deadline` passes. False when
  // interrupt_fd is readable.
  bool wait_readable(base::Deadline deadline, int interrupt_fd);
  std::uint64_t request(std::string_view method, json params);
  bool close(base::Deadline deadline);
  // AcpSession::terminal_output.
  std::optional<std::string> terminal_output(std::string_view terminal_id) const {
    return terminals_ ? terminals_->output_of(std::string(terminal_id)) : std::nullopt;
  }

  // session_settings.cpp
  std::variant<std::uint64_t, json> change_settings(const SessionSettings& change);

  // session_requests.cpp. `t`: only a request of that turn; null: any.
  bool answer_permission(const TurnState* t, std::uint64_t token, const std::optional<std::string>& option_id);

  // session_turns.cpp
  void cancel(TurnState& t, CancelCause cause);
  void abandon(const std::shared_ptr<TurnState>& t);

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

  // Updates for a session id we do not know yet (they may precede session/new's answer).
  static constexpr std::size_t kMaxBufferedUpdates = 256;

  // A tether server's own failure (rpc::kTetherServerError), not an agent's error passed through.
  static bool is_server_error(const json& err);
  static std::string error_code(const json& err) { return rpc::string_of(err, "code"); }

  // session.cpp
  void switch_session(const std::string& id);
  void drop_session_state();
  void leave_session_in_setup(const std::string& old_id);

  // session_pump.cpp
  void pump(bool clear_fd = true);
  void handle(rpc::Event& ev);
  void on_output(const rpc::Event& ev);
  void on_notification(rpc::Event& ev);
  static std::string server_restart_text(const json& p);
  void on_update(std::uint64_t gen, json& params);
  void on_session_update(std::uint64_t gen, Update&& u);
  static bool is_turn_content(Update::Kind k);
  void apply_state(const Update& u);
  void on_response(rpc::Event& ev);
  void on_status(const rpc::Event& ev);
  void lose_link(std::uint64_t gen);
  TurnEvent& outside_event();
  void notice(std::string text, bool server_trouble = false);

  // session_requests.cpp
  void on_request(rpc::Event& ev);
  void on_permission(std::uint64_t gen, const json& id, const json& params);
  void on_cancel_request(std::uint64_t gen, const json& params);
  void answer_pending_cancelled(const TurnState* t);
  void withdraw_idle_permissions(std::uint64_t gen);
  void pump_terminals();

  // session_setup.cpp
  void begin_handshake();
  void send_setup(Link phase, const char* method, json params);
  void send_new_session();
  void send_load();
  void send_session_step();
  void reopen_session();
  json cannot_continue_error() const;
  json not_continued_error(const char* method, const json& err) const;
  void count_replayed(const Update& u);
  void forget_current_settings();
  bool send_close();
  void close_by_id(const std::string& id);
  void on_setup_reply(const rpc::Reply& r);
  bool try_authenticate(const json& err);
  void on_setup_error(const json& err);
  void on_setup_result(const json& r);
  void on_initialized(const json& r);
  void on_attached(const json& r);
  void on_created(const json& r);
  void on_reopened(const json& r);
  void server_setup(const json& r);
  void session_ready();
  void link_fail(json error);

  // session_settings.cpp
  json mcp_servers();  // ClientOptions::mcp as this agent can take them (notice once for those left out)
  void read_session_settings(const json& r);
  void apply_setting(const std::string& method, const json& params, const json& result);
  void remember_setting(const std::string& method, const json& params);
  void begin_configure();
  void send_next_setting();

  // session_turns.cpp
  void advance();
  void send_prompt(TurnState& t);
  void send_cancel();
  void on_prompt_reply(TurnState& t, rpc::Reply&& r);
  void send_again(TurnState& t, const std::string& why, const char* when);
  void check_timers();
  void escalate(TurnState& t);
  json cancel_error(CancelCause cause) const;
  TurnEvent failed_event(json error, bool during_setup) const;
  void finish(TurnState& t, TurnEvent terminal);

  supervisor::Bridge& bridge_;
  const ClientOptions opt_;
  const FsRoot fs_;
  SessionState state_;

  Link link_ = Link::idle;
  std::int64_t link_call_ = 0;       // the setup request in flight (0: none)
  std::uint64_t link_call_gen_ = 0;  // its generation (0: none was running)
  std::string link_method_;
  base::Deadline link_deadline_ = base::Deadline::never();
  std::uint64_t dead_gen_ = 0;       // waiting_bridge: handshake again on a later generation
  // The generation whose initialize was answered, while it lives (0: none): a setup step that
  // failed on it (a refused /load) leaves it initialized, and the next session needs no handshake.
  std::uint64_t live_gen_ = 0;
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
  bool mcp_notice_given_ = false;    // mcp_servers(): the servers left out were named once
  // The session to bring back is one the user asked to continue (ClientOptions::session_id,
  // load_session()), not ours after a restart: failing to bring it back is a failure, never a new
  // session in its place. Cleared once it is back.
  bool continuing_ = false;
  bool replay_user_ = false;         // continuing: the last replayed update was the user's
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
  // --allow-terminal (never via_server): the agent's terminals; its fd() is the session's fd().
  std::unique_ptr<Terminals> terminals_;
};

}  // namespace tether::acp
