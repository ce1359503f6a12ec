// Continued and named sessions as a user runs them (issue 15): `tether prompt -c`, `--session ID`
// and `-s NAME` with the built binary, the demo agent (its histories in a temporary
// XDG_STATE_HOME) and the turn log there; and the failures: an agent that can neither load nor
// resume, an id the agent does not know, nothing to continue.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "support/run.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::tether_bin;

namespace {

// A user's state: XDG_STATE_HOME (the demo agent's histories and the turn log) and two project
// directories.
struct Home {
  std::string dir;
  Home() {
    char tmpl[] = "/tmp/tether-continue-XXXXXX";
    dir = ::mkdtemp(tmpl);
    ::mkdir((dir + "/a").c_str(), 0700);
    ::mkdir((dir + "/b").c_str(), 0700);
  }
  ~Home() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
  RunOptions opts() const {
    RunOptions o;
    o.env = {"XDG_STATE_HOME=" + dir + "/state", "HOME=" + dir, "TETHER_DEMO_STATE_DIR=", "TETHER_LOG=", "TETHER_BRIDGE=",
             "NO_COLOR=1", "XDG_CONFIG_HOME=" + dir + "/config"};
    return o;
  }
  // tether prompt --json --cwd DIR/WHERE ARGS...
  json prompt(const std::string& where, std::vector<std::string> args, int expect = 0) const {
    std::vector<std::string> argv{tether_bin(), "prompt", "--json", "-q", "--cwd", dir + "/" + where};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = run(argv, opts());
    INFO(r.err);
    CHECK(r.exit_code == expect);
    json j = json::parse(r.out, nullptr, false);
    REQUIRE_MESSAGE(j.is_object(), r.out);
    return j;
  }
};

std::string fake_agent() {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE_MESSAGE(dir, "TETHER_ACP_FAKES_DIR is not set (run through meson test)");
  return std::string(dir) + "/fake_acp_agent";
}

bool says(const json& j, const std::string& words) { return j.value("text", "").find(words) != std::string::npos; }

}  // namespace

TEST_CASE("prompt -c continues the last conversation with the agent in this directory") {
  Home h;
  json first = h.prompt("a", {"my name is Ada"});
  CHECK(says(first, "turn 1 of this session"));
  // The log is this user's, not one shared with every other test (meson sets XDG_STATE_HOME too):
  // in a shared one, a fake agent's session id (its pid) seen before joined an older conversation.
  struct stat st {};
  CHECK(::stat((h.dir + "/state/tether/logs.db").c_str(), &st) == 0);
  json other = h.prompt("b", {"elsewhere"});  // another directory: another conversation
  json second = h.prompt("a", {"-c", "what is my name?"});
  CHECK(says(second, "turn 2 of this session"));
  CHECK(second["sessionId"] == first["sessionId"]);
  CHECK(other["sessionId"] != first["sessionId"]);
  // --session ID continues a given one, wherever it came from.
  json third = h.prompt("a", {"--session", other["sessionId"].get<std::string>(), "again"});
  CHECK(says(third, "turn 2 of this session"));
  CHECK(third["sessionId"] == other["sessionId"]);
}

TEST_CASE("prompt -s NAME: a new session the first time, that session after") {
  Home h;
  json one = h.prompt("a", {"-s", "work", "first"});
  CHECK(says(one, "turn 1 of this session"));
  json between = h.prompt("a", {"unrelated"});
  json two = h.prompt("a", {"-s", "work", "second"});
  CHECK(says(two, "turn 2 of this session"));
  CHECK(two["sessionId"] == one["sessionId"]);
  CHECK(between["sessionId"] != one["sessionId"]);
  // The name belongs to the directory: elsewhere it starts afresh.
  json there = h.prompt("b", {"-s", "work", "first there"});
  CHECK(says(there, "turn 1 of this session"));
}

TEST_CASE("prompt -c: nothing to continue (64), an agent that cannot continue (69), an id it does not know (69)") {
  Home h;
  auto r = run({tether_bin(), "prompt", "--cwd", h.dir + "/a", "-c", "hello"}, h.opts());
  CHECK(r.exit_code == 64);
  CHECK(r.err == "tether: no earlier conversation with demo in " + h.dir + "/a to continue; start one without -c\n");

  // The fake's batch mode advertises neither session/load nor session/resume.
  std::vector<std::string> fake{"--", fake_agent(), "batch"};
  std::vector<std::string> argv{tether_bin(), "prompt", "--cwd", h.dir + "/a", "hi"};
  argv.insert(argv.end(), fake.begin(), fake.end());
  r = run(argv, h.opts());
  const std::string first_err = r.err;
  INFO("the first turn's stderr: ", first_err);
  REQUIRE(r.exit_code == 0);
  argv = {tether_bin(), "prompt", "--cwd", h.dir + "/a", "-c", "again"};
  argv.insert(argv.end(), fake.begin(), fake.end());
  r = run(argv, h.opts());
  const std::string second_err = r.err;
  INFO("the -c run's stderr: ", second_err);
  CHECK(r.exit_code == 69);
  CHECK(r.out.empty());
  CHECK(r.err.find("tether: fake-acp-agent cannot continue a session: it advertises neither session/resume nor "
                   "session/load") == 0);

  r = run({tether_bin(), "prompt", "--cwd", h.dir + "/a", "--session", "demo-1-2-3", "hello"}, h.opts());
  CHECK(r.exit_code == 69);
  CHECK(r.out.empty());
  CHECK(r.err.find("tether: cannot continue session demo-1-2-3: ") == 0);
}
