// `tether talk` as a person uses it: the built binary in a real pseudo-terminal, talking to the
// built-in demo agent (the default bridge), keystrokes in, screen text out. Every wait is for a
// condition on the screen with a deadline; nothing sleeps to synchronize. Script mode (stdin not a
// terminal) runs over plain pipes.
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "pty_session.h"
#include "support/run.h"
#include "support/support.h"

using tether::test::Pty;
using tether::test::tether_bin;
using namespace std::chrono_literals;

namespace {

// A home of its own for each test: history, config and state never leak between tests or from
// the person running them.
struct Home {
  std::string dir;
  Home() {
    char tmpl[] = "/tmp/tether-talk-e2e-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~Home() {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) MESSAGE("could not remove " << dir);
  }
  std::vector<std::string> env() const {
    return {"HOME=" + dir,          "XDG_STATE_HOME=" + dir + "/state", "XDG_CONFIG_HOME=" + dir + "/config",
            "TERM=xterm",           "LANG=C.UTF-8",                    "LC_ALL=",
            "NO_COLOR=1",           "TETHER_BRIDGE=",                  "TETHER_HISTORY=",
            "VISUAL=",              "EDITOR="};
  }
  std::string history() const { return dir + "/state/tether/history"; }
};

std::vector<std::string> talk(std::vector<std::string> args = {}) {
  std::vector<std::string> argv{tether_bin(), "talk"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

constexpr const char* kPrompt = "tether> ";

// Sends a line once the prompt is there, the way a person types: the keys, then Enter.
void type_line(Pty& t, const std::string& line) {
  t.send(line);
  t.send("\r");
}

std::string dump(const Pty& t) { return "--- screen text ---\n" + t.text() + "\n-------------------"; }

void expect(Pty& t, std::string_view needle, std::chrono::milliseconds limit = 15s) {
  bool ok = t.wait_for(needle, limit);
  if (!ok) FAIL_CHECK("did not see \"" << std::string(needle) << "\"\n" << dump(t));
  REQUIRE(ok);
}

void quit(Pty& t) {
  t.mark();
  t.send("\x04");  // Ctrl-D on an empty line
  auto st = t.wait_exit(15s);
  REQUIRE_MESSAGE(st.has_value(), "tether talk did not exit after Ctrl-D\n" << dump(t));
  CHECK(*st == 0);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST_CASE("a prompt streams its answer with tool calls set apart, and the prompt comes back") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "hello streaming world");
  expect(t, "Echo: hello streaming world");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  std::string out = t.since_mark();
  CHECK(out.find("thinking: Reading the prompt") != std::string::npos);
  CHECK(out.find("tool: Count words (think, in_progress)") != std::string::npos);
  CHECK(out.find("tool: Count words: completed") != std::string::npos);
  CHECK(out.find("plan: [x] Read the prompt") != std::string::npos);
  CHECK(out.find("usage: ") != std::string::npos);
  quit(t);
}

TEST_CASE("Ctrl-C during a slow turn cancels that turn only; the next prompt works in the same session") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/sleep 30000 a slow one");
  expect(t, "tool: Count words: completed");  // the agent is now sleeping
  t.mark();
  t.send("\x03");
  expect(t, "^C (cancelled)", 5s);
  expect(t, kPrompt, 5s);
  t.mark();
  type_line(t, "and the next one");
  expect(t, "Echo: and the next one");
  expect(t, "turn 2 of this session");  // same session, same agent process
  expect(t, kPrompt);
  CHECK(t.count("restart") == 0);
  quit(t);
}

TEST_CASE("Ctrl-C at the prompt clears the line and keeps the REPL") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  t.send("abc");
  expect(t, "abc");
  t.mark();
  t.send("\x03");
  expect(t, "^C");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "def");
  expect(t, "Echo: def");
  CHECK(t.text().find("Echo: abcdef") == std::string::npos);
  expect(t, kPrompt);

  // In a /multi block, Ctrl-C discards the block and returns to the normal prompt.
  t.mark();
  type_line(t, "/multi");
  expect(t, "...> ");
  t.mark();
  type_line(t, "dropped line");
  expect(t, "...> ");
  t.mark();
  t.send("\x03");
  expect(t, "(the /multi block was discarded)");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "kept line");
  expect(t, "Echo: kept line\n");
  quit(t);
}

TEST_CASE("a /multi block is sent as one prompt, with the default and a custom terminator") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/multi");
  expect(t, "...> ");
  for (const char* line : {"line one", "line two"}) {
    t.mark();
    type_line(t, line);
    expect(t, "...> ");
  }
  t.mark();
  type_line(t, "/end");
  expect(t, "Summary: 4 words");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);

  t.mark();
  type_line(t, "/multi EOF");
  expect(t, "...> ");
  t.mark();
  type_line(t, "/end is just text here");
  expect(t, "...> ");
  t.mark();
  type_line(t, "EOF");
  expect(t, "Summary: 5 words");
  expect(t, "turn 2 of this session");
  quit(t);
}

TEST_CASE("pasted lines become one prompt, sent by the Enter after them") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  t.send("\x1b[200~first pasted line\nsecond pasted line\n\x1b[201~");
  expect(t, "...> ");
  CHECK(t.count("Echo:") == 0);  // nothing sent by the paste itself
  t.mark();
  t.send("\r");
  expect(t, "Summary: 6 words");
  expect(t, "turn 1 of this session");
  quit(t);
}

TEST_CASE("history survives a restart of tether; space-prefixed lines are not kept") {
  Home home;
  {
    Pty t(talk(), home.env());
    expect(t, kPrompt);
    t.mark();
    type_line(t, "remember this line");
    expect(t, "Echo: remember this line");
    expect(t, kPrompt);
    t.mark();
    type_line(t, " keep this one secret");
    expect(t, "Echo: keep this one secret");  // the demo agent trims the echo
    expect(t, kPrompt);
    quit(t);
  }
  std::string data = slurp(home.history());
  CHECK(data == "remember this line\n");
  struct stat st;
  REQUIRE(::stat(home.history().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((home.dir + "/state/tether").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  {
    Pty t(talk(), home.env());
    expect(t, kPrompt);
    t.mark();
    t.send("\x1b[A");  // Up: the newest entry of the previous run
    expect(t, "remember this line");
    t.mark();
    t.send("\r");
    expect(t, "Echo: remember this line");
    quit(t);
  }
  {
    // --no-history: nothing read, nothing written.
    Pty t(talk({"--no-history"}), home.env());
    expect(t, kPrompt);
    t.mark();
    type_line(t, "not recorded");
    expect(t, "Echo: not recorded");
    quit(t);
    CHECK(slurp(home.history()) == "remember this line\n");
  }
}

TEST_CASE("a permission request is answered by a keystroke; Ctrl-C answers it cancelled") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "please edit the file");
  expect(t, "permission: Edit a file (edit)");
  expect(t, "choose 1-4");
  t.send("1");
  expect(t, "Permission granted: the edit was applied");
  expect(t, kPrompt);

  t.mark();
  type_line(t, "edit it once more");
  expect(t, "choose 1-4");
  t.send("r");  // first letter of Reject
  expect(t, "Permission denied: the edit was skipped");
  expect(t, kPrompt);

  t.mark();
  type_line(t, "and edit again");
  expect(t, "choose 1-4");
  t.send("\x03");
  expect(t, "cancelled");
  expect(t, "Permission was not given: the edit was skipped");
  expect(t, kPrompt);
  quit(t);
}

TEST_CASE("a permission question shows the edit's diff before its options; -q too") {
  for (bool quiet : {false, true}) {
    CAPTURE(quiet);
    Home home;
    Pty t(talk(quiet ? std::vector<std::string>{"-q"} : std::vector<std::string>{}), home.env());
    expect(t, kPrompt);
    t.mark();
    type_line(t, "change /diff the line");
    expect(t, "choose 1-4");
    std::string screen = t.since_mark();
    auto removed = screen.find("    -line two");
    auto added = screen.find("    +change the line");
    auto options = screen.find("[1/a] Allow");
    CHECK(screen.find("    demo.txt") != std::string::npos);
    CHECK(screen.find("@@ -1,3 +1,3 @@") != std::string::npos);
    CHECK(removed != std::string::npos);
    CHECK(added != std::string::npos);
    CHECK(removed < options);
    CHECK(added < options);
    t.send("r");
    expect(t, "Permission denied: the edit was skipped");
    expect(t, kPrompt);
    quit(t);
  }
}

TEST_CASE("a bridge killed mid-turn: one line says so, the prompt is retried, the session goes on") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/sleep 1500 survive this");
  expect(t, "tool: Count words: completed");
  auto kids = t.grandchildren();
  REQUIRE(kids.size() == 1);
  REQUIRE(::kill(kids[0], SIGKILL) == 0);
  expect(t, "Echo: survive this");
  expect(t, kPrompt);
  CHECK(t.count("killed by SIGKILL") == 1);
  CHECK(t.count("retry 1 of 1") == 1);
  CHECK(t.count("session was restored") == 0);  // folded into the one line
  t.mark();
  type_line(t, "/status");
  expect(t, "restarts:  1 in the last 60 s");
  expect(t, "generation 2");
  t.mark();
  type_line(t, "still here");
  expect(t, "Echo: still here");
  quit(t);
}

TEST_CASE("past the restart budget the REPL stays up, says why, and /restart brings the bridge back") {
  Home home;
  Pty t(talk({"--max-restarts", "0"}), home.env());
  expect(t, kPrompt);
  // /crash is one of the agent's commands, advertised right after session/new: once a first
  // answer is in, the advertisement (earlier on the wire) has been seen.
  t.mark();
  type_line(t, "warm up");
  expect(t, "Echo: warm up");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/crash right now");
  expect(t, "tether did not restart the bridge (--max-restarts is 0)");
  expect(t, "crashing on purpose");  // the stderr tail is shown
  expect(t, kPrompt);
  t.mark();
  type_line(t, "are you there");
  expect(t, "the bridge is not running");
  expect(t, kPrompt);
  CHECK(t.count("Echo: are you there") == 0);
  t.mark();
  type_line(t, "/stderr");
  expect(t, "demo-agent: crashing on purpose");
  t.mark();
  type_line(t, "/restart");
  expect(t, "the bridge was restarted");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "back again");
  expect(t, "Echo: back again");
  quit(t);
}

TEST_CASE("an idle bridge that dies is restarted with one line, and the next prompt works") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  auto kids = t.grandchildren();
  REQUIRE(kids.size() == 1);
  t.mark();
  REQUIRE(::kill(kids[0], SIGKILL) == 0);
  expect(t, "killed by SIGKILL");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "after the crash");
  expect(t, "Echo: after the crash");
  CHECK(t.count("killed by SIGKILL") == 0);
  quit(t);
}

TEST_CASE("slash commands: /help lists the agent's commands, unknown ones are refused, // is literal") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "warm up");  // the agent's commands came before this answer on the wire
  expect(t, "Echo: warm up");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/help");
  expect(t, "The agent's commands");
  expect(t, "/chunks N");
  t.mark();
  type_line(t, "/nonsense");
  expect(t, "unknown command /nonsense");
  t.mark();
  type_line(t, "//literal slash");
  expect(t, "Echo: /literal slash");
  t.mark();
  type_line(t, "/exit");
  auto st = t.wait_exit(15s);
  REQUIRE(st.has_value());
  CHECK(*st == 0);
}

TEST_CASE("script mode: one prompt per line, commands work, exit status at the end") {
  tether::test::RunOptions o;
  o.env = {"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.stdin_text = "first prompt\n\n/multi\nblock line one\nblock line two\n/end\nlast prompt\n";
  auto r = tether::test::run(talk(), o);
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("Echo: first prompt\n") != std::string::npos);
  CHECK(r.out.find("Echo: block line one block line two\nSummary: 6 words") != std::string::npos);  // one prompt
  CHECK(r.out.find("Echo: last prompt\n") != std::string::npos);
  CHECK(r.out.find("turn 3 of this session") != std::string::npos);
  CHECK(r.out.find("tool:") == std::string::npos);  // stdout carries answers only

  o.stdin_text = "//stop refusal no thanks\nfine\n";  // `//`: sent as typed, whatever the agent advertised
  auto refused = tether::test::run(talk(), o);
  CHECK(refused.shell_status() == 1);
  CHECK(refused.out.find("Echo: fine") != std::string::npos);

  o.stdin_text = "/bogus\nok\n";
  auto bad = tether::test::run(talk(), o);
  CHECK(bad.shell_status() == 65);
  CHECK(bad.err.find("unknown command /bogus") != std::string::npos);

  o.stdin_text = "//crash now\nnever sent\n";
  auto dead = tether::test::run(talk({"--max-restarts", "0"}), o);
  CHECK(dead.shell_status() == 69);
  CHECK(dead.err.find("did not restart the bridge") != std::string::npos);
  CHECK(dead.err.find("1 more input line was not sent") != std::string::npos);
}

TEST_CASE("an agent that wants a sign-in: talk lists its methods and uses the one picked; none picked exits 69") {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE(dir);
  std::string fake = std::string(dir) + "/fake_acp_agent";
  Home home;
  {
    Pty t(talk({"--", fake, "auth"}), home.env());
    expect(t, "Pick one");
    std::string menu = t.text();
    CHECK(menu.find("[2]  agent-login: Agent login") != std::string::npos);
    CHECK(menu.find("api-key") != std::string::npos);
    type_line(t, "2");
    expect(t, kPrompt);
    t.mark();
    type_line(t, "/status");
    expect(t, "auth:      agent-login");
    quit(t);
  }
  {
    Pty t(talk({"--", fake, "auth"}), home.env());
    expect(t, "Pick one");
    type_line(t, "");
    auto st = t.wait_exit(15s);
    REQUIRE(st.has_value());
    CHECK(*st == 69);
    CHECK(t.text().find("--auth") != std::string::npos);
  }
}

TEST_CASE("script mode: /mode, /model and /set list and change the session's settings; /status shows them") {
  tether::test::RunOptions o;
  o.env = {"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.stdin_text = "/mode\n/model\n/model shout\nhello\n/set model echo\nagain\n/mode read-only\n/status\n";
  auto r = tether::test::run(talk(), o);
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("mode: ask (offers ask, read-only)") != std::string::npos);
  CHECK(r.out.find("model: echo (offers echo, shout)") != std::string::npos);
  CHECK(r.out.find("Echo: HELLO\n") != std::string::npos);
  CHECK(r.out.find("Echo: again\n") != std::string::npos);
  CHECK(r.out.find("setting:   mode: read-only") != std::string::npos);
  CHECK(r.err.find("model shout: set") != std::string::npos);

  o.stdin_text = "/mode yolo\n";
  auto bad = tether::test::run(talk(), o);
  CHECK(bad.shell_status() == 64);
  CHECK(bad.err.find("ask, read-only") != std::string::npos);
}

TEST_CASE("talk closes its sessions: /session new closes the old one, exit the last one") {
  tether::test::RunOptions o;
  char tmpl[] = "/tmp/tether-talk-trace-XXXXXX";
  int fd = ::mkstemp(tmpl);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::string trace = tmpl;
  o.env = {"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.stdin_text = "one\n/session new\ntwo\n";
  auto r = tether::test::run(talk({"--trace", trace}), o);
  CHECK(r.shell_status() == 0);
  std::ifstream in(trace);
  std::string wire((std::istreambuf_iterator<char>(in)), {});
  ::unlink(trace.c_str());
  auto count = [&](const std::string& needle) {
    std::size_t n = 0;
    for (auto at = wire.find(needle); at != std::string::npos; at = wire.find(needle, at + 1)) ++n;
    return n;
  };
  CHECK(count("\"method\":\"session/new\"") == 2);
  CHECK(count("\"method\":\"session/close\"") == 2);
  CHECK(count("$/ping") == 0);
}

TEST_CASE("script mode with stdin or stdout closed (`talk <&-`, `>&-`): exit 74, never a hang") {
  tether::test::RunOptions o;
  o.env = {"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.limit = 20s;
  std::vector<std::string> argv{"/bin/sh", "-c", "exec \"$0\" \"$@\" <&-"};
  for (auto& a : talk()) argv.push_back(a);
  auto r = tether::test::run(argv, o);
  CHECK_FALSE(r.timed_out);
  CHECK(r.shell_status() == 74);
  CHECK(r.err.find("cannot read stdin") != std::string::npos);

  // stdout closed instead: the answers cannot be written, an I/O error at the end.
  o.stdin_text = "hello\n";
  argv[2] = "exec \"$0\" \"$@\" >&-";
  auto out = tether::test::run(argv, o);
  CHECK_FALSE(out.timed_out);
  CHECK(out.shell_status() == 74);
}

// --- through a tether server (--connect) ------------------------------------------------------

TEST_CASE("--connect: another client's turn is drawn between ours, and the line being typed waits") {
  Home home;
  const std::string socket = home.dir + "/s.sock";
  Pty server({tether_bin(), "serve", "--socket", socket}, home.env());
  expect(server, "listening on");
  std::vector<std::string> connect{"--connect=" + socket, "--no-history"};

  Pty a(talk(connect), home.env());
  expect(a, "connected to tether server at " + socket);
  expect(a, kPrompt);
  Pty b(talk(connect), home.env());
  expect(b, kPrompt);

  b.mark();
  b.send("half typed");
  a.mark();
  type_line(a, "hello from a");
  expect(a, "Echo: hello from a");
  expect(b, "(other client) > hello from a");
  expect(b, "Echo: hello from a");
  expect(b, "turn 1 of this session");

  // What b was typing is still its line: Enter sends it, in the same shared session.
  a.mark();
  b.mark();
  b.send("\r");
  expect(b, "Echo: half typed");
  expect(b, "turn 2 of this session");
  expect(a, "(other client) > half typed");
  expect(a, "turn 2 of this session");
  CHECK(b.count("(other client)") == 0);  // its own turn is not someone else's

  // /status asks the server.
  a.mark();
  type_line(a, "/status");
  expect(a, "server:    " + socket);
  expect(a, "(the server's main session)");
  quit(a);
  quit(b);

  server.mark();
  auto stop = tether::test::run({tether_bin(), "serve", "--socket", socket, "--stop"}, {});
  CHECK(stop.shell_status() == 0);
  auto st = server.wait_exit(15s);
  REQUIRE(st.has_value());
}

TEST_CASE("--connect: talk -s NAME (first use) at a terminal gets a session of its own, not the server's main one") {
  Home home;
  const std::string socket = home.dir + "/s.sock";
  Pty server({tether_bin(), "serve", "--socket", socket}, home.env());
  expect(server, "listening on");
  std::vector<std::string> connect{"--connect=" + socket, "--no-history"};
  Pty a(talk(connect), home.env());
  expect(a, kPrompt);
  type_line(a, "on main");
  expect(a, "turn 1 of this session");
  connect.insert(connect.end(), {"-s", "work"});
  Pty b(talk(connect), home.env());
  expect(b, kPrompt);
  type_line(b, "on work");
  expect(b, "Echo: on work");
  expect(b, "of this session");
  CHECK(b.count("turn 1 of this session") == 1);
  CHECK(a.count("on work") == 0);
}

TEST_CASE("--connect with no server: one sentence that says how to start one, exit 69") {
  Home home;
  tether::test::RunOptions o;
  o.env = {"HOME=" + home.dir, "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.stdin_text = "hello\n";
  auto r = tether::test::run(talk({"--connect=" + home.dir + "/none.sock"}), o);
  CHECK(r.shell_status() == 69);
  CHECK(r.err == "tether: no tether server is listening on " + home.dir + "/none.sock (start one with `tether serve`)\n");
  auto usage = tether::test::run(talk({"--connect=" + home.dir + "/none.sock", "--", "some-bridge"}), o);
  CHECK(usage.shell_status() == 64);
  CHECK(usage.err.find("--connect takes no bridge command") != std::string::npos);
}

// --- rough edges (issue 16): each test fails on the code before its fix ------------------------

TEST_CASE("Ctrl-R: one Enter sends the line found, with no continuation prompt; a failed search sends nothing") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "alpha bravo");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  t.mark();
  t.send("\x12" "bravo");  // Ctrl-R, then the search text
  expect(t, "bck:");
  t.send("\r");  // one Enter: the search ends and the line found is sent
  expect(t, "turn 2 of this session", 5s);
  expect(t, kPrompt);
  CHECK(t.count("...>") == 0);
  CHECK(t.count("Echo: alpha bravo") == 1);

  // A search that finds nothing, then Enter, Enter: the line stays empty, and empty input is no turn.
  t.mark();
  t.send("\x12" "zzz");
  expect(t, "bck?");  // the search failed
  t.send("\r");
  expect(t, kPrompt);
  t.send("\r");
  expect(t, kPrompt);
  type_line(t, "charlie");
  expect(t, "Echo: charlie");
  expect(t, kPrompt);
  CHECK(t.count("turn 3 of this session") == 1);  // no turn in between
  CHECK(t.count("Summary: 0 words") == 0);
  CHECK(t.count("...>") == 0);

  // Ctrl-C in a search clears the line at once (not at the next key), with no bell (the search is
  // not a mistake), and SIGTERM ends tether.
  t.mark();
  t.send("\x12" "alpha");
  expect(t, "bck:");
  std::size_t raw_at = t.raw().size();
  t.send("\x03");
  expect(t, "^C", 5s);
  expect(t, kPrompt);
  CHECK(t.raw().find('\a', raw_at) == std::string::npos);
  type_line(t, "delta");
  expect(t, "Echo: delta\n");
  CHECK(t.count("Echo: alpha bravo") == 0);
  expect(t, kPrompt);
  t.send("\x12" "alpha");
  expect(t, "bck:");
  REQUIRE(::kill(t.pid(), SIGTERM) == 0);
  auto st = t.wait_exit(5s);
  REQUIRE(st.has_value());
  CHECK(*st == 128 + SIGTERM);
}

TEST_CASE("Ctrl-V that ends a Ctrl-R search on an empty line: talk does not quit, the next line is sent") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "first one");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  // Ctrl-R, then Ctrl-V on an empty line: the Ctrl-V ends the search and is run again for its key,
  // at once; it was handed end of input, which ended the empty line as Ctrl-D: talk quit. Now the
  // empty line is simply offered again.
  t.mark();
  t.send("\x12");
  expect(t, "bck:");
  t.send("\x16");
  REQUIRE(t.wait_keys_read());
  type_line(t, "still here");
  expect(t, "Echo: ", 5s);
  expect(t, kPrompt);
  quit(t);
}

TEST_CASE("a resize during a Ctrl-R search or after Ctrl-V neither ends the search nor types a key") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "alpha one");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  // The search is under way (libedit waits inside it for the next key) when the resize comes:
  // Enter then sends the line found, not the draft typed before the search.
  t.mark();
  t.send("draft" "\x12" "alp");
  expect(t, "bck:");
  expect(t, "alpha one");
  t.resize(30, 70);
  t.send("\r");
  expect(t, "turn 2 of this session", 5s);
  expect(t, kPrompt);
  CHECK(t.count("Echo: alpha one") == 1);
  CHECK(t.count("Echo: draft") == 0);
  // Ctrl-V waits for the key to take literally (the same wait inside one command): a resize then
  // is no key.
  t.mark();
  t.send("ab" "\x16");
  expect(t, "ab");
  t.resize(40, 120);
  t.send("c\r");
  expect(t, "turn 3 of this session", 5s);
  CHECK(t.count("^G") == 0);                  // libedit shows a BEL in the line so
  CHECK(t.count("1 word, 3 characters") == 1);  // the screen drops the BEL from the echo: count it
  expect(t, kPrompt);
  quit(t);
}

// Keys that leave libedit waiting inside one command for the next key: a lone Escape, ESC [ and
// ESC O (starts of the arrow keys' sequences) and Ctrl-X (a prefix of emacs commands).
struct Pending {
  const char* name;
  const char* keys;
  bool held;  // the input decoder holds it first as a possible start of a paste marker
};
constexpr Pending kPending[] = {
    {"Escape", "\x1b", true}, {"ESC [", "\x1b[", true}, {"ESC O", "\x1bO", false}, {"Ctrl-X", "\x18", false}};

// Types "qz" and the pending keys, and returns once libedit waits for the key after them.
void leave_pending(Pty& t, const Pending& p) {
  t.mark();
  t.send(std::string("qz") + p.keys);
  expect(t, "qz", 5s);
  REQUIRE(t.wait_keys_read());
  if (p.held) {
    // The decoder holds these kPartialWait (40 ms) for the rest of a paste marker, then gives
    // them to libedit; nothing shows when. A timer is the only thing to wait for: too short a
    // wait could only let the old code pass, never fail the fixed one.
    t.wait_for("\x01never", 200ms);
  }
}

TEST_CASE("Ctrl-C with a key sequence pending (Escape, ESC [, ESC O, Ctrl-X) clears the line at once, with no bell") {
  // libedit was given Escape to end its wait; after Escape it asked for yet another key, with a
  // bell, for ever (100% CPU, only SIGKILL ended tether).
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  for (const Pending& p : kPending) {
    std::string name = p.name;
    CAPTURE(name);
    leave_pending(t, p);
    std::size_t raw_at = t.raw().size();
    t.send("\x03");
    expect(t, "^C", 5s);
    expect(t, kPrompt, 5s);
    CHECK(t.raw().find('\a', raw_at) == std::string::npos);
  }
  // Every line was dropped, and no half sequence is left to eat the next key.
  t.mark();
  type_line(t, "done");
  expect(t, "Echo: done\n");
  expect(t, kPrompt);
  quit(t);
}

TEST_CASE("SIGTERM or SIGHUP with a key sequence pending ends tether at once") {
  struct Case {
    int sig;
    Pending pending;
  };
  for (const Case& c : {Case{SIGTERM, kPending[0]}, Case{SIGHUP, kPending[0]}, Case{SIGTERM, kPending[3]},
                        Case{SIGHUP, kPending[2]}}) {
    std::string name = c.pending.name;
    CAPTURE(c.sig);
    CAPTURE(name);
    Home home;
    Pty t(talk(), home.env());
    expect(t, kPrompt);
    leave_pending(t, c.pending);
    std::size_t raw_at = t.raw().size();
    REQUIRE(::kill(t.pid(), c.sig) == 0);
    auto st = t.wait_exit(5s);
    REQUIRE_MESSAGE(st.has_value(), "tether did not exit\n" << dump(t));
    CHECK(*st == 128 + c.sig);
    CHECK(t.raw().find('\a', raw_at) == std::string::npos);
  }
  // Ctrl-V on an empty line waits for the key to take literally (a typed Ctrl-C then is that
  // key); a SIGINT sent meanwhile ends the wait as Ctrl-D would, which must not pass for Ctrl-D:
  // the line is cleared and tether goes on.
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  t.send("x");
  expect(t, "x", 5s);
  std::size_t raw_at = t.raw().size();
  t.send("\x15" "\x16");  // Ctrl-U empties the line (which redraws it), then Ctrl-V
  for (int i = 0; i < 250 && t.raw().size() == raw_at; ++i) t.wait_for("\x01never", 20ms);
  REQUIRE(t.raw().size() > raw_at);
  REQUIRE(t.wait_keys_read());
  REQUIRE(::kill(t.pid(), SIGINT) == 0);
  expect(t, "^C", 5s);
  expect(t, kPrompt, 5s);
  type_line(t, "still here");
  expect(t, "Echo: still here");
  expect(t, kPrompt);
  quit(t);
}

TEST_CASE("after a resize during a Ctrl-R search, Ctrl-C and SIGTERM act at once (not at the next key)") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "alpha one");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  t.mark();
  t.send("\x12" "alp");
  expect(t, "bck:");
  expect(t, "alpha one");
  t.resize(30, 100);
  REQUIRE(t.wait_signal_taken(SIGWINCH));  // the search took the resize and waits on
  t.send("\x03");
  expect(t, "^C", 5s);
  expect(t, kPrompt, 5s);
  // The Ctrl-C was spent on the line: the next turn runs to its end.
  type_line(t, "next");
  expect(t, "turn 2 of this session");
  CHECK(t.count("cancelled") == 0);
  CHECK(t.count("Echo: next\n") == 1);
  expect(t, kPrompt);
  t.send("\x12" "alp");
  expect(t, "bck:");
  t.resize(40, 120);
  REQUIRE(t.wait_signal_taken(SIGWINCH));
  REQUIRE(::kill(t.pid(), SIGTERM) == 0);
  auto st = t.wait_exit(5s);
  REQUIRE_MESSAGE(st.has_value(), "tether did not exit on SIGTERM\n" << dump(t));
  CHECK(*st == 128 + SIGTERM);
}

TEST_CASE("Ctrl-C during a flood: nothing of the turn is drawn after the cancel mark, and the rest is counted") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/flood 50000000");  // 100 MB if nobody stopped it: it streams until the cancel lands
  expect(t, "w w w w w w w w");
  t.send("\x03");
  expect(t, "^C (cancelled)", 10s);
  expect(t, kPrompt, 20s);
  std::string out = t.since_mark();
  std::string after = out.substr(out.find("^C (cancelled)"));
  INFO("after the cancel mark:\n" << after.substr(0, 400));
  CHECK(after.find("w w") == std::string::npos);
  type_line(t, "still fine");
  expect(t, "Echo: still fine");
  quit(t);
}

TEST_CASE("an agent command shadowed by one of talk's (the demo agent's /exit CODE) is listed as //exit and reached so") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "warm up");  // the agent's commands came before this answer on the wire
  expect(t, "Echo: warm up");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/help");
  expect(t, "The agent's commands");
  expect(t, "  //exit CODE");
  expect(t, kPrompt);
  CHECK(t.count("  /exit CODE") == 0);
  CHECK(t.count("  /chunks N") == 1);  // the others keep their one slash
  t.mark();
  type_line(t, "//exit 3");  // the agent exits with status 3, as asked; talk goes on
  expect(t, "status 3");
  expect(t, kPrompt);
  type_line(t, "after it");
  expect(t, "Echo: after it");
  quit(t);
}

TEST_CASE("a permission question withdrawn, or left open by the turn's end, is finished on a line of its own") {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE(dir);
  std::string fake = std::string(dir) + "/fake_acp_agent";
  Home home;
  for (const char* how : {"mid-answer", "turn-ends"}) {
    CAPTURE(how);
    Pty t(talk({"--", fake, "withdraw", how}), home.env());
    expect(t, kPrompt);
    t.mark();
    type_line(t, "hello");
    expect(t, "choose 1-2");
    expect(t, std::string("permission: Touch a file (edit): ") + (std::string(how) == "mid-answer" ? "withdrawn" : "cancelled"));
    expect(t, kPrompt);
    std::string out = t.since_mark();
    INFO(out);
    CHECK(out.find("partial answer\n") != std::string::npos);  // the answer's line ends before the outcome
    CHECK(out.find("partial answerwithdrawn") == std::string::npos);
    CHECK(out.find("partial answercancelled") == std::string::npos);
    quit(t);
  }
}

TEST_CASE("one number format: the turn's usage, /status and prompt's usage line all group digits by thousands") {
  Home home;
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "count me");
  expect(t, "usage: 1,004 of 200,000 tokens (0.5%)");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/status");
  expect(t, "context:   1,004 of 200,000 tokens (0.5%)");
  quit(t);

  tether::test::RunOptions o;
  o.env = {"HOME=" + home.dir, "XDG_CONFIG_HOME=" + home.dir, "TETHER_BRIDGE=", "NO_COLOR=1"};
  auto r = tether::test::run({tether_bin(), "prompt", "-v", "count me"}, o);
  CHECK(r.shell_status() == 0);
  CHECK(r.err.find("usage: 1,004 of 200,000 tokens") != std::string::npos);
}

TEST_CASE("script mode: a blank line between two answers (and command outputs), each answer ending its line") {
  tether::test::RunOptions o;
  o.env = {"HOME=/nonexistent", "XDG_CONFIG_HOME=/nonexistent", "TETHER_BRIDGE=", "NO_COLOR=1"};
  o.stdin_text = "one\n//chunks 2 two\n/mode\nthree\n";
  auto r = tether::test::run(talk(), o);
  CHECK(r.shell_status() == 0);
  CHECK(r.out ==
        "Echo: one\nSummary: 1 word, 3 characters; turn 1 of this session.\n"
        "\n"
        "Echo: two\nSummary: 1 word, 3 characters; turn 2 of this session.\n"
        "\n"
        "mode: ask (offers ask, read-only)\n"
        "\n"
        "Echo: three\nSummary: 1 word, 5 characters; turn 3 of this session.\n");

  // The same on a terminal (stdin a pipe, stdout the terminal): the answers do not run together.
  Home home;
  std::vector<std::string> argv{"/bin/sh", "-c", "printf 'one\\ntwo\\n' | exec \"$0\" talk -q", tether_bin()};
  Pty t(argv, home.env());
  auto st = t.wait_exit(15s);
  REQUIRE(st.has_value());
  CHECK(*st == 0);
  INFO(dump(t));
  CHECK(t.text().find("turn 1 of this session.\n\nEcho: two") != std::string::npos);
}

// Issue 15: a named agent from the config file at a terminal, and the [talk] section's permission
// (deny: the demo agent's edit is refused without a question, where talk's default would ask).
TEST_CASE("talk --agent NAME at a terminal: the config's agent runs, and [talk] applies") {
  Home home;
  std::string dir = home.dir + "/config/tether";
  REQUIRE(std::system(("mkdir -p '" + dir + "'").c_str()) == 0);
  std::ofstream(dir + "/config.toml") << "[talk]\npermission = \"deny\"\n[agents.demo2]\ncommand = [\"sh\", \"-c\", "
                                         "\"exec \\\"$0\\\" demo-agent\", \"" << tether_bin() << "\"]\n";
  Pty t(talk({"--agent", "demo2"}), home.env());
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/status");
  expect(t, "bridge:    sh -c");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "please edit notes");
  expect(t, "Permission denied");
  expect(t, kPrompt);
  CHECK(t.since_mark().find("[1/a]") == std::string::npos);  // no question was asked
  quit(t);
}

// Continued sessions (issue 15): talk -c continues the last conversation here; /sessions lists
// the conversations (the turn log's and the demo agent's session/list); /load N switches the
// running talk to one of them.
TEST_CASE("talk -c continues the last conversation; /sessions lists them; /load N switches to one") {
  Home home;
  std::string first_id;
  {
    Pty t(talk(), home.env());
    expect(t, kPrompt);
    type_line(t, "my name is Ada");
    expect(t, "turn 1 of this session");
    expect(t, kPrompt);
    quit(t);
  }
  {
    Pty t(talk({"-c"}), home.env());
    expect(t, "continued session demo-");
    expect(t, "(1 earlier prompt)");
    expect(t, kPrompt);
    t.mark();
    type_line(t, "what is my name?");
    expect(t, "turn 2 of this session");
    expect(t, kPrompt);
    quit(t);
  }
  Pty t(talk(), home.env());
  expect(t, kPrompt);
  type_line(t, "another conversation");
  expect(t, "turn 1 of this session");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/sessions");
  expect(t, "continues one; * marks this session.");
  std::string listed = t.since_mark();
  INFO(listed);
  CHECK(listed.find("*   1  ") != std::string::npos);  // this session, the newest
  CHECK(listed.find("    2  ") != std::string::npos);
  CHECK(listed.find("my name is Ada (2 prompts)") != std::string::npos);
  expect(t, kPrompt);
  t.mark();
  type_line(t, "/load 2");
  expect(t, "continued session demo-");
  expect(t, "(2 earlier prompts)");
  expect(t, kPrompt);
  t.mark();
  type_line(t, "and again");
  expect(t, "turn 3 of this session");
  expect(t, kPrompt);
  // A number that is not in the last list changes nothing (it is no id to send the agent).
  t.mark();
  type_line(t, "/load 9");
  expect(t, "no session 9 in the last /sessions");
  expect(t, kPrompt);
  type_line(t, "still here");
  expect(t, "turn 4 of this session");
  expect(t, kPrompt);
  quit(t);
}
