// `tether serve`: the server loop. The wire contract is in serve.h; here is how it is kept.
//
// One thread (the process's main thread) owns everything: the listening socket, every client's
// socket, buffer and state, the session table and the routing tables. It polls them together with
// the bridge's event queue and the signalfd. The client table is confined to this thread, which is
// the one lock that guards it: nothing else can see a client half made or half gone, a connection
// accepted during shutdown is closed by the same loop that shuts down, and a send to a client that
// is already closed is a `false`, never a write to a recycled fd (clients are named by a number
// that is never reused, not by their fd).
//
// Toward the bridge the server is an ACP client of its own (initialize, session/new for the main
// session, authenticate when asked, the main session's --mode/--model/--set, session/resume,
// session/load or session/new after each restart), built on the supervised Bridge like every other
// front-end: it never touches a bridge fd. Every setup request and every reading of a setup answer
// is acp/setup.h's, as for AcpSession. A session the agent can close is closed when its last client
// leaves it (the main session lives as long as the server).
#include "cli/serve.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <variant>
#include <cstring>

#include "acp/outcome.h"
#include "acp/permission.h"
#include "acp/setup.h"
#include "base/byte_ring.h"
#include "base/signals.h"
#include "base/unique_fd.h"
#include "cli/socket_path.h"
#include "cli/terminal_text.h"
#include "rpc/line_framer.h"
#include "rpc/message.h"
#include "supervisor/bridge.h"
#include "tether_config.h"

namespace tether::cli {
namespace {

using base::Clock;
using base::Deadline;
using base::UniqueFd;
using rpc::json;

using acp::kProtocolVersion;
// JSON-RPC error code of the server's own failures, tether's error object in `data`.
constexpr int kTetherError = rpc::kTetherServerError;
// A client whose unsent output passes this stops the server reading the bridge (backpressure
// rather than loss) ...
constexpr std::size_t kClientHighWater = std::size_t{1} << 20;
// ... and is disconnected when it then reads nothing for this long: one client that stopped
// reading must not stall the others for ever.
constexpr auto kStuckClient = std::chrono::seconds(10);
constexpr auto kSetupTimeout = std::chrono::seconds(30);
// A turn cancelled because its client left gets this long to end before its session moves on.
constexpr auto kOrphanGrace = std::chrono::seconds(5);
constexpr std::size_t kReadBurst = 64 * 1024;
constexpr std::size_t kMaxDeferred = 10000;  // requests waiting for a restarting bridge
constexpr int kListenBacklog = 128;

// Where log lines go: stderr, through a non-blocking file description of its own when stderr is
// a pipe or terminal (set up by run_serve), so that a reader that stalls costs log lines, never
// the one thread that serves every client.
int g_log_fd = STDERR_FILENO;

void log_line(std::string_view text) {
  // Lines quote the agent and the bridge (its stdout lines, error messages, stderr lines).
  std::string line = "tether serve: " + for_terminal(g_log_fd, text) + "\n";
  [[maybe_unused]] auto w = ::write(g_log_fd, line.data(), line.size());
}

using rpc::member;
using rpc::string_of;

json tether_error(std::string code, std::string message) {
  return {{"code", std::move(code)}, {"message", std::move(message)}};
}

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
  std::vector<std::uint64_t> attached;  // in attach order: back() is the active client
  std::deque<QueuedPrompt> queue;
  // The turn at the bridge, if any.
  bool busy = false;
  std::uint64_t turn_client = 0;  // 0: its client left (the turn is being cancelled)
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
  Server(ServeOptions& o, SocketLocation where, UniqueFd listener, ino_t inode, UniqueFd lock, UniqueFd sigfd,
         supervisor::Bridge& bridge)
      : o_(o), where_(std::move(where)), listener_(std::move(listener)), inode_(inode), lock_(std::move(lock)),
        sigfd_(std::move(sigfd)), bridge_(bridge) {
    session_settings(o_.common, settings_);  // checked by run_serve already
  }

  int run();

 private:
  enum class Link { setting_up, ready, down, gone };

  // --- clients ---------------------------------------------------------------------------------
  void accept_clients();
  void read_client(Client& c);
  void flush(Client& c);
  bool send(std::uint64_t client, const std::string& line);
  bool send_json(std::uint64_t client, const json& msg) { return send(client, rpc::dump(msg)); }
  void reply(std::uint64_t client, const json& id, json result) { send_json(client, rpc::make_result(id, std::move(result))); }
  void reply_error(std::uint64_t client, const json& id, int code, std::string_view message, json data = nullptr) {
    send_json(client, rpc::make_error(id, code, message, std::move(data)));
  }
  void reply_tether_error(std::uint64_t client, const json& id, const json& error) {
    reply_error(client, id, kTetherError, string_of(error, "message"), error);
  }
  void broadcast(const std::string& method, json params);
  void sweep_dead();
  void drop_client(std::uint64_t id);
  Client* client(std::uint64_t id) {
    auto it = clients_.find(id);
    return it == clients_.end() || it->second->dead ? nullptr : it->second.get();
  }

  // --- what clients send -------------------------------------------------------------------------
  void on_client_line(Client& c, std::string_view line);
  void on_client_request(std::uint64_t c, json& msg);
  void on_client_notification(std::uint64_t c, const json& msg);
  void on_client_response(std::uint64_t c, const json& msg);
  void attach(Session& s, std::uint64_t c);
  void forward(std::uint64_t c, const json& id, const std::string& method, json params, Call call);
  CallKey send_call(const std::string& method, json params, Call call);
  void pump(Session& s);
  void cancel_turn(Session& s, std::uint64_t by_client);
  void withdraw_permissions(const std::string& session, std::uint64_t except_client);
  json status_json();

  // --- what the bridge sends ---------------------------------------------------------------------
  void on_bridge_events();
  void on_bridge_status(const rpc::Event& ev);
  void on_bridge_response(rpc::Event& ev);
  void reply_to(const Call& call, const rpc::Reply& r);  // the bridge's answer, to the client that asked
  void on_bridge_notification(rpc::Event& ev);
  void on_bridge_request(rpc::Event& ev);
  void route(Routed r);
  void answer_unroutable(const Routed& r, std::string_view why);

  // --- the bridge's session setup ----------------------------------------------------------------
  void begin_setup(std::uint64_t generation);
  void setup_next();
  void setup_call(const std::string& method, json params, std::string session);
  void on_setup_reply(const Call& call, const rpc::Reply& reply);
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
  void forget_session_if_unused(const std::string& public_id);
  // Client `id` leaves session `s` (it disconnected, or detached): its queued prompts go, its
  // turn is cancelled, and what it was asked for the session goes to the next active client.
  void leave_session(Session& s, std::uint64_t id, std::string_view why);
  json gone_error() const { return tether_error("restart_limit", gone_message_); }

  void begin_shutdown(std::uint64_t stopper, json stopper_id);
  bool is_stopper(std::uint64_t c) const {
    return std::any_of(stoppers_.begin(), stoppers_.end(), [&](const auto& s) { return s.first == c; });
  }
  void finish_shutdown();
  bool close_all_sessions();

 public:
  int exit_signal() const { return exit_signal_; }

 private:
  void timers();
  Deadline next_deadline() const;

  ServeOptions& o_;
  SocketLocation where_;
  UniqueFd listener_;
  ino_t inode_;
  UniqueFd lock_;
  UniqueFd sigfd_;
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
  acp::SessionSettings settings_;  // --mode/--model/--set for the main session
  std::deque<acp::SettingRequest> setting_todo_;  // setup: the main session's settings to send
  bool auth_tried_ = false;     // setup: authenticate was sent on this generation
  json auth_redo_;              // setup: the request that asked for it ({method, params, session})
  int startup_exit_ = kExitUnavailable;
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

// --- the loop -----------------------------------------------------------------------------------

int Server::run() {
  for (;;) {
    std::vector<pollfd> p;
    std::vector<std::uint64_t> who;  // client id per pollfd from index 3
    p.push_back({sigfd_.get(), POLLIN, 0});
    p.push_back({listener_ && accept_paused_until_.is_never() ? listener_.get() : -1, POLLIN, 0});
    bool paused = false;
    for (auto& [id, c] : clients_)
      if (!c->dead && c->unsent() > kClientHighWater) paused = true;
    reading_paused_ = paused;
    p.push_back({paused ? -1 : bridge_.events()->fd(), POLLIN, 0});
    for (auto& [id, c] : clients_) {
      if (c->dead) continue;
      // A client that does not read what it is sent is not read either (its requests would only
      // pile more output on it).
      short ev = c->unsent() > kClientHighWater ? 0 : POLLIN;
      if (c->unsent() > 0) ev |= POLLOUT;
      p.push_back({c->fd.get(), ev, 0});
      who.push_back(id);
    }
    int r = ::poll(p.data(), p.size(), next_deadline().poll_timeout_ms());
    if (r < 0 && errno != EINTR) {
      log_line(std::string("poll failed: ") + strerror(errno));
      return kExitSoftware;
    }
    if (r > 0) {
      if (p[0].revents) {
        if (int sig = read_signal(sigfd_.get()); sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
          log_line("stopping on " + base::signal_name(sig));
          exit_signal_ = sig;
          begin_shutdown(0, nullptr);
        }
      }
      if (p[1].revents && listener_) accept_clients();
      if (p[2].revents) on_bridge_events();
      for (std::size_t i = 3; i < p.size(); ++i) {
        Client* c = client(who[i - 3]);
        if (!c || !p[i].revents) continue;
        if (p[i].revents & POLLOUT) flush(*c);
        if (p[i].revents & (POLLIN | POLLHUP | POLLERR)) read_client(*c);
      }
    }
    timers();
    sweep_dead();
    if (!startup_error_.empty()) {
      error_line(startup_error_);
      finish_shutdown();
      return startup_exit_;
    }
    if (shutting_down_) break;
  }
  finish_shutdown();
  return kExitOk;
}

void Server::finish_shutdown() {
  shutting_down_ = true;
  // The name first: no new connection, and a new server may take the name once the lock is free.
  listener_.reset();
  struct stat st;
  if (::lstat(where_.path.c_str(), &st) == 0 && st.st_ino == inode_) ::unlink(where_.path.c_str());
  for (auto& [id, c] : clients_)
    if (!is_stopper(id)) c->fd.reset();
  // The agent's open questions first (their clients are gone): an agent that waits on one would
  // not answer session/close.
  for (auto& [rid, r] : std::exchange(routed_, {})) answer_unroutable(r, "the server is stopping");
  if (close_all_sessions()) bridge_.stop(kClosedGrace);
  else bridge_.stop();
  lock_.reset();
  // Those who asked for the stop hear of it last, when the name is free again: their
  // `tether serve --stop && tether serve` cannot find the old server still holding the name.
  // One that does not read gets a second, then is closed anyway.
  auto until = Deadline::after(std::chrono::seconds(1));
  for (auto& [cid, rid] : stoppers_) {
    Client* c = client(cid);
    if (!c) continue;
    c->out += rpc::dump(rpc::make_result(rid, json::object())) + "\n";
    while (c->unsent() > 0 && !c->dead && !until.expired()) {
      pollfd p{c->fd.get(), POLLOUT, 0};
      if (::poll(&p, 1, until.poll_timeout_ms()) <= 0) break;
      flush(*c);
    }
  }
  clients_.clear();
}

// At shutdown: session/close for every session the agent still has open (the main one too), when
// it can close sessions, and their answers awaited (kCloseWait at most). True when the agent has
// nothing open any more, so the bridge need not get its whole grace to exit.
bool Server::close_all_sessions() {
  if (link_ != Link::ready || !profile_.close) return false;
  std::vector<CallKey> waiting;
  for (auto& [id, s] : sessions_) {
    CallKey key;
    key.id = bridge_.call_queued_to(link_gen_, "session/close", {{"sessionId", s.bridge_id}}, &key.generation);
    waiting.push_back(key);
  }
  auto until = Deadline::after(kCloseWait);
  std::size_t answered = 0;
  while (answered < waiting.size() && !until.expired()) {
    pollfd p{bridge_.events()->fd(), POLLIN, 0};
    ::poll(&p, 1, until.poll_timeout_ms());
    for (auto& ev : bridge_.events()->drain()) {
      if (ev.kind == rpc::Event::Kind::request) answer_unroutable({0, ev.generation, ev.message["id"], string_of(ev.message, "method"), "", {}}, "the server is stopping");
      if (ev.kind != rpc::Event::Kind::response) continue;
      CallKey key{ev.generation, ev.call_id};
      if (std::find(waiting.begin(), waiting.end(), key) != waiting.end()) ++answered;
    }
  }
  return answered == waiting.size();
}

Deadline Server::next_deadline() const {
  Deadline d = Deadline::earliest(setup_deadline_, accept_paused_until_);
  for (auto& [id, s] : sessions_) d = Deadline::earliest(d, s.orphan_until);
  for (auto& [id, c] : clients_)
    if (!c->dead && c->unsent() > kClientHighWater) d = Deadline::earliest(d, Deadline::after(std::chrono::seconds(1)));
  return d;
}

void Server::timers() {
  if (accept_paused_until_.expired()) accept_paused_until_ = Deadline::never();
  if (link_ == Link::setting_up && setup_deadline_.expired()) {
    setup_deadline_ = Deadline::never();
    setup_failed("the bridge did not complete the ACP handshake within 30 s");
  }
  std::vector<std::string> moved_on;
  for (auto& [id, s] : sessions_) {
    if (s.busy && s.turn_client == 0 && s.orphan_until.expired()) {
      // Its client is gone and the bridge did not end the cancelled turn: the session moves on;
      // the turn's response, if it ever comes, is dropped (its call is still known).
      log_line("session " + id + ": a cancelled turn did not end within 5 s; the session moves on");
      s.busy = false;
      s.orphan_until = Deadline::never();
      pump(s);
      moved_on.push_back(id);
    }
  }
  for (auto& id : moved_on) forget_session_if_unused(id);
  auto now = Clock::now();
  for (auto& [id, c] : clients_) {
    if (c->dead || c->unsent() <= kClientHighWater) continue;
    if (c->stuck_since == base::TimePoint{}) c->stuck_since = now;
    else if (now - c->stuck_since >= kStuckClient) {
      log_line("client " + std::to_string(id) + " does not read its socket (" + std::to_string(c->unsent() >> 10) +
               " KiB unsent for 10 s): disconnected");
      c->dead = true;
    }
  }
}

// --- clients ------------------------------------------------------------------------------------

void Server::accept_clients() {
  for (;;) {
    UniqueFd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // The listener stays readable while the connection waits: do not spin on it.
        log_line(std::string("cannot accept a connection: ") + strerror(errno) + "; trying again in 100 ms");
        accept_paused_until_ = Deadline::after(std::chrono::milliseconds(100));
      } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
        log_line(std::string("accept failed: ") + strerror(errno));
      }
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      log_line(std::string("refused a connection: cannot read its credentials: ") + strerror(errno));
      continue;
    }
    if (cred.uid != ::getuid()) {
      log_line("refused a connection from uid " + std::to_string(cred.uid) + " (pid " + std::to_string(cred.pid) +
               "): only uid " + std::to_string(::getuid()) + " may use this server");
      continue;
    }
    if (shutting_down_) continue;  // closed: the server is going away
    auto c = std::make_unique<Client>(o_.common.max_line);
    c->id = ++next_client_;
    c->fd = std::move(fd);
    if (o_.common.verbose > 0) log_line("client " + std::to_string(c->id) + " connected (pid " + std::to_string(cred.pid) + ")");
    clients_.emplace(c->id, std::move(c));
  }
}

void Server::read_client(Client& c) {
  char buf[kReadBurst];
  ssize_t n = ::read(c.fd.get(), buf, sizeof buf);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    if (auto rest = c.framer.finish()) on_client_line(c, *rest);
    c.dead = true;
    return;
  }
  c.framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
  const std::uint64_t id = c.id;
  while (Client* live = client(id)) {
    auto line = live->framer.next();
    if (!line) break;
    // The view dies with the next push/next: handlers copy what they keep.
    on_client_line(*live, *line);
  }
}

void Server::flush(Client& c) {
  while (c.unsent() > 0) {
    ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_off, c.unsent(), MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      c.stuck_since = {};
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    c.dead = true;  // EPIPE, ECONNRESET: it is gone
    return;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  } else if (c.out_off > (std::size_t{1} << 16) && c.out_off > c.out.size() / 2) {
    c.out.erase(0, c.out_off);
    c.out_off = 0;
  }
}

bool Server::send(std::uint64_t id, const std::string& line) {
  Client* c = client(id);
  if (!c) return false;
  c->out += line;
  c->out += '\n';
  flush(*c);
  return !c->dead;
}

void Server::broadcast(const std::string& method, json params) {
  std::string line = rpc::dump(rpc::make_notification(method, std::move(params)));
  for (auto& [id, c] : clients_)
    if (!c->dead) send(id, line);
}

void Server::sweep_dead() {
  // Dropping a client can hand its requests to another, whose send can fail in turn: repeat.
  for (;;) {
    std::uint64_t victim = 0;
    for (auto& [id, c] : clients_)
      if (c->dead) {
        victim = id;
        break;
      }
    if (!victim) return;
    drop_client(victim);
  }
}

void Server::drop_client(std::uint64_t id) {
  auto it = clients_.find(id);
  if (it == clients_.end()) return;
  it->second->dead = true;
  if (o_.common.verbose > 0) log_line("client " + std::to_string(id) + " disconnected");

  std::vector<std::string> touched;
  for (auto& [sid, s] : sessions_)
    if (s.has(id) || (s.busy && s.turn_client == id)) touched.push_back(sid);
  for (auto& sid : touched) leave_session(*session(sid), id, "the client that was asked disconnected");
  // Requests routed to it that named no session of its own are answered here.
  std::vector<std::int64_t> rest;
  for (auto& [rid, r] : routed_)
    if (r.client == id) rest.push_back(rid);
  for (std::int64_t rid : rest) {
    Routed r = std::move(routed_[rid]);
    routed_.erase(rid);
    answer_unroutable(r, "the client that was asked disconnected");
  }
  for (auto& [cid, call] : calls_)
    if (call.client == id) call.client = 0;  // its response is dropped when it comes
  std::erase_if(deferred_, [&](const ClientRequest& q) { return q.client == id; });
  std::erase_if(restart_waiters_, [&](const auto& w) { return w.first == id; });
  clients_.erase(it);
  for (auto& sid : touched) forget_session_if_unused(sid);
}

void Server::leave_session(Session& s, std::uint64_t id, std::string_view why) {
  const std::string sid = s.public_id;
  bool owns_turn = s.busy && s.turn_client == id;
  s.detach(id);
  for (auto q = s.queue.begin(); q != s.queue.end();) q = q->client == id ? s.queue.erase(q) : std::next(q);
  if (owns_turn) {
    // Its turn goes on without anyone to read it: stop it at the bridge.
    bridge_.notify("session/cancel", {{"sessionId", s.bridge_id}}, link_gen_);
    s.turn_client = 0;
    s.orphan_until = Deadline::after(kOrphanGrace);
    withdraw_permissions(sid, id);
  }
  // What the bridge asked it for this session: to the next active client, or answered here.
  std::vector<std::int64_t> mine;
  for (auto& [rid, r] : routed_)
    if (r.client == id && r.session == sid) mine.push_back(rid);
  std::sort(mine.begin(), mine.end());  // oldest first, as they were asked
  for (std::int64_t rid : mine) {
    Routed r = std::move(routed_[rid]);
    routed_.erase(rid);
    if (Client* c = client(id)) {
      // Still connected (it detached): it must not answer what is no longer its to answer.
      c->out += rpc::dump(rpc::make_notification("$/cancel_request", {{"requestId", rid}})) + "\n";
      flush(*c);
    }
    bool turn_cancelled = s.busy && s.turn_client == 0;
    if (s.active() && !turn_cancelled) route(std::move(r));
    else answer_unroutable(r, why);
  }
}

void Server::forget_session_if_unused(const std::string& public_id) {
  Session* s = session(public_id);
  if (!s || s->main || !s->attached.empty() || s->busy || !s->queue.empty() || s->load_call) return;
  // Nobody can reach it any more: forget it here, and close it at the agent when it can close
  // sessions (Claude keeps a 200+ MB process per open session). The answer goes to no one.
  if (profile_.close && link_ == Link::ready) send_call("session/close", {{"sessionId", s->bridge_id}}, Call{});
  by_bridge_id_.erase(s->bridge_id);
  sessions_.erase(public_id);
}

// --- what clients send --------------------------------------------------------------------------

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

void Server::on_client_request(std::uint64_t c, json& msg) {
  const json id = msg["id"];
  const std::string method = string_of(msg, "method");
  json params = msg.contains("params") ? msg["params"] : json::object();
  if (!params.is_object()) params = json::object();

  if (method == "$/ping") return reply(c, id, json::object());
  if (method == "_tether/status") return reply(c, id, status_json());
  if (method == "_tether/shutdown") return begin_shutdown(c, id);
  if (method == "_tether/restart") {
    if (!ever_ready_) return reply_error(c, id, rpc::kInternalError, "the server is still starting its bridge");
    log_line("restarting the bridge (asked by client " + std::to_string(c) + ")");
    restart_waiters_.emplace_back(c, id);
    // A give-up the bridge reported before this restart took effect must not fail its waiters:
    // only a failure of a generation started after it does.
    restart_from_gen_ = bridge_.status().generation;
    if (link_ == Link::gone) link_ = Link::down;
    bridge_.restart();
    return;
  }
  if (method == "authenticate") return reply(c, id, json::object());
  if (method == "_tether/detach") {
    Session* s = session(string_of(params, "sessionId"));
    if (!s || !s->has(c)) return reply_error(c, id, rpc::kInvalidParams, "Not attached to that session");
    std::string sid = s->public_id;
    leave_session(*s, c, "the client that was asked left the session");
    forget_session_if_unused(sid);
    return reply(c, id, json::object());
  }

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
      return reply_tether_error(c, id, tether_error("bridge_exited", "the bridge is restarting and too many requests wait for it"));
    deferred_.push_back({c, std::move(msg)});
    return;
  }

  if (method == "initialize") {
    json result = init_result_.is_object() ? init_result_ : json::object();
    result["protocolVersion"] = kProtocolVersion;
    json& caps = result["agentCapabilities"];
    if (!caps.is_object()) caps = json::object();
    // The server can always attach to a session it knows (session/load without a replay); it does
    // not offer what it does not route (listing, resuming, closing or deleting sessions).
    caps["loadSession"] = true;
    caps.erase("sessionCapabilities");
    result["authMethods"] = json::array();
    json& meta = result["_meta"];
    if (!meta.is_object()) meta = json::object();
    meta["tether"] = {{"mainSessionId", main_session_}, {"generation", link_gen_}, {"version", TETHER_VERSION}};
    if (Client* cl = client(c)) {
      const json* cc = member(params, "clientCapabilities");
      const json* fs = cc ? member(*cc, "fs") : nullptr;
      auto has = [&](const char* k) { const json* v = fs ? member(*fs, k) : nullptr; return v && v->is_boolean() && v->get<bool>(); };
      cl->fs_read = has("readTextFile");
      cl->fs_write = has("writeTextFile");
    }
    return reply(c, id, std::move(result));
  }
  if (method == "session/new") {
    Call call;
    call.kind = Call::Kind::new_session;
    call.params = params;
    return forward(c, id, method, std::move(params), std::move(call));
  }
  const std::string sid = string_of(params, "sessionId");
  Session* s = session(sid);
  if (method == "session/load") {
    if (!bridge_loads_) return reply_error(c, id, rpc::kInvalidParams, "Unknown session: " + sid);
    // A session the agent may have kept: load it at the bridge; the replay goes to this client.
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
    loading.load_call = send_call(method, std::move(params), std::move(call));
    return;
  }
  if (method == "session/list" || method == "session/resume" || method == "session/close" ||
      method == "session/delete")
    return reply_error(c, id, rpc::kMethodNotFound, "Method not found: " + method + " (not offered by tether serve)");
  if (method.rfind("session/", 0) == 0 && !sid.empty()) {
    if (!s) return reply_error(c, id, rpc::kInvalidParams, "Unknown session: " + sid);
    if (!s->has(c))
      return reply_error(c, id, rpc::kInvalidParams, "Not attached to session " + sid + " (session/load it first)");
    if (method == "session/prompt") {
      s->queue.push_back({c, id, std::move(params)});
      return pump(*s);
    }
    params["sessionId"] = s->bridge_id;
    return forward(c, id, method, std::move(params), Call{});
  }
  reply_error(c, id, rpc::kMethodNotFound, "Method not found: " + method);
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
  send_json(q.client, rpc::make_notification("_tether/turn_started", {{"sessionId", s.public_id}}));
  q.params["sessionId"] = s.bridge_id;
  Call call;
  call.kind = Call::Kind::prompt;
  call.client = q.client;
  call.client_id = q.id;
  call.session = s.public_id;
  s.busy = true;
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
            {"bridge", o_.common.bridge},
            {"socket", where_.path},
            {"serverPid", ::getpid()}};
  if (st.last_exit) j["lastExit"] = st.last_exit->to_json();
  if (!init_result_.is_null()) j["agentInfo"] = init_result_.value("agentInfo", json::object());
  return j;
}

// --- what the bridge sends ----------------------------------------------------------------------

void Server::on_bridge_events() {
  auto events = bridge_.events()->drain();
  for (auto& ev : events) {
    switch (ev.kind) {
      case rpc::Event::Kind::status: on_bridge_status(ev); break;
      case rpc::Event::Kind::output: log_line("the agent wrote on stdout: " + string_of(ev.message, "text")); break;
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
    log_line(last_cause_.empty() ? "the bridge stopped" : last_cause_);
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
    if (auto d = member(ev.message, "delayMs")) log_line("restarting the bridge in " + d->dump() + " ms");
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
  if (call.kind == Call::Kind::new_session && r.ok()) {
    std::string sid = string_of(r.value, "sessionId");
    if (!sid.empty() && !session(sid) && call.client) {
      Session s;
      s.public_id = s.bridge_id = sid;
      s.cwd = string_of(call.params, "cwd");
      if (const json* m = member(call.params, "mcpServers")) s.mcp_servers = *m;
      s.attached.push_back(call.client);  // the session's creator is its first, active client
      s.keep_settings(r.value);
      sessions_.emplace(sid, std::move(s));
      by_bridge_id_[sid] = sid;
    }
  }
  if (call.kind == Call::Kind::load_session) {
    Session* s = session(call.session);
    if (s && s->load_call == key) {
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
    if (call.client) reply_to(call, r);
    return forget_session_if_unused(call.session);  // its loader may have left meanwhile
  }

  if (call.client) reply_to(call, r);
  // The next turn of the session starts once this batch of the bridge's events is handled
  // (on_bridge_events): what the agent wrote after the response in the same read is the ended
  // turn's late output, and goes out before the next sender's _tether/turn_started.
  if (call.kind == Call::Kind::prompt) turn_ended_.push_back(call.session);
}

void Server::reply_to(const Call& call, const rpc::Reply& r) {
  switch (r.status) {
    case rpc::Reply::Status::result: reply(call.client, call.client_id, r.value); break;
    case rpc::Reply::Status::error: send_json(call.client, {{"jsonrpc", "2.0"}, {"id", call.client_id}, {"error", r.value}}); break;
    case rpc::Reply::Status::closed:
      reply_tether_error(call.client, call.client_id,
                         r.value.is_object() ? r.value : tether_error("bridge_exited", "the bridge is not running"));
      break;
    case rpc::Reply::Status::timeout:
    case rpc::Reply::Status::cancelled:
      reply_tether_error(call.client, call.client_id, tether_error("cancelled", "the request was cancelled"));
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

void Server::route(Routed r) {
  Session* s = session(r.session);
  r.client = s ? s->active() : 0;
  if (!r.client) return answer_unroutable(r, "no tether client is attached to the session");
  // A file request goes to the active client only if it said it serves files (ACP §4: never call
  // a method the client did not advertise).
  if (Client* c = client(r.client); c && ((r.method == "fs/read_text_file" && !c->fs_read) ||
                                          (r.method == "fs/write_text_file" && !c->fs_write))) {
    bridge_.respond_error(r.generation, r.bridge_id, rpc::kMethodNotFound,
                          "Method not found: " + r.method + " (the active tether client does not serve files)");
    return;
  }
  std::int64_t id = ++next_routed_;
  std::string line = rpc::dump(rpc::make_request(id, r.method, r.params));
  std::uint64_t to = r.client;
  routed_.emplace(id, std::move(r));
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

// --- the bridge's session setup -----------------------------------------------------------------

void Server::begin_setup(std::uint64_t generation) {
  link_gen_ = generation;
  link_ = Link::setting_up;
  setup_deadline_ = Deadline::after(kSetupTimeout);
  sessions_restored_ = true;
  setup_todo_.clear();
  setting_todo_.clear();
  auth_tried_ = false;
  setup_call("initialize", acp::initialize_params("tether-serve", TETHER_VERSION, o_.common.allow_fs), "");
}

void Server::setup_call(const std::string& method, json params, std::string session) {
  Call call;
  call.kind = Call::Kind::setup;
  call.step = method;
  call.session = std::move(session);
  call.params = params;
  send_call(method, std::move(params), std::move(call));
}

// session/new, load or resume answered auth_required: authenticate (with --auth, or an env_var
// method whose variables are set) and send it again, once per generation. False when that is
// not possible (then setup fails with the reason and the methods).
bool Server::setup_authenticate(const Call& call, const json& err) {
  if (!acp::is_auth_required(err) || auth_tried_) return false;
  auth_tried_ = true;
  auto choice = acp::choose_auth(profile_.auth_methods, o_.common.auth, [](const char* n) { return std::getenv(n); }, err);
  if (choice.method_id.empty()) {
    setup_failed(string_of(choice.error, "message"));
    return true;
  }
  auth_redo_ = {{"method", call.step}, {"params", call.params}, {"session", call.session}};
  log_line("the agent asks for authentication: using its method " + choice.method_id);
  setup_call("authenticate", {{"methodId", choice.method_id}}, "");
  return true;
}

void Server::on_setup_reply(const Call& call, const rpc::Reply& r) {
  // A reply of a generation that is already gone, or the closed reply that says this one is: the
  // next generation's "ready" starts the setup again.
  if (link_ != Link::setting_up || call.generation != link_gen_ || r.status == rpc::Reply::Status::closed) return;
  auto rpc_text = [&] {
    if (r.status == rpc::Reply::Status::error) return acp::rpc_error_text(r.value);
    return std::string("no answer");
  };
  if (call.step == "initialize") {
    if (!r.ok()) return setup_failed("the bridge refused initialize: " + rpc_text());
    auto read = acp::read_initialize(r.value);
    if (auto* err = std::get_if<json>(&read)) return setup_failed("the bridge does not speak ACP v1: " + string_of(*err, "message"));
    profile_ = std::get<acp::AgentProfile>(read);
    init_result_ = r.value;
    bridge_loads_ = profile_.load;
    if (main_session_.empty()) {
      setup_call("session/new", acp::new_session_params(o_.common.cwd, json::array()), "");
      return;
    }
    for (auto& [id, s] : sessions_) setup_todo_.push_back(id);
    return setup_next();
  }
  if (call.step == "authenticate") {
    if (!r.ok()) return setup_failed("authentication failed: " + rpc_text());
    setup_call(string_of(auth_redo_, "method"), auth_redo_["params"], string_of(auth_redo_, "session"));
    return;
  }
  if (call.step == "session/set_mode" || call.step == "session/set_config_option") {
    if (!r.ok()) return setup_failed("the agent refused the main session's " + call.step.substr(12) + ": " + rpc_text());
    if (Session* m = session(main_session_)) {
      if (call.step == "session/set_config_option") m->keep_settings(r.value);
      else if (m->settings.contains("modes") && m->settings["modes"].is_object())
        m->settings["modes"]["currentModeId"] = call.params.value("modeId", json());
    }
    return setup_next();
  }
  Session* s = call.session.empty() ? nullptr : session(call.session);
  if (!call.session.empty() && !s) return setup_next();  // its last client left meanwhile
  if (r.status == rpc::Reply::Status::error && setup_authenticate(call, r.value)) return;
  if (call.step == "session/new") {
    std::string sid = r.ok() ? string_of(r.value, "sessionId") : "";
    if (sid.empty()) {
      if (!s) return setup_failed("the bridge refused session/new: " + rpc_text());
      // A lost session that cannot be re-created: its clients keep the id; prompts will fail.
      sessions_restored_ = false;
      return setup_next();
    }
    if (!s) {  // the main session, first time (call.session is empty)
      Session m;
      m.public_id = m.bridge_id = sid;
      m.cwd = o_.common.cwd;
      m.main = true;
      main_session_ = sid;
      m.keep_settings(r.value);
      sessions_.emplace(sid, std::move(m));
      by_bridge_id_[sid] = sid;
      plan_main_settings(r.value);
      return setup_next();
    }
    by_bridge_id_.erase(s->bridge_id);
    s->bridge_id = sid;
    by_bridge_id_[sid] = s->public_id;
    s->keep_settings(r.value);
    sessions_restored_ = false;  // a fresh session: the agent lost the conversation
    if (s->main) plan_main_settings(r.value);
    return setup_next();
  }
  if (call.step == "session/load" || call.step == "session/resume") {
    if (s) s->loading = false;
    if (!r.ok() && s) {
      // The agent could not bring it back after all: load when resume failed and it can, else a
      // fresh session under the same public id.
      if (call.step == "session/resume" && profile_.load) {
        s->loading = true;
        setup_call("session/load", acp::reopen_params(s->bridge_id, s->cwd, s->mcp_servers), s->public_id);
      } else {
        setup_call("session/new", acp::new_session_params(s->cwd, s->mcp_servers), s->public_id);
      }
      return;
    }
    if (s) {
      // What the answer does not report may have changed with the new process: forgotten, so
      // that a client attaching later does not skip a setting as already in effect.
      for (const char* key : {"modes", "configOptions"}) {
        if (r.value.is_object() && r.value.contains(key)) continue;
        if (!s->settings.contains(key)) continue;
        json& old = s->settings[key];
        if (old.is_object()) old.erase("currentModeId");
        if (old.is_array())
          for (auto& o : old)
            if (o.is_object()) o.erase("currentValue");
      }
      if (!r.value.is_object() || !r.value.contains("modes")) s->state_updates.erase("current_mode_update");
      if (!r.value.is_object() || !r.value.contains("configOptions")) s->state_updates.erase("config_option_update");
      s->keep_settings(r.value);
    }
    if (s && s->main) plan_main_settings(r.value);
    return setup_next();
  }
}

// The main session's --mode/--model/--set, against what its setup answer offers; sent by
// setup_next() before anything else. An id the agent does not offer ends the server's start
// (exit 64), or, after a restart, is logged.
void Server::plan_main_settings(const json& answer) {
  if (settings_.empty()) return;
  // What the answer does not report is taken from what the session offered before, without its
  // current values: a new process may have reopened it in its defaults, so nothing is skipped as
  // already in effect.
  Session* m = session(main_session_);
  auto offered = [&](const char* key) -> json {
    if (answer.is_object() && answer.contains(key)) return answer[key];
    if (!m || !m->settings.contains(key)) return json();
    json old = m->settings[key];
    if (old.is_object()) old.erase("currentModeId");
    if (old.is_array())
      for (auto& o : old)
        if (o.is_object()) o.erase("currentValue");
    return old;
  };
  json modes = offered("modes");
  json opts = offered("configOptions");
  auto plan = acp::plan_settings(settings_, main_session_bridge_id(), modes, opts);
  if (auto* err = std::get_if<json>(&plan)) {
    if (!ever_ready_) {
      startup_exit_ = acp::exit_status_for_error(*err, true);
      startup_error_ = string_of(*err, "message");
    } else {
      log_line(string_of(*err, "message"));
    }
    return;
  }
  for (auto& step : std::get<std::vector<acp::SettingRequest>>(plan)) setting_todo_.push_back(std::move(step));
}

std::string Server::main_session_bridge_id() {
  Session* m = session(main_session_);
  return m ? m->bridge_id : main_session_;
}

void Server::setup_next() {
  if (!startup_error_.empty()) return;
  if (!setting_todo_.empty()) {
    acp::SettingRequest next = std::move(setting_todo_.front());
    setting_todo_.pop_front();
    setup_call(next.method, std::move(next.params), "");
    return;
  }
  while (!setup_todo_.empty()) {
    std::string id = setup_todo_.back();
    setup_todo_.pop_back();
    Session* s = session(id);
    if (!s) continue;
    // Back on a new process: resume (no replay) when the agent offers it, else load, else new.
    if (profile_.resume || profile_.load) {
      s->loading = true;
      setup_call(profile_.resume ? "session/resume" : "session/load", acp::reopen_params(s->bridge_id, s->cwd, s->mcp_servers), id);
    } else {
      setup_call("session/new", acp::new_session_params(s->cwd, s->mcp_servers), id);
    }
    return;
  }
  link_ready();
}

void Server::setup_failed(const std::string& why) {
  if (!ever_ready_) {
    startup_error_ = why;
    return;
  }
  log_line(why + "; restarting it");
  last_cause_ = why;
  link_ = Link::down;
  setup_deadline_ = Deadline::never();
  bridge_.recycle(link_gen_, why);
}

void Server::link_ready() {
  setup_deadline_ = Deadline::never();
  link_ = Link::ready;
  const bool first = !ever_ready_;
  ever_ready_ = true;
  if (first) {
    log_line("listening on " + where_.path + " (bridge generation " + std::to_string(link_gen_) + ", main session " +
             main_session_ + ")");
  } else {
    log_line("the bridge is back (generation " + std::to_string(link_gen_) + ")" +
             (sessions_restored_ ? "" : "; the agent lost the sessions' context"));
    broadcast("_tether/bridge_restarted", {{"generation", link_gen_},
                                           {"cause", last_cause_},
                                           {"stderrLine", last_stderr_line_},
                                           {"sessionsRestored", sessions_restored_}});
  }
  for (auto& [c, id] : std::exchange(restart_waiters_, {})) reply(c, id, {{"generation", link_gen_}});
  replay_deferred();
  for (auto& [id, s] : sessions_) pump(s);
}

void Server::link_gone(const std::string& message) {
  link_ = Link::gone;
  gone_message_ = message;
  setup_deadline_ = Deadline::never();
  log_line(message);
  broadcast("_tether/bridge_gone", {{"message", message}});
  for (auto& [c, id] : std::exchange(restart_waiters_, {})) reply_tether_error(c, id, gone_error());
  replay_deferred();  // each now fails with restart_limit (initialize is still answered)
  for (auto& [id, s] : sessions_) pump(s);
}

void Server::replay_deferred() {
  auto waiting = std::exchange(deferred_, {});
  for (auto& q : waiting)
    if (client(q.client)) on_client_request(q.client, q.message);
}

// --- shutdown -----------------------------------------------------------------------------------

void Server::begin_shutdown(std::uint64_t stopper, json stopper_id) {
  if (stopper) stoppers_.emplace_back(stopper, std::move(stopper_id));
  if (shutting_down_) return;
  shutting_down_ = true;
  if (stopper) log_line("stopping (asked by client " + std::to_string(stopper) + ")");
}

}  // namespace

// --- setup, the listening socket, --stop -----------------------------------------------------------

namespace {

int stop_server(const SocketLocation& where) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", where.path.c_str());
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    error_line("no tether server is running at " + where.path + " (" + strerror(errno) + ")");
    return kExitUnavailable;
  }
  std::string req = rpc::dump(rpc::make_request(1, "_tether/shutdown", json::object())) + "\n";
  if (!base::write_all(fd.get(), req)) {
    error_line("cannot ask the server at " + where.path + " to stop: " + strerror(errno));
    return kExitUnavailable;
  }
  // The server closes this connection last, after the bridge stopped and the name is free again.
  rpc::LineFramer framer;
  bool answered = false;
  pollfd p{fd.get(), POLLIN, 0};
  Deadline deadline = Deadline::after(std::chrono::seconds(30));
  for (;;) {
    int left = static_cast<int>(std::max<long long>(
        0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline.when() - Clock::now()).count()));
    if (::poll(&p, 1, left) <= 0) {
      error_line("the server at " + where.path + " did not stop within 30 s");
      return kExitUnavailable;
    }
    char buf[4096];
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    framer.push(std::string_view(buf, static_cast<std::size_t>(n)));
    while (auto line = framer.next()) {
      auto msg = rpc::parse_line(*line);
      if (msg && msg->is_object() && msg->contains("result")) answered = true;
    }
  }
  if (!answered) {
    error_line("the server at " + where.path + " closed the connection without stopping");
    return kExitUnavailable;
  }
  return kExitOk;
}

struct Listening {
  UniqueFd fd;
  ino_t inode = 0;
};

std::variant<Listening, std::string> listen_on(const SocketLocation& where) {
  sockaddr_un addr{};
  if (where.path.size() >= sizeof addr.sun_path)
    return "socket path " + where.path + " is too long (at most " + std::to_string(sizeof addr.sun_path - 1) + " bytes)";
  struct stat st;
  if (::lstat(where.path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return where.path + " exists and is not a socket; not touching it";
    // We hold the name's lock, so no live server owns this socket: it is a dead server's.
    if (::unlink(where.path.c_str()) != 0) return "cannot remove the stale socket " + where.path + ": " + strerror(errno);
    log_line("replaced the stale socket of a server that is gone: " + where.path);
  }
  Listening l;
  l.fd = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l.fd) return std::string("cannot create a socket: ") + strerror(errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, where.path.c_str(), where.path.size() + 1);
  mode_t old = ::umask(0177);  // the socket is born 0600: no window where others may connect
  int rc = ::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  int err = errno;
  ::umask(old);
  if (rc != 0) return "cannot bind " + where.path + ": " + strerror(err);
  if (::chmod(where.path.c_str(), 0600) != 0 || ::stat(where.path.c_str(), &st) != 0)
    return "cannot secure " + where.path + ": " + strerror(errno);
  l.inode = st.st_ino;
  if (::listen(l.fd.get(), kListenBacklog) != 0) return "cannot listen on " + where.path + ": " + strerror(errno);
  return l;
}

}  // namespace

int run_serve(ServeOptions& o) {
  if (!o.name.empty() && !o.socket.empty()) {
    error_line("--name and --socket name the same thing: give one");
    return kExitUsage;
  }
  // `--socket x.sock` is a path in the current directory, never a name.
  std::string socket = o.socket;
  if (!socket.empty() && socket.find('/') == std::string::npos) socket = "./" + socket;
  auto resolved = resolve_socket(socket.empty() ? o.name : socket);
  if (auto* err = std::get_if<std::string>(&resolved)) {
    error_line(*err);
    return kExitUsage;
  }
  SocketLocation where = std::get<SocketLocation>(resolved);
  if (o.stop) return stop_server(where);
  if (auto err = check_private_dir(where)) {
    error_line(*err);
    return kExitConfig;
  }
  if (auto err = finish_options(o.common)) {
    error_line(err->message);
    return err->exit_code;
  }
  acp::SessionSettings main_settings;
  if (auto err = session_settings(o.common, main_settings)) {
    error_line(err->message);
    return err->exit_code;
  }
  struct stat err_st;
  UniqueFd log_fd;
  if (::fstat(STDERR_FILENO, &err_st) == 0 && !S_ISREG(err_st.st_mode)) {
    log_fd = UniqueFd(::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
    if (log_fd) g_log_fd = log_fd.get();
  }

  // The name's lock, held for the server's whole life: a second server of the same name learns
  // at once that the first is alive, and a socket file found while we hold it is a stale one.
  UniqueFd lock(::open(where.lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock) {
    error_line("cannot open " + where.lock_path + ": " + strerror(errno));
    return kExitUnavailable;
  }
  if (!take_server_lock(lock.get())) {
    std::string how = o.socket.empty() ? "tether serve --stop" + (o.name.empty() ? std::string() : " --name " + o.name)
                                       : "tether serve --stop --socket " + o.socket;
    error_line("a tether server is already running at " + where.path + " (stop it with `" + how + "`)");
    return kExitUnavailable;
  }
  auto listening = listen_on(where);
  if (auto* err = std::get_if<std::string>(&listening)) {
    error_line(*err);
    return kExitUnavailable;
  }
  Listening l = std::move(std::get<Listening>(listening));

  supervisor::BridgeOptions bopt;
  if (auto err = make_bridge_options(o.common, /*auto_restart=*/true, bopt)) {
    ::unlink(where.path.c_str());
    error_line(err->message);
    return err->exit_code;
  }
  UniqueFd sigfd = open_signal_fd();
  supervisor::Bridge bridge(std::move(bopt));
  if (auto failed = bridge.start()) {
    ::unlink(where.path.c_str());
    error_line(supervisor::describe(*failed));
    return kExitUnavailable;
  }
  Server server(o, where, std::move(l.fd), l.inode, std::move(lock), std::move(sigfd), bridge);
  int rc = server.run();  // the bridge is stopped and the socket gone when it returns
  if (int sig = server.exit_signal()) reraise(sig);
  return rc;
}

std::function<int()> setup_serve(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<ServeOptions>();
  auto* sub = app.add_subcommand("serve", "Keep one bridge warm behind a Unix socket for many clients (--connect)");
  sub->footer(
      "The socket is $XDG_RUNTIME_DIR/tether/NAME.sock (else /tmp/tether-UID/NAME.sock), NAME\n"
      "defaulting to \"default\"; only your own uid may connect. Clients: tether talk|prompt|batch\n"
      "--connect[=NAME|PATH]. The socket speaks ACP, with tether as the agent.\n"
      "Exit status: 0 stopped by --stop; 69 the bridge cannot start or a server of that name runs;\n"
      "143/130/129 stopped by SIGTERM/SIGINT/SIGHUP.");
  sub->add_option("--name", o->name, "Server name: the socket is <runtime dir>/tether/NAME.sock (default: default)");
  sub->add_option("--socket", o->socket, "Listen on this socket path instead of a named one");
  sub->add_flag("--stop", o->stop, "Stop the running server of this name (or --socket) and wait until it is gone");
  add_common_options(*sub, o->common);
  add_session_options(*sub, o->common);
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_serve(*o);
  };
}

}  // namespace tether::cli
