// No escape sequence of an agent's reaches the screen (issue 12, finding 2): `tether talk` and
// `tether prompt` run in a real pseudo-terminal against the fake agent's "hostile" mode, which
// puts OSC 52 (clipboard), OSC 0 (title), CSI 2J (clear), C1 CSI / OSC, DCS and BEL into everything
// a client may show: agentInfo, the session id, its commands, modes and config options, tool calls,
// permission options, plans, thoughts, answers, a stdout line that is not JSON, error messages and
// data, and its stderr. Every output path is walked (greeting, /help, /status, /mode, /model, /set,
// a turn with a permission question, /stderr, a failing turn; prompt streamed and not, -v, an agent
// error, a crash that quotes the stderr tail, --json; batch's records and stderr lines), and every
// byte written to the terminal is checked:
// colour is off (--color never, NO_COLOR), so the only escape sequences allowed are the few that
// talk's line editor draws the prompt with. Waits are for text on the screen, with deadlines.
// The colour case checks the colour rule itself: prompt and talk both honour NO_COLOR and TERM=dumb;
// the last one, the agent's terminals (--allow-terminal) as talk shows them.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "pty_session.h"
#include "support/support.h"

using tether::test::Pty;
using tether::test::tether_bin;
using namespace std::chrono_literals;

namespace {

std::string fake_agent() {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE_MESSAGE(dir, "TETHER_ACP_FAKES_DIR is not set (run through meson test)");
  return std::string(dir) + "/fake_acp_agent";
}

struct Home {
  std::string dir;
  Home() {
    char tmpl[] = "/tmp/tether-terminal-test-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    dir = tmpl;
  }
  ~Home() {
    std::string cmd = "rm -rf '" + dir + "'";
    if (std::system(cmd.c_str()) != 0) MESSAGE("could not remove " << dir);
  }
  std::vector<std::string> env() const {
    return {"HOME=" + dir,  "XDG_STATE_HOME=" + dir + "/state", "XDG_CONFIG_HOME=" + dir + "/config",
            "TERM=xterm",   "LANG=C.UTF-8",                    "LC_ALL=",
            "NO_COLOR=1",   "TETHER_BRIDGE=",                  "TETHER_HISTORY=",
            "VISUAL=",      "EDITOR="};
  }
};

// The escape sequence or C1 control at the start of s (ESC, or a UTF-8 encoded C1): its length,
// by the shapes a terminal parses (CSI to its final byte, control strings to BEL or ST).
std::size_t sequence_length(std::string_view s) {
  if (s.size() < 2) return s.size();
  unsigned char kind = static_cast<unsigned char>(s[1]);
  bool csi = kind == '[' || kind == 0x9b;
  bool str = kind == ']' || kind == 'P' || kind == 'X' || kind == '^' || kind == '_' || kind == 0x9d ||
             kind == 0x90 || kind == 0x98 || kind == 0x9e || kind == 0x9f;
  if (!csi && !str) return 2;
  for (std::size_t i = 2; i < s.size(); ++i) {
    unsigned char b = static_cast<unsigned char>(s[i]);
    if (csi && b >= 0x40 && b <= 0x7e) return i + 1;
    if (str && b == 0x07) return i + 1;
    if (str && b == 0x1b && i + 1 < s.size() && s[i + 1] == '\\') return i + 2;
  }
  return s.size();
}

std::string visible(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c >= 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// The control sequences and characters in what went to the terminal that are not in `allowed`:
// any ESC sequence, BEL, C1 controls (U+0080..U+009F in UTF-8, and raw bytes 0x80..0x9f that
// are not part of a UTF-8 character), DEL and C0 controls other than CR, LF, TAB and BS.
std::vector<std::string> foreign_controls(std::string_view raw, const std::set<std::string>& allowed) {
  std::vector<std::string> found;
  std::size_t i = 0;
  while (i < raw.size()) {
    unsigned char c = static_cast<unsigned char>(raw[i]);
    std::size_t len = 1;
    if (c == 0x1b) {
      len = sequence_length(raw.substr(i));
      std::string seq(raw.substr(i, len));
      if (!allowed.count(seq)) found.push_back(visible(seq));
    } else if (c == 0xc2 && i + 1 < raw.size() && static_cast<unsigned char>(raw[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(raw[i + 1]) <= 0x9f) {
      len = sequence_length(raw.substr(i));
      found.push_back("C1 " + visible(raw.substr(i, len)));
    } else if (c >= 0xc3 && c <= 0xf4) {
      // A UTF-8 lead byte: its continuation bytes are text, not C1 controls.
      len = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
      len = std::min(len, raw.size() - i);
    } else if (c >= 0x80 && c <= 0x9f) {
      found.push_back("raw C1 " + visible(raw.substr(i, 1)));
    } else if (c == 0x7f || (c < 0x20 && c != '\r' && c != '\n' && c != '\t' && c != '\b')) {
      found.push_back(visible(raw.substr(i, 1)));
    }
    i += len;
  }
  return found;
}

// The escape sequences talk's own drawing uses with TERM=xterm and no colour (seen in this walk):
// bracketed paste on and off (tether's line editor) and libedit's clear-to-end-of-screen. None of
// them is one the hostile agent sends.
const std::set<std::string> kTalkOwn = {"\x1b[?2004h", "\x1b[?2004l", "\x1b[J"};

void check_clean(const Pty& t, const std::set<std::string>& allowed, const std::string& what) {
  auto found = foreign_controls(t.raw(), allowed);
  std::string list;
  for (std::size_t k = 0; k < found.size() && k < 20; ++k) list += "  " + found[k] + "\n";
  CHECK_MESSAGE(found.empty(), what << ": " << found.size() << " control sequence(s) of the agent's reached the terminal:\n"
                                    << list << "--- screen text ---\n"
                                    << t.text());
}

std::string dump(const Pty& t) { return "--- screen text ---\n" + t.text() + "\n-------------------"; }

void expect(Pty& t, std::string_view needle, std::chrono::milliseconds limit = 15s) {
  bool ok = t.wait_for(needle, limit);
  if (!ok) FAIL_CHECK("did not see \"" << std::string(needle) << "\"\n" << dump(t));
  REQUIRE(ok);
}

constexpr const char* kPrompt = "tether> ";

// Types a line at the prompt and waits for `seen`, then for the prompt to come back.
void command(Pty& t, const std::string& line, std::string_view seen) {
  t.mark();
  t.send(line);
  t.send("\r");
  expect(t, seen);
  expect(t, kPrompt);
}

}  // namespace

TEST_CASE("talk under a pty: no control sequence of a hostile agent reaches the screen, on any output path") {
  Home home;
  Pty t({tether_bin(), "talk", "--color", "never", "--permission", "ask", "--", fake_agent(), "hostile"}, home.env());
  expect(t, kPrompt);
  CHECK(t.text().find("title") != std::string::npos);  // the greeting names the agent
  command(t, "/help", "description");
  command(t, "/status", "session:");
  command(t, "/mode", "mode");
  command(t, "/mode other", "offers");   // tether's own refusal, quoting the agent's ids
  command(t, "/mode plain", "refused");   // the agent's refusal
  command(t, "/model", "model");
  command(t, "/model m2", "refused");
  command(t, "/set", "option");
  command(t, "/set fast true", "refused");

  // A turn: a stdout line, a thought, a plan, tool calls, a mode change, a permission question.
  t.mark();
  t.send("go\r");
  expect(t, "choose 1-2");
  t.send("1");
  expect(t, "permission answered");
  expect(t, kPrompt);
  CHECK(t.since_mark().find("the agent wrote on stdout") != std::string::npos);

  command(t, "/stderr", "hostile stderr");
  command(t, "fail now", "details");

  t.mark();
  t.send("\x04");
  auto st = t.wait_exit(15s);
  REQUIRE_MESSAGE(st.has_value(), "tether talk did not exit after Ctrl-D\n" << dump(t));
  check_clean(t, kTalkOwn, "talk");
}

TEST_CASE("prompt under a pty: answer, side lines, -v and failures carry no control sequence of the agent's") {
  Home home;
  struct Case {
    std::vector<std::string> args;
    std::string seen;  // on the screen when it ran
  };
  std::vector<Case> cases = {
      {{"-v", "--permission", "allow", "go"}, "permission answered"},   // streamed, with tool lines and -v
      {{"--no-stream", "--permission", "deny", "go"}, "answer"},        // written once complete
      {{"fail"}, "details"},                                             // an agent error with data
      {{"--max-restarts", "0", "--retries", "0", "crash"}, "hostile stderr in the turn"},  // the stderr tail
      {{"--json", "--permission", "allow", "go"}, "\\u001b]52"},          // JSON: exact data, escaped
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv{tether_bin(), "prompt", "--color", "never"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.insert(argv.end(), {"--", fake_agent(), "hostile"});
    std::string what = "prompt";
    for (const auto& a : c.args) what += " " + a;
    CAPTURE(what);
    Pty t(argv, home.env());
    auto st = t.wait_exit(20s);
    REQUIRE_MESSAGE(st.has_value(), what << " did not exit\n" << dump(t));
    CHECK_MESSAGE(t.text().find(c.seen) != std::string::npos, what << ": did not see " << c.seen << "\n" << dump(t));
    check_clean(t, {}, what);  // no colour, no line editor: no escape sequence at all
  }
}

TEST_CASE("batch under a pty: its records and stderr lines carry no control sequence of the agent's") {
  Home home;
  // stdin is a pipe (the items), stdout and stderr the terminal; -v shows the agent's stdout lines.
  std::string cmd = "printf '%s\\n' go fail | '" + tether_bin() + "' batch -v --permission allow -- '" +
                    fake_agent() + "' hostile";
  Pty t({"/bin/sh", "-c", cmd}, home.env());
  auto st = t.wait_exit(20s);
  REQUIRE_MESSAGE(st.has_value(), "batch did not exit\n" << dump(t));
  CHECK_MESSAGE(t.text().find("\"ok\":false") != std::string::npos, dump(t));  // the failed item's record
  CHECK_MESSAGE(t.text().find("details") != std::string::npos, dump(t));
  // batch's progress line on a terminal redraws itself with CR and clear-to-end-of-line.
  check_clean(t, {"\x1b[K"}, "batch");
}

// The colour rule is one function for every command (cli/launch.h): --color auto is colour on a
// terminal unless NO_COLOR is set or TERM is dumb. Here against the demo agent, colour on: prompt's
// thought line and talk's greeting are dim (ESC [2m); each of NO_COLOR and TERM=dumb turns it off.
TEST_CASE("colour: prompt and talk follow the one rule (--color auto, NO_COLOR, TERM=dumb)") {
  Home home;
  auto env_with = [&](std::vector<std::string> changes) {
    std::vector<std::string> env = home.env();
    for (const auto& c : changes) {
      std::string name = c.substr(0, c.find('=') + 1);
      std::erase_if(env, [&](const std::string& e) { return e.rfind(name, 0) == 0; });
      env.push_back(c);
    }
    return env;
  };
  struct Case {
    std::vector<std::string> env;
    bool colour;
  };
  const std::vector<Case> cases = {
      {{"NO_COLOR=", "TERM=xterm"}, true},
      {{"NO_COLOR=", "TERM=dumb"}, false},
      {{"NO_COLOR=1", "TERM=xterm"}, false},
  };
  const std::string dim = "\x1b[2m";
  for (const auto& c : cases) {
    std::string what = c.env[0] + " " + c.env[1];
    CAPTURE(what);
    {
      Pty t({tether_bin(), "prompt", "hello there"}, env_with(c.env));
      auto st = t.wait_exit(20s);
      REQUIRE_MESSAGE(st.has_value(), "prompt did not exit\n" << dump(t));
      CHECK_MESSAGE(*st == 0, dump(t));
      CHECK_MESSAGE(t.text().find("thinking:") != std::string::npos, dump(t));
      CHECK_MESSAGE((t.raw().find(dim) != std::string::npos) == c.colour, "prompt: " << visible(t.raw()));
    }
    {
      Pty t({tether_bin(), "talk", "--no-history"}, env_with(c.env));
      expect(t, "tether> ");
      t.send("/exit\r");  // a line: typed ahead of the editor it still arrives (a Ctrl-D might not)
      auto st = t.wait_exit(20s);
      REQUIRE_MESSAGE(st.has_value(), "talk did not exit\n" << dump(t));
      CHECK_MESSAGE((t.raw().find(dim) != std::string::npos) == c.colour, "talk: " << visible(t.raw()));
    }
  }
}

// --allow-terminal: the command an agent runs through talk shows as "$ COMMAND", its output dim as
// it comes, and its exit; what the command prints passes through the sanitizer too (its OSC title
// sequence never reaches the screen).
TEST_CASE("talk under a pty: the agent's terminals show command, output (dim) and exit, without their escapes") {
  Home home;
  REQUIRE(::mkdir((home.dir + "/sub").c_str(), 0700) == 0);
  Pty t({tether_bin(), "talk", "--color", "always", "--allow-terminal", "--permission", "allow", "--cwd", home.dir,
         "--", fake_agent(), "terminals"},
        home.env());
  expect(t, kPrompt);
  t.mark();
  t.send("basic\r");
  expect(t, "exited with status 3");
  expect(t, kPrompt);
  std::string seen = t.since_mark();
  CHECK(seen.find("$ echo hello") != std::string::npos);
  CHECK(seen.find("  hello") != std::string::npos);
  CHECK(seen.find("exited with status 0") != std::string::npos);
  CHECK(seen.find("  x=42") != std::string::npos);
  CHECK(seen.find("  bad") != std::string::npos);
  CHECK(t.raw().find("\x1b[2m  hello") != std::string::npos);  // dim
  CHECK(t.raw().find("\x1b]0;title") == std::string::npos);
  CHECK(t.raw().find('\x07') == std::string::npos);
  t.send("\x04");
  REQUIRE_MESSAGE(t.wait_exit(15s).has_value(), "tether talk did not exit after Ctrl-D\n" << dump(t));
}
