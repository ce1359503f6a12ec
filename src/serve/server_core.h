// The server's machinery, shared by the files of serve/ that implement it (not an interface for
// anyone else: serve/server.h is). One Server object serves one socket and one bridge.
//
// One thread (the process's main thread) owns everything: the listening socket, every client's
// socket, buffer and state, the session table and the routing tables. It polls them together with
// the bridge's event queue and the signal fd. The client table is confined to this thread, which
// is the one lock that guards it: nothing else can see a client half made or half gone, a
// connection accepted during shutdown is closed by the same loop that shuts down, and a send to a
// client that is already closed is a `false`, never a write to a recycled fd (clients are named by
// a number that is never reused, not by their fd).
//
// Toward the bridge the server is an ACP client of its own (initialize, session/new for the main
// session, authenticate when asked, the main session's --mode/--model/--set, session/resume,
// session/load or session/new after each restart), built on the supervised Bridge like every other
// front-end: it never touches a bridge fd. Every setup request and every reading of a setup answer
// is acp/setup.h's, as for AcpSession. A session the agent can close is closed when its last client
// leaves it (the main session lives as long as the server).
//
// Where each part is: server_loop.cpp (the poll loop, timers, shutdown), clients.cpp (sockets,
// buffers, a client leaving), client_requests.cpp (what clients send: routing, the turn queue),
// bridge_events.cpp (what the bridge sends: responses, updates, its questions to clients),
// bridge_setup.cpp (the second ACP client: the bridge's session setup after every start).
//
// Thread contract: thread-bound.
#pragma once

#include <sys/types.h>

#include <algorithm>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/outcome.h"
#include "acp/setup.h"
#include "base/clock.h"
#include "base/unique_fd.h"
#include "rpc/line_framer.h"
#include "rpc/message.h"
#include "serve/protocol.h"
#include "serve/server.h"
#include "supervisor/bridge.h"

namespace tether::serve {

using base::Deadline;
using base::UniqueFd;
using rpc::json;

// A client whose unsent output passes this stops the server reading the bridge (backpressure
// rather than loss) ...
inline constexpr std::size_t kClientHighWater = std::size_t{1} << 20;
// ... and is disconnected when it then reads nothing for this long: one client that stopped
// reading must not stall the others for ever.
inline constexpr auto kStuckClient = std::chrono::seconds(10);
inline constexpr auto kSetupTimeout = std::chrono::seconds(30);
// A turn cancelled because its client left gets this long to end before its session moves on.
inline constexpr auto kOrphanGrace = std::chrono::seconds(5);
inline constexpr std::size_t kReadBurst = 64 * 1024;
inline constexpr std::size_t kMaxDeferred = 10000;  // requests waiting for a restarting bridge

struct Client {
  std::uint64_t id = 0;
  UniqueFd fd;
  rpc::LineFramer framer;
  std::string out;
  std::size_t out_off = 0;
  bool dead = false;
  bool fs_read = false, fs_write = false;  // what it advertised in initialize
  base::TimePoint stuck_since{};  // over the high-water mark without progress since then

  explicit Client(std::size_t max_line) : framer(max_line) {}
  std::size_t unsent() const { return out.size() - out_off; }
};

// A request to the bridge is known by its generation and id: each generation numbers from 1, and
// the closed replies of a dead one may still be queued when its successor is asked something.
struct CallKey {
  std::uint64_t generation = 0;
  std::int64_t id = 0;
  bool operator==(const CallKey&) const = default;
};
struct CallKeyHash {
  std::size_t operator()(const CallKey& k) const {
    return std::hash<std::int64_t>()(k.id) ^ (std::hash<std::uint64_t>()(k.generation) << 1);
  }
};

struct QueuedPrompt {
  std::uint64_t client = 0;
  json id;
  json params;
};

struct Session {
  std::string public_id;  // what clients use: the id of the bridge session it started as
  std::string bridge_id;  // the id at the bridge now (a new one after a restart that lost it)
  std::string cwd;
  json mcp_servers = json::array();
  bool main = false;
  bool loading = false;   // session/load under way at the bridge: its updates are a replay
  std::vector<std::uint64_t> attached;  // in attach order: back() is the most recent
  std::deque<QueuedPrompt> queue;
  // The turn at the bridge, if any.
  bool busy = false;
  std::uint64_t turn_client = 0;  // 0: its client left (the turn is being cancelled)
  bool told_elsewhere = false;    // the sender heard, this turn, that a question went elsewhere
  CallKey turn_call;
  // A session/load a client asked for, under way: who else waits for it.
  std::optional<CallKey> load_call;
  std::vector<std::pair<std::uint64_t, json>> load_waiters;
  Deadline orphan_until = Deadline::never();
  std::map<std::string, json> state_updates;  // the last update of each state kind, for new attachers
  // The session's modes and configOptions as its setup answer gave them (kept current by the
  // agent's mode and config option updates): the answer to a client that attaches, so that its
  // --mode/--model/--set know what the agent offers.
  json settings = json::object();
  void keep_settings(const json& answer) {
    if (!answer.is_object()) return;
    for (const char* k : {"modes", "configOptions"})
      if (answer.contains(k)) settings[k] = answer[k];
  }

  std::uint64_t active() const { return attached.empty() ? 0 : attached.back(); }
  bool has(std::uint64_t c) const { return std::find(attached.begin(), attached.end(), c) != attached.end(); }
  void detach(std::uint64_t c) { attached.erase(std::remove(attached.begin(), attached.end(), c), attached.end()); }
};

// A request we sent the bridge, and whom its response is for.
struct Call {
  enum class Kind { setup, prompt, forward, new_session, load_session };
  Kind kind = Kind::forward;
  std::uint64_t client = 0;
  json client_id;
  std::string session;   // public id (prompt, load_session, setup)
  std::string step;      // setup: "initialize", "session/new", "session/load"
  json params;           // new_session: what re-creates the session after a restart (cwd, mcpServers)
  std::uint64_t generation = 0;  // the generation set up when it was sent (link_gen_)
};

// A request of the bridge routed to a client under an id of ours.
struct Routed {
  std::uint64_t client = 0;
  std::uint64_t generation = 0;
  json bridge_id;
  std::string method;
  std::string session;  // public id ("" when it named none)
  json params;          // as sent to the client (for a hand-over)
};

struct ClientRequest {
  std::uint64_t client = 0;
  json message;
};

class Server {
 public:
  Server(const ServerOptions& o, SocketLocation where, UniqueFd listener, ino_t inode, UniqueFd lock,
         const SignalSource& signals, supervisor::Bridge& bridge)
      : o_(o), where_(std::move(where)), listener_(std::move(listener)), inode_(inode), lock_(std::move(lock)),
        signals_(signals), bridge_(bridge), settings_(o.settings) {}

  // Serves until stopped; the bridge is stopped and the socket gone when it returns.
  ServeResult run();

 private:
  enum class Link { setting_up, ready, down, gone };

  void log(std::string_view line) const {
    if (o_.log) o_.log(line);
  }

  // --- the loop and shutdown (server_loop.cpp) ---------------------------------------------------
  void timers();
  Deadline next_deadline() const;
  void begin_shutdown(std::uint64_t stopper, json stopper_id);
  bool is_stopper(std::uint64_t c) const {
    return std::any_of(stoppers_.begin(), stoppers_.end(), [&](const auto& s) { return s.first == c; });
  }
  void finish_shutdown();
  bool close_all_sessions();

  // --- clients (clients.cpp) ---------------------------------------------------------------------
  void accept_clients();
  void read_client(Client& c);
  void flush(Client& c);
  void flush_all();
  bool send(std::uint64_t client, const std::string& line);
  bool send_json(std::uint64_t client, const json& msg) { return send(client, rpc::dump(msg)); }
  void reply(std::uint64_t client, const json& id, json result) { send_json(client, rpc::make_result(id, std::move(result))); }
  void reply_error(std::uint64_t client, const json& id, int code, std::string_view message, json data = nullptr) {
    send_json(client, rpc::make_error(id, code, message, std::move(data)));
  }
  void reply_tether_error(std::uint64_t client, const json& id, const json& error) {
    reply_error(client, id, protocol::kServerError, rpc::string_of(error, "message"), error);
  }
  void broadcast(const std::string& method, json params);
  void sweep_dead();
  void drop_client(std::uint64_t id);
  // Before a dead client's questions are handed over: the answers it sent before it went, still in
  // its socket or its framer, count (it may have answered and closed at once, and a write to it
  // failed before its input was read). Everything else it sent goes with it.
  void salvage_answers(Client& c);
  Client* client(std::uint64_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() || it->second->dead ? nullptr : it->second.get();
  }
  // Client `id` leaves session `s` (it disconnected, or detached): its queued prompts go, its
  // turn is cancelled, and what it was asked for the session goes to another client.
  void leave_session(Session& s, std::uint64_t id, std::string_view why);
  void forget_session_if_unused(const std::string& public_id);

  // --- what clients send (client_requests.cpp) ----------------------------------------------------
  void on_client_line(Client& c, std::string_view line);
  void on_client_request(std::uint64_t c, json& msg);
  bool on_server_request(std::uint64_t c, const json& id, const std::string& method, const json& params);
  void answer_initialize(std::uint64_t c, const json& id, const json& params);
  void load_at_bridge(std::uint64_t c, const json& id, const std::string& sid, json params);
  void on_session_request(std::uint64_t c, const json& id, const std::string& method, json params);
  void on_client_notification(std::uint64_t c, const json& msg);
  void on_client_response(std::uint64_t c, const json& msg);
  void attach(Session& s, std::uint64_t c);
  void forward(std::uint64_t c, const json& id, const std::string& method, json params, Call call);
  CallKey send_call(const std::string& method, json params, Call call);
  void pump(Session& s);
  void cancel_turn(Session& s, std::uint64_t by_client);
  void withdraw_permissions(const std::string& session, std::uint64_t except_client);
  json status_json();

  // --- what the bridge sends (bridge_events.cpp) ---------------------------------------------------
  void on_bridge_events();
  void on_bridge_status(const rpc::Event& ev);
  void on_bridge_exited(const rpc::Event& ev);
  void on_bridge_response(rpc::Event& ev);
  void on_new_session_answer(const Call& call, const rpc::Reply& r);
  void on_load_answer(const Call& call, const CallKey& key, const rpc::Reply& r);
  void reply_to(const Call& call, const rpc::Reply& r);  // the bridge's answer, to the client that asked
  void on_bridge_notification(rpc::Event& ev);
  void on_bridge_request(rpc::Event& ev);
  // Who answers a question of the bridge's about session `s`: the turn's client while it is
  // attached and can answer, else the most recently attached one that can; 0 when none can.
  std::uint64_t answerer(const Session& s, const std::string& method);
  bool can_answer(std::uint64_t client, const std::string& method);
  void route(Routed r);
  void answer_unroutable(const Routed& r, std::string_view why);

  // --- the bridge's session setup (bridge_setup.cpp) -------------------------------------------------
  void begin_setup(std::uint64_t generation);
  void setup_next();
  void setup_call(const std::string& method, json params, std::string session);
  void on_setup_reply(const Call& call, const rpc::Reply& reply);
  void on_setup_initialized(const rpc::Reply& r);
  void on_setup_new_session(const rpc::Reply& r, Session* s);
  void on_setup_reopened(const Call& call, const rpc::Reply& r, Session* s);
  bool setup_authenticate(const Call& call, const json& err);
  void plan_main_settings(const json& answer);
  std::string main_session_bridge_id();
  void setup_failed(const std::string& why);
  void link_ready();
  void link_gone(const std::string& message);
  void replay_deferred();

  Session* session(const std::string& public_id) {
    auto it = sessions_.find(public_id);
    return it == sessions_.end() ? nullptr : &it->second;
  }
  Session* session_by_bridge_id(const std::string& bridge_id) {
    auto it = by_bridge_id_.find(bridge_id);
    return it == by_bridge_id_.end() ? nullptr : session(it->second);
  }
  json gone_error() const { return acp::error_object("restart_limit", gone_message_); }

  const ServerOptions& o_;
  SocketLocation where_;
  UniqueFd listener_;
  ino_t inode_;
  UniqueFd lock_;
  const SignalSource& signals_;
  supervisor::Bridge& bridge_;

  std::map<std::uint64_t, std::unique_ptr<Client>> clients_;
  std::uint64_t next_client_ = 0;
  std::map<std::string, Session> sessions_;
  std::unordered_map<std::string, std::string> by_bridge_id_;
  std::string main_session_;
  std::unordered_map<CallKey, Call, CallKeyHash> calls_;  // what we asked the bridge
  std::unordered_map<std::int64_t, Routed> routed_;  // by our request id at the client
  std::int64_t next_routed_ = 0;
  bool reading_paused_ = false;  // the bridge's events are not read (backpressure)
  // While on_bridge_events() handles a batch of the bridge's events, send() only queues: each client
  // gets the batch's lines in one write at its end (a turn's chunks come in batches), not one
  // write, and one wake-up of the client, per line.
  bool holding_output_ = false;
  std::vector<ClientRequest> deferred_;  // wait for the link
  std::vector<std::string> turn_ended_;  // sessions whose turn ended in this batch: pumped after it
  std::vector<std::pair<std::uint64_t, json>> restart_waiters_;
  std::uint64_t restart_from_gen_ = 0;

  Link link_ = Link::setting_up;
  bool ever_ready_ = false;
  std::uint64_t link_gen_ = 0;
  json init_result_;
  bool bridge_loads_ = false;
  acp::AgentProfile profile_;   // what the bridge's agent offers (resume, close, auth methods)
  json main_mcp_ = json::array();  // the main session's mcpServers (ServerOptions::mcp as the agent takes them)
  acp::SessionSettings settings_;  // --mode/--model/--set for the main session
  std::deque<acp::SettingRequest> setting_todo_;  // setup: the main session's settings to send
  bool auth_tried_ = false;     // setup: authenticate was sent on this generation
  json auth_redo_;              // setup: the request that asked for it ({method, params, session})
  int startup_exit_ = acp::kExitUnavailable;
  std::vector<std::string> setup_todo_;  // public ids still to re-establish
  bool sessions_restored_ = true;
  Deadline setup_deadline_ = Deadline::never();
  std::string last_cause_, last_stderr_line_;
  std::string gone_message_;
  std::string startup_error_;

  Deadline accept_paused_until_ = Deadline::never();
  bool shutting_down_ = false;
  int exit_signal_ = 0;
  std::vector<std::pair<std::uint64_t, json>> stoppers_;  // who asked for the stop, answered last
};

}  // namespace tether::serve
