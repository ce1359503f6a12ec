// The ACP client: one agent session over a supervised Bridge, and its prompt turns as pollable
// event streams (DESIGN §6, §6a; ACP.md §15).
//
// AcpSession drives the session setup whose decisions live in acp/setup.h: initialize with
// kProtocolVersion (acp/protocol.h) and only the capabilities we implement, one setup request at a
// time; session/new with an absolute cwd and no MCP servers; authenticate only when session/new,
// load or resume answers auth_required, with the method the user named or an env_var method whose
// variables are set, then the setup request once more; the requested mode and config options
// (--mode, --model, --set) before the first prompt. After a bridge restart it re-establishes the
// session (session/resume when the agent advertises it, else session/load, else a new session and a
// notice that the context was lost), and applies the settings again. Sessions it opened are closed
// (session/close) when the agent advertises that: by close(), and by start_new_session() for the
// session it replaces. It answers every request the agent makes exactly once (permission by policy,
// fs when --allow-fs, terminals when --allow-terminal, -32601 for
// the rest), and keeps the session state that updates outside a turn
// change (commands, mode, config options, title, usage).
//
// A Turn is one session/prompt: poll its fd (the bridge's event queue; with --allow-terminal an
// epoll set of that queue and the agent's terminals, whose output is read in poll()) with whatever
// else the front-end waits on, call poll() when it is readable or next_deadline() has passed, and
// read TurnEvents in wire order: updates, permission requests, notices, and exactly one terminal
// event (completed or failed). A turn interrupted by a bridge death is sent again after the
// restart, `retries` times at most. Prompts are serialized: a turn started while another is in
// flight waits for it to end. By the spec a turn's updates all precede its final response: what
// comes after it belongs to no turn (counted in SessionState::late_updates, never shown as part of
// the next turn's answer when it comes before that turn's prompt is sent). Nothing that the agent
// did not advertise is sent to it (no $/ping barrier between turns).
//
// Lines on the agent's stdout that are not JSON (agents print sign-in URLs there) become notices.
//
// Through a `tether serve` server (ClientOptions::via_server) the peer is the server: it must say
// so in its initialize answer (_meta.tether), the session may be the server's main session shared
// with other clients (attach_main), a reconnect re-attaches with session/load, the server's own
// notices (its bridge restarted or gone) become notices, a prompt it fails with tether's error
// object fails the turn with that object, and what comes for our session while no turn of ours is
// in flight (another client's turn, its prompt first as user_message chunks; a permission request
// the server routes to us) is delivered by AcpSession::poll(). The server closes the sessions its
// clients opened when their last client leaves.
//
// Thread contract: thread-bound. One thread drives a session and its turns (they consume the
// bridge's single event queue); the session must outlive its turns. The Bridge must restart
// automatically (BridgeOptions::auto_restart) for retries and re-establishment to happen.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/outcome.h"
#include "acp/permission.h"
#include "acp/setup.h"
#include "acp/terminals.h"
#include "acp/update.h"
#include "base/clock.h"

namespace tether::supervisor {
class Bridge;
}

namespace tether::acp {

struct ClientOptions {
  std::string cwd;  // absolute: the session's cwd and the root of the fs capability
  PermissionPolicy permission = PermissionPolicy::deny;
  bool allow_fs = false;
  // --allow-terminal: offer the terminal capability and run the agent's commands (acp/terminals.h).
  // Never through a tether server (via_server): its agent was initialized without it.
  bool allow_terminal = false;
  // Told what the agent's terminals do (started, output, exited), on the session's thread.
  TerminalObserver on_terminal;
  int retries = 1;  // how many times a prompt interrupted by a bridge death is sent again
  base::Duration setup_timeout = std::chrono::seconds(30);  // each handshake request
  base::Duration cancel_grace = std::chrono::seconds(2);    // session/cancel to final response
  std::string auth;          // --auth: the method to use when the agent asks for authentication
  SessionSettings settings;  // --mode, --model, --set: applied after every session setup
  std::vector<McpServer> mcp;  // --mcp and the config's: passed in session/new, load and resume
  // Where environment variables are read (env_var authentication); the process's by default.
  EnvLookup env;
  // When the agent asks for authentication and neither --auth nor an env_var method settles it:
  // a person chooses (talk on a terminal). Gets the methods and the agent's error; returns a
  // method id, or "" for none. Called on the session's thread, inside open() or poll().
  std::function<std::string(const nlohmann::json& methods, const nlohmann::json& agent_error)> ask_auth;
  std::string client_name = "tether";
  std::string client_version = "0";
  bool via_server = false;   // the peer is a `tether serve` server (--connect)
  bool attach_main = false;  // via_server: attach to the server's main session instead of session/new
  // Continue this session instead of opening a new one (prompt/talk -c, --session, -s): open()
  // sends session/resume when the agent advertises it, else session/load (through a tether
  // server: its session/load). An agent that can do neither, or that does not know the id, fails
  // open() with tether's error object (agent_error, exit 69) naming the id: never a new session
  // in its place. Empty: session/new.
  std::string session_id;
};

struct PermissionRequest {
  std::uint64_t token = 0;  // for Turn::answer_permission (policy ask)
  ToolCall tool;
  std::vector<PermissionOption> options;
  bool answered = false;  // already answered: by policy, or `cancelled` because the turn is ending
  std::optional<PermissionOption> chosen;  // what was answered; nothing means cancelled
  // Asked while no turn of ours ran (through a tether server: another client's turn); answered
  // with AcpSession::answer_permission, and outlives our turns.
  bool outside_turn = false;
};

struct TurnEvent {
  enum class Kind {
    update,                // a session/update of this turn (update)
    permission,            // the agent asks for permission (permission)
    permission_withdrawn,  // the agent withdrew a pending request ($/cancel_request) (permission.token)
    notice,                // a sentence a person should read: restarts, lost context (text)
    output,                // a line the agent wrote on stdout that is not JSON (text): sign-in URLs
    retry,                 // the bridge died mid-turn and the prompt is sent again: drop partial output (text)
    reply,                 // AcpSession::poll() only: the answer to AcpSession::request() (request_id;
                           // result, or error: the JSON-RPC error or tether's error object)
    completed,             // terminal: the agent answered (stop_reason)
    failed,                // terminal: tether's error object, DESIGN §7 (error)
  };
  Kind kind = Kind::notice;
  Update update;
  PermissionRequest permission;
  std::string text;
  std::string stop_reason;
  nlohmann::json error;
  // Through a tether server, while our prompt waits in its queue: an event of another client's
  // turn (update, permission, permission_withdrawn), delivered in our turn's stream in wire order.
  bool other_client = false;
  bool during_setup = false;                // failed while (re)establishing the session
  CancelCause cancelled = CancelCause::none;  // terminal: the cancel that preceded it, if any
  // notice: trouble at a tether server (its bridge restarted or is gone). Front-ends that no
  // person watches report it as an error.
  bool server_trouble = false;
  std::uint64_t request_id = 0;  // reply
  nlohmann::json result;         // reply, when it succeeded; completed: session/prompt's result as sent

  bool terminal() const { return kind == Kind::completed || kind == Kind::failed; }
};

// The exit status a terminal event maps to (0, 1, 69, 75, 76, 130, ...).
int exit_status(const TurnEvent& terminal);

struct SessionState {
  std::string session_id;
  int protocol_version = 0;
  nlohmann::json agent_info;          // {name, title?, version}
  nlohmann::json agent_capabilities;  // as the agent sent them
  nlohmann::json auth_methods = nlohmann::json::array();
  bool load_session = false;          // agentCapabilities.loadSession
  bool can_resume = false;            // sessionCapabilities.resume
  bool can_close = false;             // sessionCapabilities.close
  bool can_list = false;              // sessionCapabilities.list
  std::vector<Command> commands;
  bool commands_announced = false;    // an available_commands_update has arrived
  std::string mode_id;
  nlohmann::json modes;  // session/new's "modes", when given (currentModeId kept up to date)
  nlohmann::json config_options;  // the session's configOptions, as last sent (null: none)
  std::string title;
  std::optional<Usage> usage;
  std::uint64_t generation = 0;       // bridge generation the session lives on
  std::size_t sessions_created = 0;   // session/new answered (1, plus one per lost context)
  std::size_t sessions_loaded = 0;    // session/load or session/resume answered
  std::size_t sessions_closed = 0;    // session/close sent
  // A continued session (ClientOptions::session_id, load_session()): the prompts its session/load
  // replayed (a run of user_message chunks counts once; 0 after session/resume, which replays
  // nothing). The replay itself is never shown as a turn's answer.
  int replayed_turns = 0;
  std::string auth_method;            // the method tether authenticated with, if any
  std::uint64_t ignored_updates = 0;  // unknown kinds, malformed, or for no session we know
  std::uint64_t late_updates = 0;     // chunks and tool calls that came when no turn was in flight
  std::uint64_t stray_lines = 0;      // lines on the agent's stdout that were not JSON
  nlohmann::json server;              // via_server: the initialize answer's _meta.tether
  bool on_main = false;               // via_server: the session is the server's main session
};

class Turn;
class SessionCore;  // the machinery, in session.cpp
struct TurnState;

class AcpSession {
 public:
  AcpSession(supervisor::Bridge& bridge, ClientOptions options);
  ~AcpSession();  // a turn still in flight is cancelled (session/cancel); nothing blocks
  AcpSession(const AcpSession&) = delete;
  AcpSession& operator=(const AcpSession&) = delete;

  // The handshake and session/new. Blocks until the session is ready (nothing returned), it
  // failed, `deadline` passed (a failed event with code timeout) or `interrupt_fd` became readable
  // (code cancelled; the fd is not read). The bridge must have been started.
  // `on_wait`, when given, is called at least once a second while it waits (a front-end's
  // "still waiting" line).
  std::optional<TurnEvent> open(base::Deadline deadline, int interrupt_fd = -1,
                                const std::function<void()>& on_wait = {});

  // Replaces the session with a fresh one (session/new) on the connection as it is: no second
  // initialize while the agent runs. The old session's state (id, commands, mode, title, usage)
  // is dropped; the agent's (info, capabilities) is kept. Meant for between turns: a turn still
  // prompting is cancelled (caller_gone); turns started afterwards run in the new session.
  // start_new_session() never blocks (a prompt started after it waits for the session);
  // new_session() then waits for it as open() does, with the same results.
  void start_new_session();
  std::optional<TurnEvent> new_session(base::Deadline deadline, int interrupt_fd = -1);

  // Switches to the session `id` (talk's /load) on the connection as it is, as open() continues
  // ClientOptions::session_id: session/resume, else session/load; the old session is closed as by
  // start_new_session(). Blocks as new_session() does. An agent that can do neither: tether's
  // error object (agent_error) at once, and the session is left as it was. The agent refusing the
  // id: its failure, and the session is then gone (the front-end starts a new one).
  std::optional<TurnEvent> load_session(const std::string& id, base::Deadline deadline, int interrupt_fd = -1);

  // Closes the session at the agent (session/close) when it advertises that, and waits for the
  // answer until `deadline`; a turn still in flight is cancelled first. Afterwards the session
  // has no id and takes no prompts. True when the agent answered. Never sends anything through a
  // tether server (the server closes what its clients leave) or to an agent that cannot close.
  bool close(base::Deadline deadline);

  // Changes the session's mode or a config option now (talk's /mode, /model, /set), and keeps the
  // setting for later re-establishments. The request's answer comes from poll() as a
  // TurnEvent::reply with the returned id; the state is updated when it succeeds. Nothing to send
  // (already so): 0. An id the agent does not offer: tether's error object (code usage).
  std::variant<std::uint64_t, nlohmann::json> change_settings(const SessionSettings& change);

  // Starts a turn with one text block (or the given content blocks). `timeout` bounds the whole
  // turn, retries included (zero: none).
  Turn prompt(std::string text, base::Duration timeout = base::Duration::zero());
  Turn prompt_blocks(nlohmann::json content, base::Duration timeout = base::Duration::zero());
  // Content that depends on what the agent accepts (attachments: promptCapabilities), built when
  // the prompt is first sent, so after the handshake; a retry sends the same blocks. A sentence
  // instead fails the turn with tether's error object, code bad_input, and nothing is sent.
  using ContentBuilder = std::function<std::variant<nlohmann::json, std::string>(const SessionState&)>;
  Turn prompt_built(ContentBuilder build, base::Duration timeout = base::Duration::zero());

  // Between turns: handles what the bridge sent meanwhile (state updates, requests, a restart's
  // re-handshake) and returns notices, replies to request(), and (via_server) other clients'
  // updates and the permission requests routed to us. Never blocks.
  std::vector<TurnEvent> poll();
  // What poll() would return of what was already received, without reading more: for a front-end
  // that drives a turn (whose poll() reads the events) and wants the session's notices after it.
  std::vector<TurnEvent> take_notices();
  // Answers a pending permission request (policy ask) by its token, whether a turn or poll()
  // delivered it, with one of its offered options or cancelled (nothing). False when the token is
  // not pending or the option was not offered.
  bool answer_permission(std::uint64_t token, const std::optional<std::string>& option_id);
  // Sends a request that is not part of ACP (a tether server's _tether/status, _tether/restart).
  // Its answer comes from poll() as a TurnEvent::reply carrying the id returned here. Never blocks.
  std::uint64_t request(std::string_view method, nlohmann::json params);
  int fd() const;  // readable while the bridge has events waiting
  // Call poll() by then even if fd() stays quiet: a timer, or at once when a turn's poll() set
  // aside events for this poll() (fd() does not announce those).
  base::Deadline next_deadline() const;

  const SessionState& state() const;
  // The output kept so far for one of the agent's live terminals (--allow-terminal), for a
  // renderer of a tool call's `terminal` content: raw agent-controlled bytes, to be sanitized
  // before they reach a screen. Nothing for an unknown or released terminal, or without terminals.
  std::optional<std::string> terminal_output(std::string_view terminal_id) const;

 private:
  std::unique_ptr<SessionCore> core_;
};

class Turn {
 public:
  Turn(Turn&& other) noexcept;
  Turn& operator=(Turn&&) = delete;
  ~Turn();  // an unfinished turn is cancelled (caller_gone) and finished by the session unseen

  int fd() const;                         // poll for readability
  base::Deadline next_deadline() const;   // call poll() by then even if fd() stays quiet
  std::vector<TurnEvent> poll();          // what is available now, in wire order; never blocks
  // Convenience for simple callers: poll() until something arrives, `deadline` passes, or
  // `interrupt_fd` is readable (not read).
  std::vector<TurnEvent> wait(base::Deadline deadline, int interrupt_fd = -1);

  // Cancels the turn: session/cancel, pending permissions answered `cancelled`, and the turn
  // ends on the agent's final response, or after the grace period with the bridge recycled.
  void cancel(CancelCause cause);
  // Answers a pending permission request (policy ask) with one of its offered options, or
  // cancelled (nothing). False when the token is not pending or the option was not offered.
  bool answer_permission(std::uint64_t token, const std::optional<std::string>& option_id);
  bool finished() const;

 private:
  friend class AcpSession;
  Turn(SessionCore* core, std::shared_ptr<TurnState> state) : core_(core), state_(std::move(state)) {}
  SessionCore* core_;
  std::shared_ptr<TurnState> state_;
};

}  // namespace tether::acp
