// `tether serve` end to end: the built binary as a server (its bridge the built-in demo agent),
// with raw ACP clients on its Unix socket to check the routing message by message, `--trace` to
// see what reached the bridge, and the real `talk|prompt --connect` clients. Every test has its own
// directory and socket, and stops the servers it starts. Nothing sleeps to synchronize: each wait
// is for a condition (a message, a line in a log or trace, a process state) with a deadline.
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

#include "serve/socket_path.h"
#include "support/support.h"
#include "talk/pty_session.h"

using nlohmann::json;
using tether::test::eventually;
using tether::test::Pty;
using tether::test::tether_bin;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

extern char** environ;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool contains(const std::string& hay, std::string_view needle) { return hay.find(needle) != std::string::npos; }

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
Ran run_to_end(const TmpDir& t, const std::vector<std::string>& argv, std::chrono::milliseconds limit = 20s,
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

int fd_count(pid_t pid) {
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

bool is_method(const json& m, std::string_view method) {
  return m.is_object() && m.contains("method") && m["method"].is_string() && m["method"].get<std::string>() == method;
}
bool is_response(const json& m, std::int64_t id) {
  return m.is_object() && !m.contains("method") && m.contains("id") && m["id"] == id &&
         (m.contains("result") || m.contains("error"));
}
bool is_update(const json& m, std::string_view kind) {
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

json text_prompt(const std::string& session, const std::string& text) {
  return {{"sessionId", session}, {"prompt", json::array({{{"type", "text"}, {"text", text}}})}};
}

// initialize: the server's answer (REQUIREs the tether metadata).
json initialize(Raw& c) {
  auto r = c.response(c.request("initialize", {{"protocolVersion", 1}, {"clientCapabilities", json::object()}}));
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  REQUIRE(r["result"]["protocolVersion"] == 1);
  REQUIRE(r["result"]["_meta"]["tether"]["mainSessionId"].is_string());
  return r["result"];
}

// initialize + session/load of the main session: its id.
std::string attach_main(Raw& c, const TmpDir& t) {
  std::string sid = initialize(c)["_meta"]["tether"]["mainSessionId"];
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

json status(Raw& c) {
  auto r = c.response(c.request("_tether/status"));
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  return r["result"];
}

// How many clients are attached to session `sid`, per _tether/status.
int attached(Raw& observer, const std::string& sid) {
  json st = status(observer);  // kept alive for the loop (a temporary's member would dangle)
  for (auto& s : st["sessions"])
    if (s["sessionId"] == sid) return s["attached"].get<int>();
  return -1;
}

json allow_once() { return {{"outcome", {{"outcome", "selected"}, {"optionId", "allow-once"}}}}; }

std::string stop_reason(const json& response) {
  if (!response.contains("result") || !response["result"].is_object()) return "(error: " + response.dump() + ")";
  return response["result"].value("stopReason", "(none)");
}

std::vector<std::string> connect_arg(const std::string& cmd, const std::string& socket,
                                     std::vector<std::string> rest = {}) {
  std::vector<std::string> argv{tether_bin(), cmd, "--connect=" + socket};
  argv.insert(argv.end(), rest.begin(), rest.end());
  return argv;
}

std::string screen(const Pty& p) { return "--- screen text ---\n" + p.text() + "\n-------------------"; }

void expect(Pty& p, std::string_view needle, std::chrono::milliseconds limit = 15s) {
  bool ok = p.wait_for(needle, limit);
  if (!ok) FAIL_CHECK("did not see \"" << std::string(needle) << "\"\n" << screen(p));
  REQUIRE(ok);
}

constexpr const char* kPrompt = "tether> ";

}  // namespace

// --- 1. routing between two clients of the main session -----------------------------------------------

// A fresh server and two raw clients attached to its main session, `a` first: `b` is the newer,
// the session's active client.
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

TEST_CASE("two raw clients: the newer gets the permission request, both the stream, only the sender the response") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());
  CHECK(attach_main(b, t) == sid);

  auto prompt = a.request("session/prompt", text_prompt(sid, "please edit it"));
  auto perm = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  REQUIRE(perm->contains("id"));
  b.respond((*perm)["id"], allow_once());

  auto done = a.response(prompt);
  CHECK(stop_reason(done) == "end_turn");
  CHECK(a.count([](const json& m) { return is_method(m, "session/request_permission"); }) == 0);
  CHECK(contains(a.chunks(), "Echo: please edit it"));
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
  // B sees the same answer stream, and A's prompt as the user's message.
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Permission granted: the edit was applied"); }));
  CHECK(contains(b.chunks(), "Echo: please edit it"));
  CHECK(b.chunks("user_message_chunk") == "please edit it");
  CHECK(a.chunks("user_message_chunk").empty());
  // Only A gets the response of A's prompt.
  CHECK(b.count([](const json& m) { return m.contains("result") && m["result"].is_object() && m["result"].contains("stopReason"); }) == 0);
  for (auto& m : b.messages())
    if (is_update(m, "agent_message_chunk")) CHECK(m["params"]["sessionId"] == sid);

  // B leaves: A, the only one left, is now asked.
  b.close();
  Raw observer(srv.socket());
  CHECK(eventually([&] { return attached(observer, sid) == 1; }));
  auto prompt2 = a.request("session/prompt", text_prompt(sid, "edit once more"));
  auto perm2 = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm2.has_value());
  a.respond((*perm2)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt2)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: edit once more"));
  CHECK_FALSE(a.closed());
}

TEST_CASE("the permission request moves to the older client when the newer one leaves before answering") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  auto b = std::make_unique<Raw>(srv.socket());
  attach_main(*b, t);
  auto prompt = a.request("session/prompt", text_prompt(sid, "edit while B leaves"));
  REQUIRE(b->wait([](const json& m) { return is_method(m, "session/request_permission"); }).has_value());
  b.reset();  // leaves with the question unanswered
  auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm.has_value());
  a.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
}

TEST_CASE_FIXTURE(TwoOnMain, "_tether/detach: a client that leaves a session (talk /new) is withdrawn its question and no longer asked") {
  auto prompt = a.request("session/prompt", text_prompt(sid, "edit while B detaches"));
  auto asked = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  REQUIRE(asked.has_value());  // B, the newer, is asked
  auto detached = b.response(b.request("_tether/detach", {{"sessionId", sid}}));
  CHECK(detached["result"] == json::object());
  // B learns the question is no longer its own; A, now the only client, is asked instead.
  CHECK(b.wait([&](const json& m) {
    return is_method(m, "$/cancel_request") && m["params"]["requestId"] == (*asked)["id"];
  }).has_value());
  auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm.has_value());
  a.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
  CHECK(status(a)["sessions"][0]["attached"] == 1);
  // Detaching from a session one is not attached to is an error, not a crash.
  CHECK(b.response(b.request("_tether/detach", {{"sessionId", sid}}))["error"]["code"] == -32602);
}

TEST_CASE("two talk --connect clients in terminals: the newer is asked; after it quits, the older") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw observer(srv.socket());
  std::string sid = initialize(observer)["_meta"]["tether"]["mainSessionId"];

  Pty older(connect_arg("talk", srv.socket()), t.env());
  expect(older, kPrompt);
  REQUIRE_MESSAGE(eventually([&] { return attached(observer, sid) == 1; }), "talk did not attach to the main session");
  Pty newer(connect_arg("talk", srv.socket()), t.env());
  expect(newer, kPrompt);
  REQUIRE_MESSAGE(eventually([&] { return attached(observer, sid) == 2; }), "the second talk did not attach");

  older.mark();
  newer.mark();
  older.send("please edit the file\r");
  expect(newer, "choose 1-4");
  CHECK(older.count("choose 1-4") == 0);
  newer.send("1");
  expect(older, "Permission granted: the edit was applied");
  expect(newer, "Permission granted: the edit was applied");
  expect(older, kPrompt);

  newer.mark();
  newer.send("\x04");
  auto st = newer.wait_exit(15s);
  REQUIRE_MESSAGE(st.has_value(), "talk --connect did not exit after Ctrl-D\n" << screen(newer));
  CHECK(*st == 0);
  REQUIRE(eventually([&] { return attached(observer, sid) == 1; }));

  older.mark();
  older.send("edit it again\r");
  expect(older, "choose 1-4");
  older.send("1");
  expect(older, "Permission granted: the edit was applied");
  expect(older, kPrompt);
  older.mark();
  older.send("\x04");
  auto st2 = older.wait_exit(15s);
  REQUIRE(st2.has_value());
  CHECK(*st2 == 0);
  CHECK(srv.proc().running());
}

TEST_CASE("a session opened through the server: others attach with session/load; prompts need attaching") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string main_sid = initialize(a)["_meta"]["tether"]["mainSessionId"];
  auto created = a.response(a.request("session/new", {{"cwd", t.dir}, {"mcpServers", json::array()}}));
  INFO(created.dump());
  REQUIRE(created.contains("result"));
  std::string sid = created["result"]["sessionId"];
  CHECK(sid != main_sid);

  Raw b(srv.socket());
  initialize(b);
  auto refused = b.response(b.request("session/prompt", text_prompt(sid, "not attached")));
  INFO(refused.dump());
  REQUIRE(refused.contains("error"));
  CHECK(refused["error"]["code"] == -32602);
  auto loaded = b.response(b.request("session/load", {{"sessionId", sid}, {"cwd", t.dir}, {"mcpServers", json::array()}}));
  REQUIRE(loaded.contains("result"));
  CHECK(loaded["result"]["modes"]["currentModeId"] == "ask");  // what the session offers, no replay

  auto prompt = a.request("session/prompt", text_prompt(sid, "edit the new session"));
  auto perm = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  b.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Permission granted"); }));
  CHECK(b.chunks("user_message_chunk") == "edit the new session");
  // The main session heard nothing of it.
  Raw c(srv.socket());
  attach_main(c, t);
  CHECK(c.chunks().empty());
}

// --- 2. a client that disappears mid-turn ----------------------------------------------------------------

namespace {
// The session/prompt that went to the bridge with `text` in it (its bridge session id), once it did.
std::string wait_prompt_out(const Server& srv, const std::string& text) {
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
bool cancel_sent(const Server& srv, const std::string& bridge_sid, std::chrono::milliseconds limit = 5s) {
  return srv.wait_trace(
      [&](const json& m) { return is_method(m, "session/cancel") && m["params"]["sessionId"] == bridge_sid; }, limit);
}
}  // namespace

TEST_CASE("a raw client that disconnects mid-turn has its turn cancelled at the bridge; the next prompt runs") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw b(srv.socket());
  std::string sid = attach_main(b, t);
  {
    Raw a(srv.socket());
    attach_main(a, t);
    a.request("session/prompt", text_prompt(sid, "/sleep 5000 slow"));
    std::string bridge_sid = wait_prompt_out(srv, "slow");
    CHECK_FALSE(cancel_sent(srv, bridge_sid, 0ms));
  }  // A goes away
  auto start = Clock::now();
  auto next = b.request("session/prompt", text_prompt(sid, "after the drop"));
  auto r = b.response(next, 10s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: after the drop"));
  // Within the 5 s the sleep (or the server's orphan grace) would take: the cancel ended the turn.
  CHECK(took < 3000ms);
  std::string bridge_sid;
  for (auto& m : srv.to_bridge())
    if (is_method(m, "session/prompt")) bridge_sid = m["params"]["sessionId"];
  INFO("trace:\n" << srv.trace());
  CHECK(cancel_sent(srv, bridge_sid));
}

TEST_CASE("SIGKILL of a prompt --connect client mid-turn: session/cancel reaches the bridge, another client goes on") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw b(srv.socket());
  std::string sid = attach_main(b, t);
  Proc client(connect_arg("prompt", srv.socket(), {"/sleep 5000 slow"}), t.env(), t.path("client.out"),
              t.path("client.err"));
  std::string bridge_sid;
  {
    bool out = srv.wait_trace([&](const json& m) {
      if (!is_method(m, "session/prompt") || !contains(m["params"]["prompt"].dump(), "slow")) return false;
      bridge_sid = m["params"]["sessionId"];
      return true;
    });
    INFO("trace:\n" << srv.trace() << "\nclient stderr:\n" << client.err());
    REQUIRE(out);
  }
  client.kill(SIGKILL);
  auto st = client.wait_exit(5s);
  REQUIRE(st.has_value());
  CHECK(*st == 128 + SIGKILL);
  {
    INFO("trace:\n" << srv.trace());
    CHECK(cancel_sent(srv, bridge_sid));
  }
  auto start = Clock::now();
  auto r = b.response(b.request("session/prompt", text_prompt(sid, "after the kill")), 10s);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: after the kill"));
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start) < 3000ms);
  CHECK(srv.proc().running());
}

TEST_CASE("a sender that leaves while another client holds its permission request: withdrawn, answered cancelled") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  auto a = std::make_unique<Raw>(srv.socket());
  std::string sid = attach_main(*a, t);
  Raw b(srv.socket());  // the newer: the one asked
  attach_main(b, t);
  a->request("session/prompt", text_prompt(sid, "edit and leave"));
  auto perm = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  std::string bridge_sid = wait_prompt_out(srv, "edit and leave");
  auto withdrawn = [&](const json& m) {
    return is_method(m, "$/cancel_request") && m["params"]["requestId"] == (*perm)["id"];
  };
  CHECK(b.count(withdrawn) == 0);
  a.reset();  // the sender leaves mid-turn
  CHECK(b.wait(withdrawn).has_value());
  {
    INFO("trace:\n" << srv.trace());
    CHECK(cancel_sent(srv, bridge_sid));
    CHECK(srv.wait_trace([](const json& m) {
      return m.contains("result") && m["result"].is_object() && m["result"].contains("outcome") &&
             m["result"]["outcome"].value("outcome", "") == "cancelled";
    }));
  }
  // The bridge got its answer (cancelled), so the turn ended and the session is free.
  auto start = Clock::now();
  auto r = b.response(b.request("session/prompt", text_prompt(sid, "next one")), 10s);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: next one"));
  CHECK(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start) < 3000ms);
  CHECK(b.chunks().find("Permission granted") == std::string::npos);
}

TEST_CASE("a queued prompt goes to the bridge after the previous response and what came with it: no $/ping on the bridge's wire") {
  TmpDir t;
  const char* fake = std::getenv("TETHER_FAKE_ACP");
  REQUIRE(fake);
  // An agent that takes 1 s over each prompt, and sends a chunk and a tool call after its response.
  Server srv(t, {"--", fake, "late-updates", "1000"});
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());
  attach_main(b, t);
  auto first = a.request("session/prompt", text_prompt(sid, "one"));
  auto second = b.request("session/prompt", text_prompt(sid, "two"));
  // B's prompt waits behind A's turn (what this test is about).
  Raw watcher(srv.socket());
  CHECK(eventually([&] { return status(watcher)["sessions"][0]["queued"] == 1; }, 900ms));
  CHECK(a.response(first, 15s)["result"]["stopReason"] == "end_turn");
  CHECK(b.response(second, 15s)["result"]["stopReason"] == "end_turn");
  auto at = [&](const std::function<bool(const json&)>& pred) {
    const auto& m = b.messages();
    for (std::size_t i = 0; i < m.size(); ++i)
      if (pred(m[i])) return static_cast<long>(i);
    return -1L;
  };
  long started = at([](const json& m) { return m.value("method", "") == "_tether/turn_started"; });
  long own = at([](const json& m) {
    return is_update(m, "agent_message_chunk") && m["params"]["update"]["content"].value("text", "") == "answer-2";
  });
  long late = at([](const json& m) {
    return is_update(m, "agent_message_chunk") && m["params"]["update"]["content"].value("text", "") == "LATE-1";
  });
  INFO("B received:\n" << b.dump());
  REQUIRE(started >= 0);
  REQUIRE(own >= 0);
  CHECK(started < own);
  // A's late chunk came in the same write as A's response: it goes out as A's (before B's
  // turn_started), since the next turn starts only once that batch of events is handled.
  REQUIRE(late >= 0);
  CHECK(late < started);
  // By the spec a turn's updates precede its response: the server sends nothing the agent did not
  // advertise to find a turn's end (the old $/ping boundary).
  std::string trace = srv.trace();
  INFO("server trace:\n" << trace.substr(0, 4000));
  CHECK(trace.find("\"$/ping\"") == std::string::npos);
  CHECK(trace.find("session/prompt") != std::string::npos);
}

TEST_CASE_FIXTURE(TwoOnMain, "session/cancel from one client does not touch another client's turn; a queued prompt is cancelled") {
  auto turn = a.request("session/prompt", text_prompt(sid, "/sleep 800 mine"));
  wait_prompt_out(srv, "mine");
  auto queued = b.request("session/prompt", text_prompt(sid, "queued behind"));
  b.notify("session/cancel", {{"sessionId", sid}});
  auto rq = b.response(queued);  // B's own queued prompt ends, cancelled, before A's turn does
  CHECK(stop_reason(rq) == "cancelled");
  CHECK(a.find([&](const json& m) { return is_response(m, turn); }) == nullptr);
  CHECK(stop_reason(a.response(turn)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: mine"));
  INFO("trace:\n" << srv.trace());
  for (auto& m : srv.to_bridge()) {
    CHECK_FALSE(is_method(m, "session/cancel"));
    CHECK_FALSE(contains(m.dump(), "queued behind"));
  }
}

// --- 3. $/ping stays prompt during another client's long turn -----------------------------------------

TEST_CASE_FIXTURE(TwoOnMain, "$/ping is answered by the server at once during another client's long turn, never forwarded") {

  auto turn = a.request("session/prompt", text_prompt(sid, "/sleep 2000 a long turn"));
  auto turn_start = Clock::now();
  int pings = 0;
  auto worst = 0ms;
  auto next_ping = Clock::now();
  while (!a.find([&](const json& m) { return is_response(m, turn); })) {
    REQUIRE_MESSAGE(Clock::now() - turn_start < 10s, "the turn did not end within 10 s\n" << a.dump());
    auto sent = Clock::now();
    auto id = b.request("$/ping");
    auto r = b.response(id, 2s);
    auto rtt = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
    worst = std::max(worst, rtt);
    CHECK(r["result"] == json::object());
    ++pings;
    // Paced by waiting on A's socket until the next ping is due (A's messages are read meanwhile).
    next_ping += 50ms;
    for (auto now = Clock::now(); now < next_ping; now = Clock::now())
      a.pump(static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next_ping - now).count()) + 1);
  }
  MESSAGE(pings << " pings, slowest answered in " << worst.count() << " ms");
  CHECK(pings >= 20);
  CHECK(worst < 200ms);
  CHECK(stop_reason(*a.find([&](const json& m) { return is_response(m, turn); })) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: a long turn"));
  CHECK_FALSE(a.closed());
  CHECK_FALSE(b.closed());
  INFO("trace:\n" << srv.trace());
  // The clients' pings stay at the server; the bridge gets one $/ping of the server's own: the
  // boundary after the turn (serve.h, _tether/turn_started).
  std::size_t to_bridge = 0;
  for (auto& m : srv.to_bridge()) to_bridge += is_method(m, "$/ping");
  CHECK(to_bridge <= 1);
}

// --- 4. and 5. the bridge dies --------------------------------------------------------------------------

TEST_CASE_FIXTURE(TwoOnMain, "a bridge that crashes is restarted: every client hears _tether/bridge_restarted, the next prompt works") {
  Raw c(srv.socket());  // initialized, attached to nothing
  initialize(c);
  auto pid1 = status(c)["pid"];

  auto crash = a.request("session/prompt", text_prompt(sid, "/crash now"));
  for (Raw* r : {&a, &b, &c}) {
    auto n = r->wait([](const json& m) { return is_method(m, "_tether/bridge_restarted"); }, 15s);
    INFO("got:\n" << r->dump() << "server stderr:\n" << srv.log());
    REQUIRE(n.has_value());
    CHECK((*n)["params"]["generation"] == 2);
    CHECK(contains((*n)["params"].value("stderrLine", ""), "crashing on purpose"));
  }
  auto crashed = a.response(crash, 10s);  // answered, not left hanging: the turn died with the bridge
  INFO(crashed.dump());
  CHECK(crashed.contains("error"));
  CHECK(crashed["error"]["code"] == -32090);  // the server's own failures: -32090, the reason in data
  CHECK(status(c)["pid"] != pid1);
  auto next = a.request("session/prompt", text_prompt(sid, "after the crash"));
  CHECK(stop_reason(a.response(next, 10s)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: after the crash"));
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Echo: after the crash"); }));
  CHECK(srv.proc().running());
}

TEST_CASE_FIXTURE(TwoOnMain, "a prompt queued behind a turn that crashes the bridge runs once the bridge is back") {
  auto crash = a.request("session/prompt", text_prompt(sid, "/sleep 300 /crash now"));
  wait_prompt_out(srv, "/crash");
  auto queued = b.request("session/prompt", text_prompt(sid, "queued behind the crash"));
  auto r = b.response(queued, 15s);
  INFO("B got:\n" << b.dump() << "\ntrace:\n" << srv.trace());
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: queued behind the crash"));
  a.response(crash, 10s);
}

TEST_CASE_FIXTURE(TwoOnMainNoRestarts, "past the restart budget: _tether/bridge_gone, prompts fail with restart_limit, _tether/restart revives") {

  a.request("session/prompt", text_prompt(sid, "/crash now"));
  for (Raw* r : {&a, &b}) {
    auto n = r->wait([](const json& m) { return is_method(m, "_tether/bridge_gone"); }, 15s);
    INFO("got:\n" << r->dump() << "server stderr:\n" << srv.log());
    REQUIRE(n.has_value());
    CHECK((*n)["params"]["message"].is_string());
  }
  auto failed = b.response(b.request("session/prompt", text_prompt(sid, "anyone there")));
  INFO(failed.dump());
  REQUIRE(failed.contains("error"));
  CHECK(failed["error"]["code"] == -32090);  // the server's own failures: -32090, the reason in data
  CHECK(failed["error"]["data"]["code"] == "restart_limit");
  CHECK(srv.proc().running());

  // A new client's session/new fails the same way: tether's clients tell restart_limit (exit 69),
  // not the agent refusing session/new.
  auto late = run_to_end(t, connect_arg("prompt", srv.socket(), {"--json", "late"}));
  INFO("stdout:\n" << late.out << "\nstderr:\n" << late.err);
  CHECK(late.status == 69);
  json lj = json::parse(late.out, nullptr, false);
  REQUIRE(lj.is_object());
  CHECK(lj["error"]["code"] == "restart_limit");

  auto restart = a.request("_tether/restart");
  auto r = a.response(restart, 15s);
  INFO(r.dump());
  REQUIRE(r.contains("result"));
  CHECK(r["result"]["generation"] == 2);
  auto next = a.request("session/prompt", text_prompt(sid, "back again"));
  CHECK(stop_reason(a.response(next, 10s)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: back again"));
}

// --- 6. who may connect -------------------------------------------------------------------------------

TEST_CASE("another uid cannot connect: the socket is 0600, and a connection that gets through is refused") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root to connect as uid 65534");
    return;
  }
  const char* probe = std::getenv("TETHER_SERVE_PROBE");
  REQUIRE(probe != nullptr);
  TmpDir t;
  REQUIRE(::chmod(t.dir.c_str(), 0755) == 0);  // others may reach the socket file
  Server srv(t);
  srv.wait_ready();
  struct stat st;
  REQUIRE(::stat(srv.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  // A copy of the probe that uid 65534 can surely reach and run.
  std::string probe_copy = t.path("probe");
  {
    std::ifstream in(probe, std::ios::binary);
    std::ofstream out(probe_copy, std::ios::binary);
    out << in.rdbuf();
  }
  REQUIRE(::chmod(probe_copy.c_str(), 0755) == 0);
  std::string setpriv = ::access("/usr/bin/setpriv", X_OK) == 0 ? "/usr/bin/setpriv" : "/bin/setpriv";
  std::vector<std::string> as_nobody{setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", probe_copy, srv.socket()};

  auto denied = run_to_end(t, as_nobody, 10s);
  INFO("probe: " << denied.out << denied.err);
  CHECK(denied.status == 2);
  CHECK(contains(denied.out, "EACCES"));

  REQUIRE(::chmod(srv.socket().c_str(), 0666) == 0);
  auto refused = run_to_end(t, as_nobody, 10s);
  INFO("probe: " << refused.out << refused.err << "server stderr:\n" << srv.log());
  CHECK(refused.status == 0);
  CHECK(contains(refused.out, "closed"));
  CHECK(srv.wait_log("refused a connection from uid 65534"));
  // The owner still gets in.
  Raw mine(srv.socket());
  initialize(mine);
}

TEST_CASE("a named server lives in a private 0700 directory with a 0600 socket") {
  TmpDir t;
  std::string dir = t.dir + "/run/tether";
  std::string sock = dir + "/e2e.sock";
  Proc server({tether_bin(), "serve", "--name", "e2e"}, t.env(), t.path("named.out"), t.path("named.err"));
  bool up = eventually([&] { return contains(server.err(), "listening on") || !server.running(); }, 15s);
  INFO("server stderr:\n" << server.err());
  REQUIRE(up);
  CHECK(contains(server.err(), "listening on " + sock));
  struct stat st;
  REQUIRE(::lstat(dir.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 0777) == 0700);
  REQUIRE(::lstat(sock.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);
  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--name", "e2e"});
  INFO(stop.err);
  CHECK(stop.status == 0);
  CHECK(server.wait_exit(10s) == 0);
  CHECK(::lstat(sock.c_str(), &st) != 0);
}

// --- 7. one server per socket ---------------------------------------------------------------------------

TEST_CASE("one server per socket: a second one exits 69; --stop frees the name; a stale socket is replaced") {
  TmpDir t;
  auto first = std::make_unique<Server>(t, std::vector<std::string>{}, "", "first");
  first->wait_ready();
  std::string sock = first->socket();
  Raw c(sock);
  auto bridge_pid = status(c)["pid"].get<pid_t>();

  auto second = run_to_end(t, {tether_bin(), "serve", "--socket", sock});
  INFO("second server stderr: " << second.err);
  CHECK(second.status == 69);
  CHECK(contains(second.err, "already running"));
  CHECK(first->proc().running());
  CHECK(status(c)["generation"] == 1);  // the first one is undisturbed

  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", sock});
  INFO("--stop stderr: " << stop.err);
  CHECK(stop.status == 0);
  // --stop returns once the name is free: the socket is gone already.
  struct stat st;
  CHECK(::lstat(sock.c_str(), &st) != 0);
  CHECK(first->proc().wait_exit(10s) == 0);
  CHECK(c.wait_closed());
  CHECK(eventually([&] { return !tether::test::process_exists(bridge_pid); }));
  first.reset();

  // A new server takes the name; killed outright it leaves its socket behind, which the next one replaces.
  auto again = std::make_unique<Server>(t, std::vector<std::string>{}, "", "again");
  again->wait_ready();
  again->proc().kill(SIGKILL);
  CHECK(again->proc().wait_exit(5s) == 128 + SIGKILL);
  CHECK(::lstat(sock.c_str(), &st) == 0);  // stale
  again.reset();
  Server third(t, {}, "", "third");
  third.wait_ready();
  CHECK(contains(third.log(), "replaced the stale socket"));
  Raw d(sock);
  initialize(d);
  // SIGTERM: the status says so, and the socket goes with the server.
  third.proc().kill(SIGTERM);
  CHECK(third.proc().wait_exit(10s) == 128 + SIGTERM);
  CHECK(::lstat(sock.c_str(), &st) != 0);
  CHECK(d.wait_closed());
}

TEST_CASE("serve --stop with no server running exits 69") {
  TmpDir t;
  auto r = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", t.path("none.sock")});
  INFO(r.err);
  CHECK(r.status == 69);
  CHECK(contains(r.err, "no tether server is running"));
}

// Whether one of `pid`'s threads is named `name` (/proc/PID/task/TID/comm).
bool has_thread(pid_t pid, const std::string& name) {
  const std::string task = "/proc/" + std::to_string(pid) + "/task";
  DIR* d = ::opendir(task.c_str());
  if (!d) return false;
  bool found = false;
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.' && slurp(task + "/" + e->d_name + "/comm") == name + "\n") found = true;
  ::closedir(d);
  return found;
}

TEST_CASE("Ctrl-C ends a prompt --connect that waits for a server still starting, at once") {
  TmpDir t;
  const std::string sock = t.path("starting.sock");
  // A server that has taken the name but does not listen yet (its bridge is still starting): a
  // client waits up to 10 s for it (socket_path.h).
  int lock = ::open((sock + ".lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(lock >= 0);
  REQUIRE(tether::serve::take_server_lock(lock));  // as `tether serve` takes it

  Proc client(connect_arg("prompt", sock, {"--json", "hi"}), t.env(), t.path("c.out"), t.path("c.err"));
  // Its bridge's supervisor thread runs: start() is waiting (signals are blocked before any thread).
  REQUIRE(eventually([&] { return has_thread(client.pid(), "tether-super"); }, 5s));
  auto sent = Clock::now();
  client.kill(SIGINT);
  auto status = client.wait_exit(3s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
  INFO("stdout: " << client.out() << "\nstderr: " << client.err());
  REQUIRE(status.has_value());  // not after the 10 s of patience
  CHECK(*status == 128 + SIGINT);
  CHECK(took < 2000ms);
  auto out = json::parse(client.out());
  CHECK(out["ok"] == false);
  CHECK(out["error"]["code"] == "cancelled");
  ::close(lock);
}

// --- 8. connection churn during a streaming turn -------------------------------------------------------

TEST_CASE("200 clients come and go while a turn streams: the turn completes whole, the server's fds return") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  // The flood's chunks are counted, not kept.
  std::size_t chunks = 0;
  a.sink = [&](const json& m) {
    if (!is_update(m, "agent_message_chunk")) return false;
    ++chunks;
    return true;
  };
  const int baseline = fd_count(srv.pid());
  REQUIRE(baseline > 0);

  constexpr std::size_t kChunks = 100000;
  auto turn = a.request("session/prompt", text_prompt(sid, "/flood " + std::to_string(kChunks)));
  REQUIRE(a.wait_until([&] { return chunks > 0; }));
  const std::string init =
      R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})";
  int answered = 0;
  std::size_t after_20 = 0;
  for (int i = 0; i < 200; ++i) {
    if (i == 20) after_20 = chunks;
    {
      Raw x(srv.socket());
      switch (i % 5) {
        case 0: break;  // closes right after connecting
        case 1: {       // a proper initialize, answered
          x.send_raw(init + "\n");
          answered += x.wait([](const json& m) { return is_response(m, 1); }, 10s).has_value();
          break;
        }
        case 2: x.send_raw(init.substr(0, 40)); break;  // drops mid-line
        case 3: x.send_raw(init + "\n"); break;         // asks and leaves without reading
        case 4: {                                       // attaches to the busy session, then leaves
          x.send_raw(init + "\n");
          x.send({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "session/load"},
                  {"params", {{"sessionId", sid}, {"cwd", t.dir}, {"mcpServers", json::array()}}}});
          x.wait([](const json& m) { return is_response(m, 2); }, 10s);
          break;
        }
      }
    }
    a.drain_some(4);  // at most 256 KiB per client that came and went
  }
  const std::size_t during = chunks;
  CHECK(answered == 40);
  // Read slowly, the stream was still going after the first 20 clients: they overlapped.
  CHECK(after_20 < kChunks);
  auto r = a.response(turn, 60s);
  MESSAGE(after_20 << " chunks after 20 clients, " << during << " after 200, of " << kChunks);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(chunks == kChunks);
  CHECK_FALSE(a.closed());
  CHECK(srv.proc().running());
  CHECK(eventually([&] { return fd_count(srv.pid()) == baseline; }));
  INFO("server fds now " << fd_count(srv.pid()) << ", baseline " << baseline);
  CHECK(fd_count(srv.pid()) == baseline);
  // Still serving.
  Raw late(srv.socket());
  initialize(late);
  auto next = a.request("session/prompt", text_prompt(sid, "still here"));
  a.sink = nullptr;
  CHECK(stop_reason(a.response(next)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: still here"));
}

// --- acceptance ---------------------------------------------------------------------------------------

TEST_CASE("serve closes a client's session at the agent when its last client leaves, and every session at --stop") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  for (int i = 0; i < 3; ++i) {
    auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"hello"}));
    CHECK(r.status == 0);
  }
  auto count = [&](const std::string& needle) {
    std::string trace = srv.trace();
    std::size_t n = 0;
    for (auto at = trace.find(needle); at != std::string::npos; at = trace.find(needle, at + 1)) ++n;
    return n;
  };
  // Three sessions of their own, each closed once its client left (the main one stays open).
  CHECK(eventually([&] { return count("-> {\"id\"") > 0 && count("\"method\":\"session/close\"") == 3; }, 5s));
  CHECK(count("\"method\":\"session/new\"") == 4);
  CHECK(count("$/ping") == 0);
  // --stop closes what is left: the main session.
  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", srv.socket()});
  CHECK(stop.status == 0);
  CHECK(srv.proc().wait_exit(10s) == 0);
  CHECK(count("\"method\":\"session/close\"") == 4);
}

TEST_CASE("tether prompt --connect=PATH prints the demo agent's answer and exits 0") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"hello"}));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.out, "Echo: hello"));
  CHECK(srv.proc().running());
}
