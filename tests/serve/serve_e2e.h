// Shared by the serve e2e tests (tests/serve/*_test.cpp, one binary): the built `tether serve` as a
// server (its bridge the built-in demo agent unless a test names another), raw ACP clients on its
// Unix socket to check the routing message by message, `--trace` to see what reached the bridge,
// and the real `talk|prompt --connect` clients (talk in pseudo-terminals, tests/talk/pty_session.h).
// Every test has its own directory and socket, and stops the servers it starts. Nothing sleeps to
// synchronize: each wait is for a condition (a message, a line in a log or trace, a process state)
// with a deadline.
#pragma once

#include <doctest/doctest.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support/support.h"
#include "talk/pty_session.h"

namespace serve_e2e {

using nlohmann::json;
using tether::test::eventually;
using tether::test::Pty;
using tether::test::tether_bin;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline bool contains(const std::string& hay, std::string_view needle) { return hay.find(needle) != std::string::npos; }

// A directory of its own per test: the socket, the trace, the server's stderr, HOME and the demo
// agent's state. Removed at the end.
struct TmpDir {
  std::string dir;
  TmpDir() {
    char tmpl[] = "/tmp/tether-serve-e2e-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
    for (const char* sub : {"/run", "/demo", "/config", "/state"}) REQUIRE(::mkdir((dir + sub).c_str(), 0700) == 0);
  }
  ~TmpDir() {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) MESSAGE("could not remove " << dir);
  }
  std::string path(const std::string& name) const { return dir + "/" + name; }
  // The environment of every tether process a test starts: nothing from the person's setup.
  std::vector<std::string> env() const {
    return {"HOME=" + dir,
            "XDG_CONFIG_HOME=" + dir + "/config",
            "XDG_STATE_HOME=" + dir + "/state",
            "XDG_RUNTIME_DIR=" + dir + "/run",
            "TETHER_DEMO_STATE_DIR=" + dir + "/demo",
            "TETHER_BRIDGE=",
            "TETHER_HISTORY=",
            "TERM=xterm",
            "LANG=C.UTF-8",
            "LC_ALL=",
            "NO_COLOR=1",
            "VISUAL=",
            "EDITOR="};
  }
};

// --- child processes ------------------------------------------------------------------------------

// A child with stdin from /dev/null and stdout/stderr into files (read any time, never a full
// pipe). Killed and reaped at destruction if still running.
class Proc {
 public:
  Proc(const std::vector<std::string>& argv, const std::vector<std::string>& env, std::string out_path,
       std::string err_path)
      : out_path_(std::move(out_path)), err_path_(std::move(err_path)) {
    std::vector<std::string> envs = tether::test::environment_with(env);
    std::vector<char*> av = tether::test::exec_vector(argv), ev = tether::test::exec_vector(envs);
    int in = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int out = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int err = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    REQUIRE(in >= 0);
    REQUIRE(out >= 0);
    REQUIRE(err >= 0);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in, 0);
      ::dup2(out, 1);
      ::dup2(err, 2);
      ::setpgid(0, 0);
      tether::test::exec_as_command(av.data(), ev.data());
    }
    ::close(in);
    ::close(out);
    ::close(err);
    REQUIRE(pid_ > 0);
  }
  ~Proc() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;

  pid_t pid() const { return pid_; }
  bool running() {
    poll_exit();
    return !reaped_;
  }
  // The shell status (128 + signal when killed), or nothing if it still runs at the deadline.
  std::optional<int> wait_exit(std::chrono::milliseconds limit) {
    eventually([&] { return poll_exit(); }, limit);
    if (!reaped_) return std::nullopt;
    return status_;
  }
  void kill(int sig) {
    if (!reaped_) ::kill(pid_, sig);
  }
  std::string out() const { return slurp(out_path_); }
  std::string err() const { return slurp(err_path_); }

 private:
  bool poll_exit() {
    if (reaped_) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) != pid_) return false;
    reaped_ = true;
    status_ = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
    return true;
  }

  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = -1;
  std::string out_path_, err_path_;
};

struct Ran {
  std::optional<int> status;  // nothing: still running at the limit (then killed)
  std::string out, err;
};

// Runs a command to its end (limit: then it is killed and `status` is empty).
inline Ran run_to_end(const TmpDir& t, const std::vector<std::string>& argv, std::chrono::milliseconds limit = 20s,
               const std::vector<std::string>& extra_env = {}) {
  static int n = 0;
  ++n;
  auto env = t.env();
  env.insert(env.end(), extra_env.begin(), extra_env.end());
  Proc p(argv, env, t.path("run" + std::to_string(n) + ".out"), t.path("run" + std::to_string(n) + ".err"));
  Ran r;
  r.status = p.wait_exit(limit);
  r.out = p.out();
  r.err = p.err();
  return r;
}

inline int fd_count(pid_t pid) {
  int n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  if (!d) return -1;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') ++n;
  ::closedir(d);
  return n;
}

// --- the server -----------------------------------------------------------------------------------

// `tether serve --socket PATH --trace FILE [args] [-- bridge]`, started and waited for ("listening
// on" in its stderr); stopped (SIGTERM, then SIGKILL) at destruction.
class Server {
 public:
  Server(const TmpDir& t, std::vector<std::string> args = {}, std::string socket = "", std::string tag = "server")
      : socket_(socket.empty() ? t.path("s.sock") : socket), trace_(t.path(tag + ".trace")) {
    std::vector<std::string> argv{tether_bin(), "serve", "--socket", socket_, "--trace", trace_};
    argv.insert(argv.end(), args.begin(), args.end());
    proc_ = std::make_unique<Proc>(argv, t.env(), t.path(tag + ".out"), t.path(tag + ".err"));
  }
  ~Server() {
    if (proc_->running()) {
      proc_->kill(SIGTERM);
      if (!proc_->wait_exit(10s)) MESSAGE("tether serve did not stop on SIGTERM within 10 s: killed");
    }
  }

  // Waits until the server says it listens; REQUIREs it.
  void wait_ready(std::chrono::milliseconds limit = 15s) {
    bool ok = eventually([&] { return contains(log(), "listening on") || !proc_->running(); }, limit);
    INFO("server stderr:\n" << log());
    REQUIRE(ok);
    REQUIRE(proc_->running());
    REQUIRE(contains(log(), "listening on " + socket_));
  }

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return proc_->pid(); }
  Proc& proc() { return *proc_; }
  std::string log() const { return proc_->err(); }
  std::string trace() const { return slurp(trace_); }
  // Lines of the trace going to the bridge (generation-tagged "-> {json}").
  std::vector<json> to_bridge() const {
    std::vector<json> out;
    std::istringstream in(trace());
    std::string line;
    while (std::getline(in, line)) {
      auto pos = line.find(" -> ");
      if (pos == std::string::npos) continue;
      json j = json::parse(line.substr(pos + 4), nullptr, false);
      if (!j.is_discarded()) out.push_back(std::move(j));
    }
    return out;
  }
  // Every JSON line of the trace in wire order, each with true when it went to the bridge.
  std::vector<std::pair<bool, json>> wire() const {
    std::vector<std::pair<bool, json>> out;
    std::istringstream in(trace());
    std::string line;
    while (std::getline(in, line)) {
      auto to = line.find(" -> "), from = line.find(" <- ");
      auto pos = std::min(to, from);
      if (pos == std::string::npos) continue;
      json j = json::parse(line.substr(pos + 4), nullptr, false);
      if (!j.is_discarded()) out.emplace_back(pos == to, std::move(j));
    }
    return out;
  }
  bool wait_trace(const std::function<bool(const json&)>& pred, std::chrono::milliseconds limit = 10s) const {
    return eventually(
        [&] {
          for (auto& j : to_bridge())
            if (pred(j)) return true;
          return false;
        },
        limit);
  }
  bool wait_log(std::string_view text, std::chrono::milliseconds limit = 10s) const {
    return eventually([&] { return contains(log(), text); }, limit);
  }

 private:
  std::string socket_, trace_;
  std::unique_ptr<Proc> proc_;
};

// --- a raw ACP client -----------------------------------------------------------------------------

inline bool is_method(const json& m, std::string_view method) {
  return m.is_object() && m.contains("method") && m["method"].is_string() && m["method"].get<std::string>() == method;
}
inline bool is_response(const json& m, std::int64_t id) {
  return m.is_object() && !m.contains("method") && m.contains("id") && m["id"] == id &&
         (m.contains("result") || m.contains("error"));
}
inline bool is_update(const json& m, std::string_view kind) {
  return is_method(m, "session/update") && m["params"].is_object() && m["params"].contains("update") &&
         m["params"]["update"].value("sessionUpdate", "") == kind;
}

// One connection to the server: sends JSON-RPC lines, and keeps everything it receives (or hands
// it to `sink` when that takes it). Waits poll the socket with a deadline.
class Raw {
 public:
  explicit Raw(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    int rc = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    INFO("connect " << path << ": " << std::strerror(errno));
    REQUIRE(rc == 0);
  }
  ~Raw() { close(); }
  Raw(const Raw&) = delete;
  Raw& operator=(const Raw&) = delete;

  void close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  void send_raw(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pump(10);  // the server is writing to us: read while waiting
        continue;
      }
      REQUIRE_MESSAGE(n > 0, "send to the server failed: " << std::strerror(errno));
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
  }
  void send(const json& msg) { send_raw(msg.dump() + "\n"); }
  std::int64_t request(const std::string& method, json params = json::object()) {
    std::int64_t id = ++next_id_;
    send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}});
    return id;
  }
  void notify(const std::string& method, json params) {
    send({{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}});
  }
  void respond(const json& id, json result) { send({{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}}); }

  // Reads what arrives within `timeout_ms` (0: what is there now); false when nothing came.
  bool pump(int timeout_ms) {
    if (fd_ < 0 || eof_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[65536];
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    buf_.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (std::size_t nl; (nl = buf_.find('\n', start)) != std::string::npos; start = nl + 1) {
      json j = json::parse(std::string_view(buf_).substr(start, nl - start), nullptr, false);
      if (j.is_discarded()) j = {{"_unparsable", buf_.substr(start, nl - start)}};
      if (sink && sink(j)) continue;
      msgs_.push_back(std::move(j));
    }
    buf_.erase(0, start);
    return true;
  }
  void drain() {
    while (pump(0)) {
    }
  }
  // Reads at most `reads` times what is there now: a slow reader, so the server must hold the rest.
  void drain_some(int reads) {
    for (int i = 0; i < reads && pump(0); ++i) {
    }
  }
  // Pumps until `cond` holds or the deadline passes.
  bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
    auto deadline = Clock::now() + limit;
    for (;;) {
      if (cond()) return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || eof_) {
        drain();
        return cond();
      }
      pump(static_cast<int>(std::min<long long>(left, 100)));
    }
  }
  const json* find(const std::function<bool(const json&)>& pred) const {
    for (auto& m : msgs_)
      if (pred(m)) return &m;
    return nullptr;
  }
  // The first message (received so far or within `limit`) matching `pred`.
  std::optional<json> wait(const std::function<bool(const json&)>& pred, std::chrono::milliseconds limit = 10s) {
    const json* hit = nullptr;
    wait_until([&] { return (hit = find(pred)) != nullptr; }, limit);
    if (!hit) return std::nullopt;
    return *hit;
  }
  // The response to request `id`; REQUIREs it within `limit`.
  json response(std::int64_t id, std::chrono::milliseconds limit = 10s) {
    auto r = wait([&](const json& m) { return is_response(m, id); }, limit);
    INFO("no response to request " << id << " within " << limit.count() << " ms; got:\n" << dump());
    REQUIRE(r.has_value());
    return *r;
  }
  std::size_t count(const std::function<bool(const json&)>& pred) {
    drain();
    std::size_t n = 0;
    for (auto& m : msgs_) n += pred(m);
    return n;
  }
  // Forgets what was received so far (what is still in the socket is read first): the next wait()
  // sees only what comes after, e.g. the next turn's questions.
  void clear() {
    drain();
    msgs_.clear();
  }
  // Waits until the server closes the connection.
  bool wait_closed(std::chrono::milliseconds limit = 10s) {
    return wait_until([&] { return eof_; }, limit);
  }
  bool closed() const { return eof_; }
  // The text of the session/update chunks of `kind` received so far, in order.
  std::string chunks(std::string_view kind = "agent_message_chunk") const {
    std::string text;
    for (auto& m : msgs_)
      if (is_update(m, kind)) text += m["params"]["update"]["content"].value("text", "");
    return text;
  }
  std::string dump() const {
    std::string s;
    for (auto& m : msgs_) s += m.dump() + "\n";
    return s;
  }
  const std::vector<json>& messages() const { return msgs_; }
  int fd() const { return fd_; }

  std::function<bool(const json&)> sink;  // takes a message instead of keeping it when true

 private:
  int fd_ = -1;
  bool eof_ = false;
  std::string buf_;
  std::vector<json> msgs_;
  std::int64_t next_id_ = 0;
};

inline json text_prompt(const std::string& session, const std::string& text) {
  return {{"sessionId", session}, {"prompt", json::array({{{"type", "text"}, {"text", text}}})}};
}

// initialize: the server's answer (REQUIREs the tether metadata).
// `caps`: the clientCapabilities it advertises (none by default; fs_caps() serves files).
inline json initialize(Raw& c, json caps = json::object()) {
  auto r = c.response(c.request("initialize", {{"protocolVersion", 1}, {"clientCapabilities", std::move(caps)}}));
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  REQUIRE(r["result"]["protocolVersion"] == 1);
  REQUIRE(r["result"]["_meta"]["tether"]["mainSessionId"].is_string());
  return r["result"];
}

// initialize + session/load of the main session: its id.
inline json fs_caps() { return {{"fs", {{"readTextFile", true}, {"writeTextFile", true}}}}; }

inline std::string attach_main(Raw& c, const TmpDir& t, json caps = json::object()) {
  std::string sid = initialize(c, std::move(caps))["_meta"]["tether"]["mainSessionId"];
  REQUIRE(!sid.empty());
  auto r = c.response(c.request("session/load", {{"sessionId", sid}, {"cwd", t.dir}, {"mcpServers", json::array()}}));
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  // No replay: the answer carries only what the session offers (the demo agent's modes and its
  // model option), as a session/load answer may.
  CHECK(r["result"].is_object());
  CHECK_FALSE(r["result"].contains("sessionId"));
  if (r["result"].contains("modes")) CHECK(r["result"]["modes"].contains("currentModeId"));
  return sid;
}

inline json status(Raw& c) {
  auto r = c.response(c.request("_tether/status"));
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  return r["result"];
}

// How many clients are attached to session `sid`, per _tether/status.
inline int attached(Raw& observer, const std::string& sid) {
  json st = status(observer);  // kept alive for the loop (a temporary's member would dangle)
  for (auto& s : st["sessions"])
    if (s["sessionId"] == sid) return s["attached"].get<int>();
  return -1;
}

inline json allow_once() { return {{"outcome", {{"outcome", "selected"}, {"optionId", "allow-once"}}}}; }

inline std::string stop_reason(const json& response) {
  if (!response.contains("result") || !response["result"].is_object()) return "(error: " + response.dump() + ")";
  return response["result"].value("stopReason", "(none)");
}

inline std::vector<std::string> connect_arg(const std::string& cmd, const std::string& socket,
                                     std::vector<std::string> rest = {}) {
  std::vector<std::string> argv{tether_bin(), cmd, "--connect=" + socket};
  argv.insert(argv.end(), rest.begin(), rest.end());
  return argv;
}

inline std::string screen(const Pty& p) { return "--- screen text ---\n" + p.text() + "\n-------------------"; }

inline void expect(Pty& p, std::string_view needle, std::chrono::milliseconds limit = 15s) {
  bool ok = p.wait_for(needle, limit);
  if (!ok) FAIL_CHECK("did not see \"" << std::string(needle) << "\"\n" << screen(p));
  REQUIRE(ok);
}

inline constexpr const char* kPrompt = "tether> ";

// The session/prompt that went to the bridge with `text` in it (its bridge session id), once it did.
inline std::string wait_prompt_out(const Server& srv, const std::string& text) {
  std::string bridge_sid;
  bool out = srv.wait_trace([&](const json& m) {
    if (!is_method(m, "session/prompt") || !contains(m["params"]["prompt"].dump(), text)) return false;
    bridge_sid = m["params"]["sessionId"];
    return true;
  });
  INFO("trace:\n" << srv.trace());
  REQUIRE(out);
  return bridge_sid;
}
inline bool cancel_sent(const Server& srv, const std::string& bridge_sid, std::chrono::milliseconds limit = 5s) {
  return srv.wait_trace(
      [&](const json& m) { return is_method(m, "session/cancel") && m["params"]["sessionId"] == bridge_sid; }, limit);
}

// An ordering instead of a speed: the bridge ended the turn of the prompt carrying `slow` with
// stopReason "cancelled" before the prompt carrying `next` reached it. So the cancel ended that
// turn, not the prompt's own time or the server's orphan grace (both 5 s).
inline bool cancelled_before_next(const Server& srv, const std::string& slow, const std::string& next) {
  auto wire = srv.wire();
  json slow_id;
  std::size_t ended = 0, next_at = 0;
  for (std::size_t i = 0; i < wire.size(); ++i) {
    const auto& [to_bridge, m] = wire[i];
    bool prompt = to_bridge && is_method(m, "session/prompt");
    if (prompt && slow_id.is_null() && contains(m["params"]["prompt"].dump(), slow)) slow_id = m["id"];
    if (prompt && !next_at && contains(m["params"]["prompt"].dump(), next)) next_at = i + 1;
    if (!to_bridge && !slow_id.is_null() && !ended && m.contains("id") && m["id"] == slow_id && m.contains("result"))
      ended = m["result"].value("stopReason", "") == "cancelled" ? i + 1 : 0;
  }
  INFO("trace:\n" << srv.trace());
  CHECK(ended > 0);
  CHECK(next_at > 0);
  return ended > 0 && next_at > 0 && ended < next_at;
}

// The bridge ended the turn of the prompt carrying `slow` with stopReason "cancelled" (waited for,
// up to `limit`). For a turn on a session of its own, where no later prompt waits behind it: the
// demo agent says "cancelled" only when a session/cancel cut its sleep short.
inline bool ended_cancelled(const Server& srv, const std::string& slow, std::chrono::milliseconds limit = 10s) {
  bool ok = eventually(
      [&] {
        json slow_id;
        for (const auto& [to_bridge, m] : srv.wire()) {
          if (to_bridge && slow_id.is_null() && is_method(m, "session/prompt") &&
              contains(m["params"]["prompt"].dump(), slow))
            slow_id = m["id"];
          if (!to_bridge && !slow_id.is_null() && m.contains("id") && m["id"] == slow_id && m.contains("result"))
            return m["result"].value("stopReason", "") == "cancelled";
        }
        return false;
      },
      limit);
  INFO("trace:\n" << srv.trace());
  CHECK(ok);
  return ok;
}

// A fresh server and two raw clients attached to its main session, `a` first, `b` second.
struct TwoOnMain {
  explicit TwoOnMain(std::vector<std::string> args = {})
      : srv(t, std::move(args)), a(ready(srv)), sid(attach_main(a, t)), b(srv.socket()) {
    attach_main(b, t);
  }
  static std::string ready(Server& s) {
    s.wait_ready();
    return s.socket();
  }
  TmpDir t;
  Server srv;
  Raw a;
  std::string sid;
  Raw b;
};

// The same with a server whose bridge is never restarted.
struct TwoOnMainNoRestarts : TwoOnMain {
  TwoOnMainNoRestarts() : TwoOnMain({"--max-restarts", "0"}) {}
};

}  // namespace serve_e2e
