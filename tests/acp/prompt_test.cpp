// `tether prompt` as a user runs it: the built binary (TETHER_BIN), real pipes, against the fake
// agent (tests/fakes/fake_acp_agent.cpp) and the built-in demo agent.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "prompt_support.h"
#include "support/run.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::RunResult;
using tether::test::tether_bin;

using namespace tether::test::prompt;

TEST_CASE("the demo agent answers: text on stdout, the agent's steps on stderr, exit 0") {
  Scratch s;
  auto r = run(with_demo({"hello", "world"}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out == demo_answer("hello world", 2, 11) + "\n");
  CHECK(r.err.find("plan: ") != std::string::npos);
  CHECK(r.err.find("tool: Count words (think, completed)") != std::string::npos);
  CHECK(r.err.find("thinking: ") != std::string::npos);

  auto quiet = run(with_demo({"-q", "hello", "world"}), opts(s));
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.out == r.out);
  CHECK(quiet.err.empty());
}

TEST_CASE("the prompt comes from stdin when there are no words, or '-'") {
  Scratch s;
  RunOptions o = opts(s);
  o.stdin_text = "hello from stdin\n";
  auto r = run(with_demo({}), o);
  CHECK(r.exit_code == 0);
  CHECK(r.out == demo_answer("hello from stdin", 3, 16) + "\n");
  auto dash = run(with_demo({"-q", "-"}), o);
  CHECK(dash.out == r.out);

  o.stdin_text = "\n";
  auto empty = run(with_demo({}), o);
  CHECK(empty.exit_code == 65);
}

TEST_CASE("no words and stdin a terminal: exit 64 with a hint, never a hang") {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  std::string slave_name = ::ptsname(master);
  int errp[2];
  REQUIRE(::pipe(errp) == 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    int slave = ::open(slave_name.c_str(), O_RDWR);
    ::dup2(slave, 0);
    ::dup2(errp[1], 2);
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::execl(tether_bin().c_str(), "tether", "prompt", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(errp[1]);
  int status = 0;
  bool ended = tether::test::eventually([&] { return ::waitpid(pid, &status, WNOHANG) == pid; },
                                        std::chrono::milliseconds(10000));
  if (!ended) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
  }
  char buf[4096];
  ssize_t n = ::read(errp[0], buf, sizeof buf);
  std::string err(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
  ::close(errp[0]);
  ::close(master);
  REQUIRE(ended);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 64);
  CHECK(err.find("pipe it on stdin") != std::string::npos);
}

TEST_CASE("streamed text arrives in order and complete") {
  Scratch s;
  std::string expected;
  for (int i = 1; i <= 3000; ++i) expected += std::to_string(i) + " ";
  for (const char* mode : {"--stream", "--no-stream"}) {
    auto r = run(with_fake({mode}, {"count", "3000"}), opts(s));
    CHECK(r.exit_code == 0);
    CHECK(r.out == expected + "\n");
  }
  // The demo agent in 257 chunks says exactly what it says in one.
  auto one = run(with_demo({"-q", "/chunks", "1", "a", "b", "c", "dé"}), opts(s));
  auto many = run(with_demo({"-q", "--stream", "/chunks", "257", "a", "b", "c", "dé"}), opts(s));
  CHECK(one.exit_code == 0);
  CHECK(many.exit_code == 0);
  CHECK(one.out == demo_answer("a b c dé", 4, 8) + "\n");
  CHECK(many.out == one.out);
}

TEST_CASE("a crash mid-turn: restart, the session is loaded, the prompt retried, exit 0") {
  Scratch s;
  auto r = run(with_fake({"--restart-delay", "0.05"}, {"crash-once", s.path("crashed")}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out == "recovered\n");  // not streamed: the first attempt's partial answer is not shown
  CHECK(r.err.find("exited with status 3") != std::string::npos);
  CHECK(r.err.find("retry 1 of 1") != std::string::npos);
  CHECK(r.err.find("restored") != std::string::npos);
}

TEST_CASE("a crash without loadSession: a new session and a notice that the context was lost") {
  Scratch s;
  auto r = run(with_fake({"--restart-delay", "0.05"}, {"no-load", s.path("crashed")}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out == "recovered\n");
  CHECK(r.err.find("context was lost") != std::string::npos);
}

TEST_CASE("a crash every time: exit 69 with the bridge's last stderr lines, at most 4 spawns") {
  Scratch s;
  SUBCASE("past the retries (1): two spawns") {
    auto r = run(with_fake({"--restart-delay", "0.05"}, {"crash-always", s.path("pids")}), opts(s));
    CHECK(r.exit_code == 69);
    auto pids = pids_in(s.path("pids"));
    CHECK(pids.size() == 2);
    REQUIRE_FALSE(pids.empty());
    auto err = lines_of(r.err);
    REQUIRE(err.size() >= 2);
    CHECK(err.back() == "fake: boom " + std::to_string(pids.back()));
    CHECK(err[err.size() - 2] == "fake: starting the turn");
  }
  SUBCASE("past the restart budget: at most 1 + 3 spawns, in the budget's time") {
    auto r = run(with_fake({"--restart-delay", "0.05", "--retries", "10", "--json"}, {"crash-always", s.path("pids")}),
                 opts(s));
    CHECK(r.exit_code == 69);
    auto pids = pids_in(s.path("pids"));
    CHECK(pids.size() == 4);
    CHECK(r.seconds < 10);  // 0.05 + 0.1 + 0.2 s of backoff, plus the spawns
    REQUIRE_FALSE(pids.empty());
    CHECK(lines_of(r.err).back() == "fake: boom " + std::to_string(pids.back()));
    auto out = lines_of(r.out);
    REQUIRE(out.size() == 1);
    json j = json::parse(out[0]);
    CHECK(j["ok"] == false);
    CHECK(j["error"]["code"] == "restart_limit");
    CHECK(j["error"]["exitStatus"] == 3);
    CHECK(j["error"]["stderrTail"].get<std::string>().find("fake: boom") != std::string::npos);
    CHECK(j["error"]["message"].get<std::string>().find("gave up") != std::string::npos);
  }
}

TEST_CASE("an agent that never answers, --timeout 1: exit 75 and the bridge is gone") {
  Scratch s;
  auto r = run(with_fake({"--timeout", "1"}, {"hang", s.path("pids")}), opts(s));
  CHECK(r.exit_code == 75);
  CHECK(r.err.find("timeout") != std::string::npos);
  auto pids = pids_in(s.path("pids"));
  REQUIRE(!pids.empty());
  for (pid_t p : pids) CHECK_FALSE(tether::test::process_exists(p));
}

TEST_CASE("SIGINT mid-turn: session/cancel reaches the agent, tether dies of SIGINT") {
  Scratch s;
  for (const char* mode : {"record", "cancel-end-turn"}) {
    std::string mode_name = mode;
    CAPTURE(mode_name);
    std::string file = s.path(std::string(mode) + ".log");
    RunOptions o = opts(s);
    bool sent = false;
    o.on_output = [&](pid_t pid, const std::string& out, const std::string&) {
      if (!sent && out.find("ready") != std::string::npos) sent = ::kill(pid, SIGINT) == 0;
    };
    auto r = run(with_fake({"--stream"}, {mode, file}), o);
    REQUIRE(sent);
    CHECK(r.signal == SIGINT);
    CHECK(r.shell_status() == 130);
    auto log = lines_of(slurp(file));
    int spawned = 0, cancels = 0;
    for (const auto& l : log) {
      spawned += l == "spawned";
      cancels += l == "session/cancel";
    }
    CHECK(spawned == 1);  // the turn ended on the agent's answer: no escalation, no restart
    CHECK(cancels == 1);
    CHECK(r.err.find("did not answer session/cancel") == std::string::npos);
    CHECK(r.out.find("ready\nstopped ") == 0);  // trailing updates after the cancel are accepted
  }
}

TEST_CASE("updates after the final response never leak into the next turn") {
  Scratch s;
  auto r = run(with_fake({"--json", "--repeat", "4"}, {"late-updates"}), opts(s));
  CHECK(r.exit_code == 0);
  auto out = lines_of(r.out);
  REQUIRE(out.size() == 4);
  for (int i = 0; i < 4; ++i) {
    json j = json::parse(out[static_cast<std::size_t>(i)]);
    CHECK(j["ok"] == true);
    CHECK(j["text"] == "answer-" + std::to_string(i + 1));
    CHECK(j["toolCalls"].empty());
  }
}

TEST_CASE("permission: deny rejects once, allow allows once, allow-always persists; no fitting option means cancelled") {
  Scratch s;
  auto deny = run(with_demo({"-q", "please", "edit", "it"}), opts(s));
  CHECK(deny.exit_code == 0);
  CHECK(deny.out.find("Permission denied: the edit was skipped.") != std::string::npos);
  auto allow = run(with_demo({"--permission", "allow", "please", "edit", "it"}), opts(s));
  CHECK(allow.exit_code == 0);
  CHECK(allow.out.find("Permission granted") != std::string::npos);
  CHECK(allow.err.find("permission: Edit a file: allowed (allow_once)") != std::string::npos);
  auto always = run(with_demo({"--permission", "allow-always", "please", "edit", "it"}), opts(s));
  CHECK(always.exit_code == 0);
  CHECK(always.err.find("permission: Edit a file: allowed (allow_always)") != std::string::npos);

  struct Case {
    std::string policy;
    std::string kinds;
    std::string answer;
  } cases[] = {
      {"deny", "allow_once,reject_always,reject_once", "selected:opt-reject_once"},
      {"deny", "allow_once,reject_always", "cancelled"},
      {"deny", "allow_always,allow_once", "cancelled"},
      {"allow", "reject_once,allow_once", "selected:opt-allow_once"},
      {"allow", "allow_once,allow_always", "selected:opt-allow_once"},
      {"allow", "allow_always", "cancelled"},
      {"allow-always", "allow_once,allow_always", "selected:opt-allow_always"},
      {"allow-always", "reject_once,allow_once", "selected:opt-allow_once"},
      {"allow", "reject_once,reject_always", "cancelled"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.policy);
    CAPTURE(c.kinds);
    auto r = run(with_fake({"-q", "--permission", c.policy}, {"permission", c.kinds}), opts(s));
    CHECK(r.exit_code == 0);
    CHECK(r.out == c.answer + "\n");
  }
  auto ask = run(with_demo({"--permission", "ask", "hi"}), opts(s));
  CHECK(ask.exit_code == 64);
}

TEST_CASE("permission, end to end: the turn completes after the answer, with the tool call's outcome") {
  Scratch s;
  RunOptions o = opts(s);
  o.limit = std::chrono::milliseconds(20000);  // a hang after the permission answer fails here
  auto allow = run(with_demo({"--json", "--permission", "allow", "please", "edit", "the", "file"}), o);
  REQUIRE_FALSE(allow.timed_out);
  CHECK(allow.exit_code == 0);
  json a = json::parse(lines_of(allow.out).at(0));
  CHECK(a["stopReason"] == "end_turn");
  CHECK(a["text"].get<std::string>().find("Permission granted: the edit was applied") != std::string::npos);
  REQUIRE(a["toolCalls"].size() == 2);
  CHECK(a["toolCalls"][1]["id"] == "edit-1");
  CHECK(a["toolCalls"][1]["status"] == "completed");

  auto deny = run(with_demo({"--json", "--permission", "deny", "please", "edit", "the", "file"}), o);
  REQUIRE_FALSE(deny.timed_out);
  CHECK(deny.exit_code == 0);
  json d = json::parse(lines_of(deny.out).at(0));
  CHECK(d["stopReason"] == "end_turn");
  CHECK(d["text"].get<std::string>().find("Permission denied: the edit was skipped.") != std::string::npos);
  REQUIRE(d["toolCalls"].size() == 2);
  CHECK(d["toolCalls"][1]["status"] == "failed");

  // The side channel tells the answer and the outcome; every turn of a session asks again.
  auto again = run(with_demo({"--permission", "allow", "--repeat", "3", "please", "edit", "the", "file"}), o);
  REQUIRE_FALSE(again.timed_out);
  CHECK(again.exit_code == 0);
  std::size_t granted = 0, completed = 0;
  for (const auto& l : lines_of(again.out)) granted += l.rfind("Permission granted", 0) == 0;
  for (const auto& l : lines_of(again.err)) completed += l == "tool: Edit a file (edit, completed)";
  CHECK(granted == 3);
  CHECK(completed == 3);
}

TEST_CASE("--timeout: the message gives the duration as a person writes it") {
  Scratch s;
  auto r = run(with_demo({"--timeout", "0.25", "/sleep", "5000", "hi"}), opts(s));
  CHECK(r.exit_code == 75);
  CHECK(r.err.find("within the timeout (250 ms); it was cancelled") != std::string::npos);
  CHECK(r.err.find("0.250000") == std::string::npos);
}

TEST_CASE("a bridge that cannot be started: exit 69, the spawn error, no restart-limit wording") {
  Scratch s;
  for (bool json_out : {false, true}) {
    CAPTURE(json_out);
    std::vector<std::string> argv{tether_bin(), "prompt"};
    if (json_out) argv.push_back("--json");
    for (const char* w : {"hi", "--", "/nonexistent/agent"}) argv.push_back(w);
    auto r = run(argv, opts(s));
    CHECK(r.exit_code == 69);
    CHECK(r.err.find("cannot start the bridge: exec /nonexistent/agent: No such file or directory") != std::string::npos);
    CHECK(r.err.find("gave up") == std::string::npos);
    CHECK(r.err.find("restart") == std::string::npos);
    if (json_out) {
      json j = json::parse(lines_of(r.out).at(0));
      CHECK(j["ok"] == false);
      CHECK(j["error"]["message"].get<std::string>().find("cannot start the bridge") == 0);
    }
  }
}

TEST_CASE("--json: one object, field by field") {
  Scratch s;
  auto r = run(with_demo({"--json", "--permission", "allow", "please", "edit", "it"}), opts(s));
  CHECK(r.exit_code == 0);
  auto out = lines_of(r.out);
  REQUIRE(out.size() == 1);
  json j = json::parse(out[0]);
  CHECK(j.size() == 8);  // with usage: the demo agent sends a usage_update
  CHECK(j["ok"] == true);
  CHECK(j["text"] == demo_answer("please edit it", 3, 14) +
                         "\nPermission granted: the edit was applied (nothing was written: this is a demo).");
  CHECK(j["stopReason"] == "end_turn");
  CHECK(j["sessionId"].get<std::string>().rfind("demo-", 0) == 0);
  CHECK(j["restarts"] == 0);
  CHECK(j["elapsedMs"].is_number_integer());
  CHECK(j["elapsedMs"].get<long>() >= 0);
  REQUIRE(j["toolCalls"].size() == 2);
  CHECK(j["toolCalls"][0] == json::parse(R"({"id":"count-1","title":"Count words","kind":"think","status":"completed"})"));
  CHECK(j["toolCalls"][1] == json::parse(R"({"id":"edit-1","title":"Edit a file","kind":"edit","status":"completed"})"));

  auto bad = run(with_fake({"--json"}, {"version", "2"}), opts(s));
  CHECK(bad.exit_code == 76);
  json e = json::parse(lines_of(bad.out).at(0));
  CHECK(e["ok"] == false);
  CHECK(e["error"]["code"] == "protocol_error");
  CHECK(e["error"]["message"].get<std::string>().find("version 2") != std::string::npos);
  CHECK(e.size() == 2);
}

// The keys in the order the man page documents them (issue 16: they came out sorted). Parsed with
// ordered_json, which keeps the order of the text.
std::vector<std::string> keys_of(const nlohmann::ordered_json& j) {
  std::vector<std::string> keys;
  for (const auto& [k, v] : j.items()) keys.push_back(k);
  return keys;
}

TEST_CASE("--json: keys in the documented order, answers and errors alike") {
  using Keys = std::vector<std::string>;
  Scratch s;
  auto r = run(with_demo({"--json", "--permission", "allow", "please", "edit", "it"}), opts(s));
  auto ok = nlohmann::ordered_json::parse(lines_of(r.out).at(0));
  CHECK(keys_of(ok) == Keys{"ok", "text", "stopReason", "sessionId", "toolCalls", "usage", "restarts", "elapsedMs"});
  CHECK(keys_of(ok["usage"]) == Keys{"used", "size"});
  REQUIRE(ok["toolCalls"].size() == 2);
  CHECK(keys_of(ok["toolCalls"][1]) == Keys{"id", "title", "kind", "status"});

  auto dropped = run(with_fake({"--max-line", "1000", "--json"}, {"oversize", "5000"}), opts(s));
  CHECK(keys_of(nlohmann::ordered_json::parse(lines_of(dropped.out).at(0))) ==
        Keys{"ok", "text", "stopReason", "sessionId", "toolCalls", "restarts", "elapsedMs", "droppedLines"});

  auto agent = run(with_fake({"--json"}, {"error-data"}), opts(s));
  auto a = nlohmann::ordered_json::parse(lines_of(agent.out).at(0));
  CHECK(keys_of(a) == Keys{"ok", "error"});
  CHECK(keys_of(a["error"]) == Keys{"code", "message", "rpcCode", "data"});

  auto crash = run(with_demo({"--json", "--retries", "0", "--max-restarts", "0", "/crash"}), opts(s));
  auto c = nlohmann::ordered_json::parse(lines_of(crash.out).at(0));
  CHECK(keys_of(c["error"]) == Keys{"code", "message", "signal", "stderrTail"});
}

TEST_CASE("stop reasons and agent errors: exit 1") {
  Scratch s;
  auto refusal = run(with_demo({"-q", "--json", "/stop", "refusal", "x"}), opts(s));
  CHECK(refusal.exit_code == 1);
  CHECK(json::parse(lines_of(refusal.out).at(0))["stopReason"] == "refusal");
  auto error = run(with_demo({"-q", "/error", "x"}), opts(s));
  CHECK(error.exit_code == 1);
  CHECK(error.out.empty());
  CHECK(error.err.find("-32603") != std::string::npos);
  auto exits = run(with_demo({"-q", "--retries", "0", "/exit", "9"}), opts(s));
  CHECK(exits.exit_code == 69);
  CHECK(exits.err.find("exited with status 9") != std::string::npos);
}

TEST_CASE("--allow-fs: the agent reads and writes inside --cwd only") {
  Scratch s;
  ::mkdir(s.path("work").c_str(), 0755);
  std::ofstream(s.path("work/in.txt")) << "inside text\n";
  std::ofstream(s.path("secret.txt")) << "secret\n";
  std::string cwd = s.path("work");
  auto read_in = run(with_demo({"-q", "--allow-fs", "--cwd", cwd, "/read", cwd + "/in.txt"}), opts(s));
  CHECK(read_in.out.find("Read " + cwd + "/in.txt: inside text") != std::string::npos);
  auto read_out = run(with_demo({"-q", "--allow-fs", "--cwd", cwd, "/read", cwd + "/../secret.txt"}), opts(s));
  CHECK(read_out.out.find("Could not read") != std::string::npos);
  CHECK(read_out.out.find("secret\n") == std::string::npos);
  auto no_fs = run(with_demo({"-q", "--cwd", cwd, "/read", cwd + "/in.txt"}), opts(s));
  CHECK(no_fs.out.find("does not offer file reads") != std::string::npos);

  auto write = run(with_demo({"-q", "--allow-fs", "--permission", "allow", "--cwd", cwd, "/write", cwd + "/out.txt", "new", "words"}),
                   opts(s));
  CHECK(write.exit_code == 0);
  CHECK(slurp(cwd + "/out.txt") == "new words\n");
  auto escape = run(with_demo({"-q", "--allow-fs", "--permission", "allow", "--cwd", cwd, "/write", s.path("evil.txt"), "x"}),
                    opts(s));
  CHECK(escape.out.find("failed") != std::string::npos);
  CHECK(::access(s.path("evil.txt").c_str(), F_OK) != 0);
}

// Hostile input (issue 12): a read of a FIFO used to block tether's main thread in open() for ever
// (--timeout, Ctrl-C and SIGTERM did nothing); now it is an error answered at once. A missing file
// is the spec's "Resource not found" error, which agents such as Gemini CLI recognise.
TEST_CASE("--allow-fs: a FIFO is refused at once, a missing file is \"Resource not found\"") {
  Scratch s;
  ::mkdir(s.path("work").c_str(), 0755);
  std::string cwd = s.path("work");
  REQUIRE(::mkfifo((cwd + "/pipe").c_str(), 0644) == 0);
  RunOptions o = opts(s);
  o.limit = std::chrono::milliseconds(60000);
  auto fifo = run(with_demo({"-q", "--allow-fs", "--timeout", "30", "--cwd", cwd, "/read", cwd + "/pipe"}), o);
  CHECK_FALSE(fifo.timed_out);
  CHECK(fifo.exit_code == 0);
  CHECK(fifo.seconds < 15);  // long before the turn's --timeout: it never waited on the FIFO
  CHECK(fifo.out.find("Could not read " + cwd + "/pipe: " + cwd + "/pipe is not a regular file") != std::string::npos);

  auto missing = run(with_demo({"-q", "--allow-fs", "--cwd", cwd, "/read", cwd + "/missing.txt"}), o);
  CHECK(missing.exit_code == 0);
  CHECK(missing.out.find("Could not read " + cwd + "/missing.txt: Resource not found: " + cwd + "/missing.txt") !=
        std::string::npos);
}

// Hostile agent (issue 12, finding 1): it swaps a directory of the session for a symlink to the
// outside while it asks to read and write through it. tether used to check the path once and then
// open by name, and lost this race hundreds of times in 3000 tries. The verdict is exact: no read
// of the outside text, nothing created outside, no temporary file left anywhere.
TEST_CASE("--allow-fs: a hostile agent racing a symlink swap never reads or writes outside") {
  Scratch s;
  std::string cwd = s.path("work"), outside = s.path("outside");
  REQUIRE(::mkdir(cwd.c_str(), 0755) == 0);
  REQUIRE(::mkdir(outside.c_str(), 0755) == 0);
  REQUIRE(::mkdir((cwd + "/race").c_str(), 0755) == 0);
  std::ofstream(cwd + "/race/secret.txt") << "inside";
  std::ofstream(outside + "/secret.txt") << "secret";
  REQUIRE(::symlink(outside.c_str(), (cwd + "/spare").c_str()) == 0);
  RunOptions o = opts(s);
  o.limit = std::chrono::milliseconds(60000);
  auto r = run(with_fake({"-q", "--allow-fs", "--cwd", cwd}, {"fs-race"}), o);
  MESSAGE(r.out);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("tries=") != std::string::npos);
  CHECK(r.out.find(" leaks=0 ") != std::string::npos);
  CHECK(slurp(outside + "/secret.txt") == "secret");
  auto listing = run({"/usr/bin/find", s.dir, "(", "-name", "*.tether-*", "-o", "-path", outside + "/*", ")", "-print"});
  CHECK(listing.out == outside + "/secret.txt\n");
}

TEST_CASE("| head -c 10: quiet SIGPIPE exit, no bridge left running") {
  Scratch s;
  std::string cmd = "'" + tether_bin() + "' prompt --stream go -- '" + fake_agent() + "' flood '" + s.path("pids") +
                    "' | head -c 10; echo \" ${PIPESTATUS[0]}\"";
  RunOptions o = opts(s);
  auto r = run({"/bin/bash", "-c", cmd}, o);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "x x x x x  141\n");
  CHECK(r.err.empty());
  auto pids = pids_in(s.path("pids"));
  REQUIRE(pids.size() == 1);
  CHECK_FALSE(tether::test::process_exists(pids[0]));
}

TEST_CASE("--repeat runs the turns in one session") {
  Scratch s;
  auto r = run(with_demo({"-q", "--repeat", "3", "/chunks", "1", "hi"}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out == demo_answer("hi", 1, 2, 1) + "\n" + demo_answer("hi", 1, 2, 2) + "\n" + demo_answer("hi", 1, 2, 3) + "\n");
}

// --- the session's lifecycle, settings and errors (issue 11) -------------------------------------

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

TEST_CASE("prompt closes its session at the agent, sends no $/ping, and stops the bridge at once") {
  Scratch s;
  std::string trace = s.path("wire");
  auto r = run(with_demo({"--trace", trace, "hello"}), opts(s));
  CHECK(r.exit_code == 0);
  std::string wire = slurp(trace);
  INFO(wire.substr(0, 3000));
  CHECK(count_of(wire, "\"method\":\"session/new\"") == 1);
  CHECK(count_of(wire, "\"method\":\"session/close\"") == 1);
  CHECK(wire.find("$/ping") == std::string::npos);
  CHECK(wire.find("-> {\"id\":4,\"jsonrpc\":\"2.0\",\"method\":\"session/close\"") != std::string::npos);
}

TEST_CASE("--model and --mode set the session up before the prompt; --set too; an id not offered exits 64 with the offer") {
  Scratch s;
  auto shout = run(with_demo({"--model", "shout", "hello there"}), opts(s));
  CHECK(shout.exit_code == 0);
  CHECK(shout.out.rfind("Echo: HELLO THERE\n", 0) == 0);
  auto set = run(with_demo({"--set", "model=shout", "quiet please"}), opts(s));
  CHECK(set.out.rfind("Echo: QUIET PLEASE\n", 0) == 0);
  auto ro = run(with_demo({"--mode", "read-only", "--permission", "allow", "please", "edit", "it"}), opts(s));
  CHECK(ro.exit_code == 0);
  CHECK(ro.out.find("Read-only mode: no file was edited.") != std::string::npos);
  CHECK(ro.err.find("permission:") == std::string::npos);  // it asked nothing

  auto bad_mode = run(with_demo({"--mode", "yolo", "hi"}), opts(s));
  CHECK(bad_mode.exit_code == 64);
  CHECK(bad_mode.err.find("ask, read-only") != std::string::npos);
  auto bad_model = run(with_demo({"--json", "--model", "gpt-9", "hi"}), opts(s));
  CHECK(bad_model.exit_code == 64);
  auto j = json::parse(bad_model.out);
  CHECK(j["error"]["code"] == "usage");
  CHECK(j["error"]["message"].get<std::string>().find("echo, shout") != std::string::npos);
  auto bad_set = run(with_demo({"--set", "nonsense", "hi"}), opts(s));
  CHECK(bad_set.exit_code == 64);
}

TEST_CASE("auth: nothing usable exits 69 at once naming the methods; --auth uses the one named") {
  Scratch s;
  auto r = run(with_fake({}, {"auth"}), opts(s));
  CHECK(r.exit_code == 69);
  for (const char* m : {"terminal-login", "agent-login", "api-key", "FAKE_API_KEY", "no credentials for the fake provider"})
    CHECK_MESSAGE(r.err.find(m) != std::string::npos, m);
  auto named = run(with_fake({"--auth", "agent-login"}, {"auth"}), opts(s));
  CHECK(named.exit_code == 0);
}

TEST_CASE("errors: the agent's own reason (data.details) in text and --json; the quoted stderr line is not a lone }") {
  Scratch s;
  auto r = run(with_fake({}, {"error-data"}), opts(s));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("Quota exceeded for model fake-1") != std::string::npos);
  auto j = run(with_fake({"--json"}, {"error-data"}), opts(s));
  auto obj = json::parse(j.out);
  CHECK(obj["error"]["data"]["details"] == "Quota exceeded for model fake-1");
  CHECK(obj["error"]["rpcCode"] == -32603);
}

TEST_CASE("a line the agent prints on stdout that is not JSON is shown on stderr") {
  Scratch s;
  auto r = run(with_fake({}, {"noisy"}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out == "ok\n");
  CHECK(r.err.find("the agent wrote on stdout: Please visit https://login.example.invalid/device?code=ABCD") != std::string::npos);
}

// --- hostile input (issue 12) -------------------------------------------------------------------

TEST_CASE("a chunk longer than --max-line: dropped, said on stderr, exit 1; --json counts it") {
  Scratch s;
  auto r = run(with_fake({"--max-line", "1000"}, {"oversize", "5000"}), opts(s));
  CHECK(r.exit_code == 1);
  CHECK(r.out == "before after\n");
  CHECK(r.err.find("1 line(s) from the agent were longer than --max-line (1000 bytes)") != std::string::npos);

  auto j = run(with_fake({"--max-line", "1000", "--json"}, {"oversize", "5000"}), opts(s));
  CHECK(j.exit_code == 1);
  json o = json::parse(lines_of(j.out).at(0));
  CHECK(o["text"] == "before after");
  CHECK(o["droppedLines"] == 1);

  // Under the limit nothing is dropped, and nothing is said.
  auto fits = run(with_fake({"--max-line", "100000", "--json"}, {"oversize", "5000"}), opts(s));
  CHECK(fits.exit_code == 0);
  CHECK_FALSE(json::parse(lines_of(fits.out).at(0)).contains("droppedLines"));
}

TEST_CASE("--timeout larger than the clock can hold means no timeout, not an instant one") {
  Scratch s;
  for (std::string t : {"1e10", "1e300"}) {
    auto r = run(with_fake({"--timeout", t}, {"count", "3"}), opts(s));
    CHECK_MESSAGE(r.exit_code == 0, "--timeout " << t << ": " << r.err);
    CHECK(r.out == "1 2 3 \n");
  }
}

namespace {
// The same command run by a shell that closed some of its descriptors first (`<&-`, `>&-`).
std::vector<std::string> with_closed(const std::string& redirections, std::vector<std::string> argv) {
  std::vector<std::string> sh{"/bin/sh", "-c", "exec \"$0\" \"$@\" " + redirections};
  sh.insert(sh.end(), argv.begin(), argv.end());
  return sh;
}
}  // namespace

TEST_CASE("stdin closed: reading the prompt from it is an I/O error (74), never a hang") {
  Scratch s;
  RunOptions o = opts(s);
  o.limit = std::chrono::milliseconds(20000);
  std::vector<std::string> argv{tether_bin(), "prompt", "--", fake_agent(), "count", "1"};
  auto r = run(with_closed("<&-", argv), o);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 74);
}

TEST_CASE("stdout and stderr closed: exit 74, and the answer never lands in the --trace file") {
  Scratch s;
  RunOptions o = opts(s);
  o.limit = std::chrono::milliseconds(20000);
  const std::string trace = s.path("trace");
  auto argv = with_fake({"--trace", trace}, {"count", "2"});
  auto r = run(with_closed(">&- 2>&-", argv), o);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 74);
  // Every line of the trace is a trace record ("TIME gN TAG TEXT"): no answer written into it.
  auto lines = lines_of(slurp(trace));
  CHECK_FALSE(lines.empty());
  for (const auto& l : lines) {
    CHECK_MESSAGE(l.find(" g") != std::string::npos, "not a trace line: " << l);
    CHECK(l != "1 2 ");
  }

  // Only stderr closed: the answer is written, and the exit is clean.
  auto only_err = run(with_closed("2>&-", with_fake({}, {"count", "2"})), o);
  CHECK(only_err.exit_code == 0);
  CHECK(only_err.out == "1 2 \n");
}
