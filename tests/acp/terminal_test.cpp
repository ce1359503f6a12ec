// The terminal capability (--allow-terminal, acp/terminals.h) as a user runs it: the built
// binary, `tether prompt`, against the fake agent's "terminals" mode, which drives every
// terminal/* method through a scene and answers with a JSON object of what came back
// (tests/fakes/fake_acp_terminals.cpp). Processes are checked in /proc: nothing of a terminal's
// group may be left running, or left a zombie.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/run.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::RunResult;
using tether::test::tether_bin;

namespace {

std::string fake_agent() {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE_MESSAGE(dir, "TETHER_ACP_FAKES_DIR is not set (run through meson test)");
  return std::string(dir) + "/fake_acp_agent";
}

struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/tether-terminal-XXXXXX";
    dir = ::mkdtemp(tmpl);
    ::mkdir((dir + "/sub").c_str(), 0700);
  }
  ~Scratch() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
};

// tether prompt FLAGS... SCENE -- fake_acp_agent terminals [ARG], in the scratch directory.
RunResult scene(const Scratch& s, const std::string& name, std::vector<std::string> flags, const std::string& arg = "",
                RunOptions o = {}) {
  std::vector<std::string> argv{tether_bin(), "prompt", "--cwd", s.dir};
  argv.insert(argv.end(), flags.begin(), flags.end());
  argv.insert(argv.end(), {name, "--", fake_agent(), "terminals"});
  if (!arg.empty()) argv.push_back(arg);
  o.env.push_back("NO_COLOR=1");
  o.env.push_back("TETHER_BRIDGE=");
  return run(argv, o);
}

json answer(const RunResult& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  json j = json::parse(r.out, nullptr, false);
  REQUIRE(j.is_object());
  return j;
}

const std::vector<std::string> kAllow = {"--allow-terminal", "--permission", "allow"};

bool running(long pid) { return ::access(("/proc/" + std::to_string(pid)).c_str(), F_OK) == 0; }

}  // namespace

TEST_CASE("terminals: create, wait_for_exit, output and release, with args, a shell line, env and cwd") {
  Scratch s;
  RunResult r = scene(s, "basic", {"--allow-terminal", "--permission", "allow", "-v"});
  json j = answer(r);
  CHECK(j["advertised"] == true);
  CHECK(j["wait"] == json{{"exitCode", 0}, {"signal", nullptr}});
  CHECK(j["output"] == json{{"output", "hello\n"}, {"truncated", false}, {"exitStatus", {{"exitCode", 0}, {"signal", nullptr}}}});
  CHECK(j["release"] == json::object());
  CHECK(j["after_release"]["error"]["code"] == -32602);  // released: the id is gone
  // A shell line (no args), with the agent's env, in a directory below --cwd, stderr merged.
  CHECK(j["shell_wait"] == json{{"exitCode", 3}, {"signal", nullptr}});
  // Bytes that are not UTF-8 reach the agent as U+FFFD (the JSON stays valid); escapes as they are.
  CHECK(j["shell_output"]["output"] == "x=42\n" + s.dir + "/sub\nerr\nbad\xef\xbf\xbd\x1b]0;title\x07\n");
  // -v: the command, its output and its exit on stderr, with no escape sequence of the command's.
  CHECK(r.err.find("$ echo hello\n  hello\n  exited with status 0\n") != std::string::npos);
  CHECK(r.err.find("  bad") != std::string::npos);
  CHECK(r.err.find('\x1b') == std::string::npos);
  CHECK(r.err.find('\x07') == std::string::npos);
}

TEST_CASE("terminals: prompt -v shows a tool call's terminal content as that terminal's output, sanitized") {
  Scratch s;
  RunResult r = scene(s, "shown", {"--allow-terminal", "--permission", "allow", "-v"});
  json j = answer(r);
  CHECK(j["wait"]["exitCode"] == 0);
  auto tool = r.err.find("tool: Run printf (execute, completed)\n  terminal ");
  REQUIRE_MESSAGE(tool != std::string::npos, r.err);
  // Under the tool line: the terminal's output, its OSC title sequence gone.
  CHECK_MESSAGE(r.err.find("\n  first line\n  second line\n", tool) != std::string::npos, r.err);
  CHECK(r.err.find('\x1b') == std::string::npos);
}

TEST_CASE("terminals: output over outputByteLimit keeps the end, cut on a character boundary") {
  Scratch s;
  json j = answer(scene(s, "limit", kAllow));
  // 40 'é' (80 bytes), limit 11: the last 11 bytes start inside an 'é', so 10 bytes are kept.
  CHECK(j["output"]["output"] == "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
  CHECK(j["output"]["truncated"] == true);
  CHECK(j["wait"]["exitCode"] == 0);
}

TEST_CASE("terminals: kill stops a group that ignores SIGTERM; nothing is left, not even a zombie") {
  Scratch s;
  json j = answer(scene(s, "stubborn", kAllow));
  REQUIRE(j["pids"].size() == 2);
  CHECK(j["kill"] == json::object());
  // SIGTERM is ignored: SIGKILL after the grace period ends it, and the terminal is still valid.
  CHECK(j["wait"] == json{{"exitCode", nullptr}, {"signal", "SIGKILL"}});
  CHECK(j["output"]["exitStatus"] == j["wait"]);
  CHECK(j["output"]["output"].get<std::string>().find("pids ") == 0);
  CHECK(j["gone"] == true);  // seen by the agent while tether still ran
  for (const auto& p : j["pids"]) CHECK_FALSE(running(p.get<long>()));
}

TEST_CASE("terminals: release stops what still runs, and the id is gone") {
  Scratch s;
  json j = answer(scene(s, "release", kAllow));
  REQUIRE(j["pids"].size() == 2);
  CHECK(j["release"] == json::object());
  CHECK(j["after_release"]["error"]["code"] == -32602);
  CHECK(j["gone"] == true);
}

TEST_CASE("terminals: a cwd outside --cwd is refused, and nothing runs") {
  Scratch s;
  json j = answer(scene(s, "outside", kAllow));
  CHECK(j["root"]["error"]["code"] == -32602);
  CHECK(j["up"]["error"]["code"] == -32602);
  CHECK(j["root"]["error"]["message"].get<std::string>().find("not a directory inside") != std::string::npos);
  CHECK(j["file"]["error"]["code"] == -32602);
  CHECK(j["file"]["error"]["message"].get<std::string>().find("a-file is not a directory") != std::string::npos);
}

TEST_CASE("terminals: commands that exited do not count against the 16") {
  Scratch s;
  json j = answer(scene(s, "exited", kAllow));
  CHECK(j["seventeenth"].contains("terminalId"));
}

TEST_CASE("terminals: output requests sent without reading the answers are refused as busy, not queued") {
  Scratch s;
  json j = answer(scene(s, "flood", kAllow));
  CHECK(j["ok"].get<int>() >= 1);
  CHECK(j["busy"].get<int>() >= 1);
  CHECK(j["ok"].get<int>() + j["busy"].get<int>() == 20);
}

TEST_CASE("terminals: at most 64 pending wait_for_exit per terminal") {
  Scratch s;
  json j = answer(scene(s, "waits", kAllow));
  CHECK(j["last"]["error"]["code"] == -32603);
}

TEST_CASE("terminals: a command has no controlling terminal") {
  Scratch s;
  json j = answer(scene(s, "notty", kAllow));
  CHECK(j["output"]["output"] == "NO_TTY\n");
}

TEST_CASE("terminals: at most 16 at once") {
  Scratch s;
  json j = answer(scene(s, "many", kAllow));
  CHECK(j["created"] == 16);
  CHECK(j["error"]["code"] == -32603);
}

TEST_CASE("terminals: without --allow-terminal none is advertised and terminal/create is -32601; deny refuses") {
  Scratch s;
  json off = answer(scene(s, "outside", {"--permission", "allow"}));
  CHECK(off["advertised"] == false);
  CHECK(off["root"]["error"]["code"] == -32601);
  json deny = answer(scene(s, "outside", {"--allow-terminal", "--permission", "deny"}));
  CHECK(deny["advertised"] == true);
  CHECK(deny["root"]["error"]["code"] == -32603);
  CHECK(deny["root"]["error"]["message"].get<std::string>().find("--permission deny") != std::string::npos);
}

TEST_CASE("terminals: SIGTERM to tether mid-turn stops the terminals' groups before it dies") {
  Scratch s;
  std::string pids_file = s.dir + "/pids";
  RunOptions o;
  bool sent = false;
  o.on_output = [&](pid_t pid, const std::string&, const std::string&) {
    if (sent) return;
    std::ifstream in(pids_file);
    std::string line;
    if (std::getline(in, line) && !line.empty()) {
      ::kill(pid, SIGTERM);
      sent = true;
    }
  };
  // -v: a line on stderr when the terminal starts and prints its pids, so on_output runs then.
  RunResult r = scene(s, "hang", {"--allow-terminal", "--permission", "allow", "-v"}, pids_file, o);
  INFO("stderr: " << r.err);
  REQUIRE(sent);
  CHECK(r.signal == SIGTERM);
  json pids = json::parse(std::ifstream(pids_file), nullptr, false);
  REQUIRE(pids.is_array());
  REQUIRE(pids.size() == 2);
  for (const auto& p : pids) CHECK_FALSE(running(p.get<long>()));
}
