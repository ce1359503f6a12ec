// The built-in demo agent (`tether demo-agent`) on the wire, driven line by line over real pipes
// the way a client would, with the awkward timings a real client produces: the answer to its
// permission request byte by byte, together with the next request, after a session/cancel. And
// its resources over many sessions: the fds it keeps open must not grow with them. Every wait has
// a deadline; nothing sleeps.
#include <doctest/doctest.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <optional>
#include <string>
#include <vector>

#include "support/support.h"

using nlohmann::json;
using tether::test::tether_bin;

namespace {

// `tether demo-agent` with its stdin and stdout on pipes; killed and reaped at the end.
class Agent {
 public:
  // `max_fds`: the child's RLIMIT_NOFILE (0: inherited). `env_extra`: NAME=value set in the child
  // too. `err_file`: the child's stderr goes there (else it is ours).
  Agent(const std::string& state_dir, rlim_t max_fds = 0, std::vector<std::string> env_extra = {},
        const std::string& err_file = "") {
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    std::string env = "TETHER_DEMO_STATE_DIR=" + state_dir;
    std::string bin = tether_bin();
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      if (max_fds) {
        rlimit lim{max_fds, max_fds};
        ::setrlimit(RLIMIT_NOFILE, &lim);
      }
      ::putenv(env.data());
      for (auto& e : env_extra) ::putenv(e.data());
      if (!err_file.empty()) {
        int fd = ::open(err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) ::dup2(fd, 2);
      }
      ::execl(bin.c_str(), "tether", "demo-agent", static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    to_ = in[1];
    from_ = out[0];
  }
  ~Agent() {
    ::close(to_);
    ::close(from_);
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
  }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  pid_t pid() const { return pid_; }

  void write_raw(const std::string& bytes) {
    std::size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = ::write(to_, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      REQUIRE(n > 0);
      off += static_cast<std::size_t>(n);
    }
  }
  void send(const json& msg) { write_raw(msg.dump() + "\n"); }

  // The next message, or nothing if none came within `limit` (the test then fails, it never hangs).
  std::optional<json> next(std::chrono::milliseconds limit = std::chrono::milliseconds(10000)) {
    auto until = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        json j = json::parse(buf_.substr(0, nl), nullptr, false);
        buf_.erase(0, nl + 1);
        if (j.is_object()) return j;
        continue;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{from_, POLLIN, 0};
      int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return std::nullopt;
      char b[65536];
      ssize_t n = ::read(from_, b, sizeof b);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return std::nullopt;
      buf_.append(b, static_cast<std::size_t>(n));
    }
  }

  // Messages up to and including the response with `id`; what came before it is in `seen`.
  json until_response(const json& id, std::vector<json>* seen = nullptr) {
    for (;;) {
      auto m = next();
      REQUIRE_MESSAGE(m.has_value(), "the demo agent did not answer request " << id.dump());
      if (!m->contains("method") && (*m)["id"] == id) return *m;
      if (seen) seen->push_back(std::move(*m));
    }
  }

  // Messages up to and including the agent's request with `method`.
  json until_request(const std::string& method, std::vector<json>* seen = nullptr) {
    for (;;) {
      auto m = next();
      REQUIRE_MESSAGE(m.has_value(), "the demo agent did not send " << method);
      if (m->value("method", "") == method && m->contains("id")) return *m;
      if (seen) seen->push_back(std::move(*m));
    }
  }

  void initialize() {
    send({{"jsonrpc", "2.0"}, {"id", "init"}, {"method", "initialize"}, {"params", {{"protocolVersion", 1}}}});
    json r = until_response("init");
    REQUIRE(r.contains("result"));
    CHECK(r["result"]["protocolVersion"] == 1);  // acp::kProtocolVersion: the client's own
  }

  std::string new_session(const std::string& id = "new") {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"method", "session/new"}, {"params", {{"cwd", "/tmp"}, {"mcpServers", json::array()}}}});
    json r = until_response(id);
    REQUIRE(r.contains("result"));
    return r["result"]["sessionId"].get<std::string>();
  }

  static json prompt(const json& id, const std::string& sid, const std::string& text) {
    return {{"jsonrpc", "2.0"},
            {"id", id},
            {"method", "session/prompt"},
            {"params", {{"sessionId", sid}, {"prompt", {{{"type", "text"}, {"text", text}}}}}}};
  }

 private:
  pid_t pid_ = -1;
  int to_ = -1, from_ = -1;
  std::string buf_;
};

struct StateDir {
  std::string dir;
  StateDir() {
    char tmpl[] = "/tmp/tether-demo-agent-test-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~StateDir() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
};

json selected(const json& id, const std::string& option) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", {{"outcome", {{"outcome", "selected"}, {"optionId", option}}}}}};
}

// The status of the last update of tool call `call` among `msgs`.
std::string tool_status(const std::vector<json>& msgs, const std::string& call) {
  std::string status;
  for (const auto& m : msgs) {
    if (m.value("method", "") != "session/update") continue;
    const json& u = m["params"]["update"];
    if (u.value("toolCallId", "") == call && u.contains("status")) status = u["status"].get<std::string>();
  }
  return status;
}

std::string answer(const std::vector<json>& msgs) {
  std::string text;
  for (const auto& m : msgs) {
    if (m.value("method", "") != "session/update") continue;
    const json& u = m["params"]["update"];
    if (u.value("sessionUpdate", "") == "agent_message_chunk") text += u["content"].value("text", "");
  }
  return text;
}

std::size_t open_fd_count(pid_t pid) {
  std::size_t n = 0;
  DIR* d = ::opendir(("/proc/" + std::to_string(pid) + "/fd").c_str());
  REQUIRE(d != nullptr);
  while (auto* e = ::readdir(d)) n += e->d_name[0] != '.';
  ::closedir(d);
  return n;
}

}  // namespace

TEST_CASE("demo agent: the turn goes on after the permission answer, however it arrives") {
  StateDir state;
  Agent a(state.dir);
  a.initialize();
  std::string sid = a.new_session();

  SUBCASE("allowed, in one write: the edit completes") {
    a.send(Agent::prompt(1, sid, "please edit the file"));
    json req = a.until_request("session/request_permission");
    a.send(selected(req["id"], "allow-once"));
    std::vector<json> seen;
    json r = a.until_response(1, &seen);
    CHECK(r["result"]["stopReason"] == "end_turn");
    CHECK(tool_status(seen, "edit-1") == "completed");
    CHECK(answer(seen).find("Permission granted") != std::string::npos);
  }
  SUBCASE("rejected, byte by byte: the edit fails") {
    a.send(Agent::prompt(1, sid, "please edit the file"));
    json req = a.until_request("session/request_permission");
    for (char c : selected(req["id"], "reject-once").dump() + "\n") a.write_raw(std::string(1, c));
    std::vector<json> seen;
    json r = a.until_response(1, &seen);
    CHECK(r["result"]["stopReason"] == "end_turn");
    CHECK(tool_status(seen, "edit-1") == "failed");
    CHECK(answer(seen).find("Permission denied: the edit was skipped.") != std::string::npos);
  }
  SUBCASE("the answer and the next requests in the same write: all are served, in order") {
    std::string other = a.new_session("new-2");
    a.send(Agent::prompt(1, sid, "please edit the file"));
    json req = a.until_request("session/request_permission");
    json ping = {{"jsonrpc", "2.0"}, {"id", "ping"}, {"method", "$/ping"}, {"params", json::object()}};
    a.write_raw(selected(req["id"], "allow-always").dump() + "\n" + ping.dump() + "\n" +
                Agent::prompt(2, other, "/chunks 1 hello").dump() + "\n");
    std::vector<json> seen;
    json r1 = a.until_response(1, &seen);
    CHECK(r1["result"]["stopReason"] == "end_turn");
    CHECK(tool_status(seen, "edit-1") == "completed");
    json p = a.until_response("ping");
    CHECK(p["error"]["code"] == -32601);
    std::vector<json> seen2;
    json r2 = a.until_response(2, &seen2);
    CHECK(r2["result"]["stopReason"] == "end_turn");
    CHECK(answer(seen2).find("Echo: hello") == 0);
  }
  SUBCASE("cancelled: session/cancel, then the answer cancelled; the turn ends cancelled") {
    a.send(Agent::prompt(1, sid, "please edit the file"));
    json req = a.until_request("session/request_permission");
    json cancel = {{"jsonrpc", "2.0"}, {"method", "session/cancel"}, {"params", {{"sessionId", sid}}}};
    json cancelled = {{"jsonrpc", "2.0"}, {"id", req["id"]}, {"result", {{"outcome", {{"outcome", "cancelled"}}}}}};
    a.write_raw(cancel.dump() + "\n" + cancelled.dump() + "\n");
    std::vector<json> seen;
    json r = a.until_response(1, &seen);
    CHECK(r["result"]["stopReason"] == "cancelled");
    CHECK(tool_status(seen, "edit-1") == "failed");
  }
  SUBCASE("two turns in a row, each asking: the second request has its own id") {
    for (int turn = 1; turn <= 2; ++turn) {
      CAPTURE(turn);
      a.send(Agent::prompt(turn, sid, "please edit the file"));
      json req = a.until_request("session/request_permission");
      a.send(selected(req["id"], "allow-once"));
      std::vector<json> seen;
      json r = a.until_response(turn, &seen);
      CHECK(r["result"]["stopReason"] == "end_turn");
      CHECK(tool_status(seen, "edit-" + std::to_string(turn)) == "completed");
    }
  }
}

TEST_CASE("demo agent: many sessions cost no fds; every history is kept") {
  StateDir state;
  // 40 fds are far fewer than the sessions: a history fd kept per session would run out quickly,
  // and the sessions past that point would silently lose their history.
  Agent a(state.dir, 40);
  a.initialize();
  std::size_t before = open_fd_count(a.pid());
  const int n = 300;
  std::string last;
  for (int i = 1; i <= n; ++i) {
    last = a.new_session("new-" + std::to_string(i));
    a.send(Agent::prompt(i, last, "/chunks 1 turn " + std::to_string(i)));
    json r = a.until_response(i);
    REQUIRE(r["result"]["stopReason"] == "end_turn");
  }
  std::size_t after = open_fd_count(a.pid());
  CHECK(after <= before);  // nothing stays open per session
  // The last session's history is there: session/load replays it.
  a.send({{"jsonrpc", "2.0"},
          {"id", "load"},
          {"method", "session/load"},
          {"params", {{"sessionId", last}, {"cwd", "/tmp"}, {"mcpServers", json::array()}}}});
  std::vector<json> seen;
  json r = a.until_response("load", &seen);
  REQUIRE_MESSAGE(r.contains("result"), r.dump());
  CHECK(answer(seen).find("Echo: turn " + std::to_string(n)) == 0);
}

// Hostile local users (issue 12, finding 3). The histories used to go to
// $TMPDIR/tether-demo-agent-UID (else /tmp), taken on trust: another user could create that name
// first, as a symlink or a directory full of symlinks, and have the victim's prompts appended to
// a file of their choice. Now the default is under $XDG_RUNTIME_DIR or ~/.local/state, and any
// state directory is checked: ours, 0700, not a symlink, and nothing in it is followed.
namespace {

// A scratch directory: `home` for HOME, an `attacker` directory open to all, a `victim.txt`.
struct Hostile {
  std::string dir;
  Hostile() {
    char tmpl[] = "/tmp/tether-demo-hostile-XXXXXX";
    dir = ::mkdtemp(tmpl);
    REQUIRE(::mkdir((dir + "/home").c_str(), 0700) == 0);
    REQUIRE(::mkdir((dir + "/attacker").c_str(), 0777) == 0);
    ::chmod((dir + "/attacker").c_str(), 0777);
    std::ofstream(dir + "/victim.txt") << "victim\n";
  }
  ~Hostile() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
  std::vector<std::string> entries(const std::string& name) const {
    std::vector<std::string> out;
    DIR* d = ::opendir(path(name).c_str());
    if (!d) return out;
    while (auto* e = ::readdir(d)) {
      std::string entry = e->d_name;
      if (entry != "." && entry != "..") out.push_back(entry);
    }
    ::closedir(d);
    return out;
  }
  // The environment of a user without XDG_RUNTIME_DIR or XDG_STATE_HOME, TMPDIR in the scratch.
  std::vector<std::string> env() const {
    return {"XDG_RUNTIME_DIR=", "XDG_STATE_HOME=", "HOME=" + path("home"), "TMPDIR=" + dir};
  }
};

std::string slurp_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// One turn in a new session; the session id.
std::string one_turn(Agent& a, const std::string& text) {
  a.initialize();
  std::string sid = a.new_session();
  a.send(Agent::prompt("p", sid, text));
  json r = a.until_response("p");
  REQUIRE_MESSAGE(r.contains("result"), r.dump());
  return sid;
}

}  // namespace

TEST_CASE("demo agent: a state directory planted under $TMPDIR is not used") {
  Hostile h;
  // The attacker's name, as the old default spelled it, is a symlink to their own directory.
  std::string planted = h.path("tether-demo-agent-" + std::to_string(::getuid()));
  REQUIRE(::symlink(h.path("attacker").c_str(), planted.c_str()) == 0);
  {
    Agent a("", 0, h.env());
    one_turn(a, "my secret prompt");
  }
  CHECK(h.entries("attacker").empty());
  // The history went to ~/.local/state, into a private directory.
  std::string mine = h.path("home/.local/state/tether/demo-agent");
  struct stat st;
  REQUIRE(::lstat(mine.c_str(), &st) == 0);
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(h.entries("home/.local/state/tether/demo-agent").size() == 1);
}

TEST_CASE("demo agent: a state directory that is a symlink, or open to others, is refused") {
  Hostile h;
  for (const std::string& name : {std::string("link"), std::string("attacker")}) {
    CAPTURE(name);
    if (name == "link") REQUIRE(::symlink(h.path("attacker").c_str(), h.path("link").c_str()) == 0);
    {
      Agent a(h.path(name), 0, h.env(), h.path("err.txt"));
      one_turn(a, "my secret prompt");  // the turn itself still works
    }
    CHECK(h.entries("attacker").empty());
    CHECK(slurp_file(h.path("err.txt")).find("not keeping session histories: " + h.path(name)) != std::string::npos);
  }
}

TEST_CASE("demo agent: a symlink planted in the state directory is not followed") {
  Hostile h;
  std::string state = h.path("state");
  REQUIRE(::mkdir(state.c_str(), 0700) == 0);
  Agent a(state, 0, h.env(), h.path("err.txt"));
  a.initialize();
  // The session id is known once session/new answers; its history is written at the end of its
  // first turn: the file is planted in between.
  std::string sid = a.new_session();
  REQUIRE(::symlink(h.path("victim.txt").c_str(), (state + "/" + sid).c_str()) == 0);
  a.send(Agent::prompt("p", sid, "my secret prompt"));
  json r = a.until_response("p");
  REQUIRE_MESSAGE(r.contains("result"), r.dump());
  CHECK(slurp_file(h.path("victim.txt")) == "victim\n");
  CHECK(slurp_file(h.path("err.txt")).find("a symlink is in its place") != std::string::npos);
}

// Sessions outlive the process (issue 15): another process loads them, lists them (session/list:
// newest first, a cwd filter, pages with a cursor), and the store stays bounded.
namespace {

json list(Agent& a, const json& id, json params) {
  a.send({{"jsonrpc", "2.0"}, {"id", id}, {"method", "session/list"}, {"params", std::move(params)}});
  json r = a.until_response(id);
  REQUIRE_MESSAGE(r.contains("result"), r.dump());
  return r["result"];
}

std::string session_in(Agent& a, const std::string& cwd, const std::string& text, const json& id) {
  a.send({{"jsonrpc", "2.0"}, {"id", id.dump() + "n"}, {"method", "session/new"}, {"params", {{"cwd", cwd}, {"mcpServers", json::array()}}}});
  json n = a.until_response(id.dump() + "n");
  std::string sid = n["result"]["sessionId"].get<std::string>();
  a.send(Agent::prompt(id, sid, "/chunks 1 " + text));
  REQUIRE(a.until_response(id)["result"]["stopReason"] == "end_turn");
  return sid;
}

}  // namespace

TEST_CASE("demo agent: another process loads a session, lists it by cwd, newest first, in pages") {
  StateDir state;
  std::string older, newer;
  {
    Agent a(state.dir);
    a.initialize();
    older = session_in(a, "/tmp", "my name is Ada", 1);
    newer = session_in(a, "/var", "elsewhere", 2);
  }
  Agent b(state.dir);
  b.initialize();
  json all = list(b, "all", json::object());
  REQUIRE(all["sessions"].size() == 2);
  CHECK(all["sessions"][0]["sessionId"] == newer);
  CHECK(all["sessions"][1]["sessionId"] == older);
  CHECK(all["sessions"][1]["title"] == "/chunks 1 my name is Ada");
  CHECK(all["sessions"][1]["cwd"] == "/tmp");
  CHECK(all["sessions"][1]["updatedAt"].get<std::string>().size() == 24);  // 2026-12-06T20:15:00.250Z
  CHECK_FALSE(all.contains("nextCursor"));
  json here = list(b, "here", {{"cwd", "/tmp"}});
  REQUIRE(here["sessions"].size() == 1);
  CHECK(here["sessions"][0]["sessionId"] == older);
  // Loaded here, it goes on where it was.
  b.send({{"jsonrpc", "2.0"}, {"id", "load"}, {"method", "session/load"},
          {"params", {{"sessionId", older}, {"cwd", "/tmp"}, {"mcpServers", json::array()}}}});
  REQUIRE(b.until_response("load").contains("result"));
  b.send(Agent::prompt("p", older, "/chunks 1 what is my name?"));
  std::vector<json> seen;
  REQUIRE(b.until_response("p", &seen)["result"]["stopReason"] == "end_turn");
  CHECK(answer(seen).find("turn 2 of this session") != std::string::npos);
  // Pages: more than one page's worth, walked with the cursor, each session once.
  for (int i = 0; i < 60; ++i) session_in(b, "/srv", "s" + std::to_string(i), 100 + i);
  json page = list(b, "p1", {{"cwd", "/srv"}});
  CHECK(page["sessions"].size() == 50);
  REQUIRE(page.contains("nextCursor"));
  json rest = list(b, "p2", {{"cwd", "/srv"}, {"cursor", page["nextCursor"]}});
  CHECK(rest["sessions"].size() == 10);
  CHECK_FALSE(rest.contains("nextCursor"));
}

TEST_CASE("demo agent: the store keeps the newest 200 sessions and none older than 30 days") {
  StateDir state;
  {
    Agent a(state.dir);
    a.initialize();
    for (int i = 0; i < 210; ++i) session_in(a, "/tmp", "s" + std::to_string(i), i);
  }
  // One of them last spoke 31 days ago.
  std::vector<std::string> names;
  DIR* d = ::opendir(state.dir.c_str());
  while (auto* e = ::readdir(d))
    if (e->d_name[0] != '.') names.push_back(e->d_name);
  ::closedir(d);
  REQUIRE(names.size() >= 210);
  timespec old[2] = {{::time(nullptr) - 31 * 24 * 3600, 0}, {::time(nullptr) - 31 * 24 * 3600, 0}};
  REQUIRE(::utimensat(AT_FDCWD, (state.dir + "/" + names[0]).c_str(), old, 0) == 0);
  Agent b(state.dir);
  b.initialize();
  session_in(b, "/tmp", "one more", "x");  // a new history: the store is pruned first
  std::size_t left = 0;
  bool old_left = false;
  d = ::opendir(state.dir.c_str());
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    ++left;
    old_left = old_left || names[0] == e->d_name;
  }
  ::closedir(d);
  CHECK(left == 201);  // the 200 newest, and the new one
  CHECK_FALSE(old_left);
}

TEST_CASE("demo agent: malformed histories and session/list params are refused or skipped, never a crash") {
  StateDir state;
  auto plant = [&](const std::string& name, const std::string& text) {
    int fd = ::open((state.dir + "/" + name).c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd >= 0);
    REQUIRE(::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()));
    ::close(fd);
  };
  {
    Agent a(state.dir);
    a.initialize();
    session_in(a, "/tmp", "a good one", 1);
  }
  plant("demo-1-1-1", "{\"u\":1,\"cwd\":2}\n{\"a\":[3]}\n");
  Agent b(state.dir);
  b.initialize();
  json all = list(b, "all", json::object());
  CHECK(all["sessions"].size() == 2);
  json null_cwd = list(b, "null", {{"cwd", nullptr}});
  CHECK(null_cwd["sessions"].size() == 2);
  b.send({{"jsonrpc", "2.0"}, {"id", "load"}, {"method", "session/load"},
          {"params", {{"sessionId", "demo-1-1-1"}, {"cwd", "/tmp"}, {"mcpServers", json::array()}}}});
  CHECK(b.until_response("load").contains("result"));
  // A request whose params are not what it expects: an error answer, and the agent goes on.
  b.send({{"jsonrpc", "2.0"}, {"id", "bad"}, {"method", "session/set_mode"}, {"params", {{"sessionId", 7}, {"modeId", 8}}}});
  CHECK(b.until_response("bad").contains("error"));
  CHECK(list(b, "after", json::object())["sessions"].size() == 2);
}

TEST_CASE("demo agent: a session loaded in one process survives another's pruning; a vanished history is not recreated") {
  StateDir state;
  std::string sid;
  {
    Agent a(state.dir);
    a.initialize();
    sid = session_in(a, "/tmp", "my name is Ada", 1);
  }
  const std::string path = state.dir + "/" + sid;
  timespec old[2] = {{::time(nullptr) - 31 * 24 * 3600, 0}, {::time(nullptr) - 31 * 24 * 3600, 0}};
  REQUIRE(::utimensat(AT_FDCWD, path.c_str(), old, 0) == 0);
  Agent c(state.dir);
  c.initialize();
  c.send({{"jsonrpc", "2.0"}, {"id", "load"}, {"method", "session/load"},
          {"params", {{"sessionId", sid}, {"cwd", "/tmp"}, {"mcpServers", json::array()}}}});
  REQUIRE(c.until_response("load").contains("result"));
  {
    Agent b(state.dir);
    b.initialize();
    session_in(b, "/tmp", "another", 2);  // a new history: the store is pruned first
  }
  CHECK(::access(path.c_str(), F_OK) == 0);
  // Removed anyway (by a person): the next turn does not start a truncated history.
  REQUIRE(::unlink(path.c_str()) == 0);
  c.send(Agent::prompt("p", sid, "/chunks 1 what is my name?"));
  REQUIRE(c.until_response("p")["result"]["stopReason"] == "end_turn");
  CHECK(::access(path.c_str(), F_OK) != 0);
}
