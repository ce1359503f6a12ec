// AcpSession opening a given session (ClientOptions::session_id: prompt/talk -c, --session, -s)
// and switching to one (load_session: talk's /load), against the fake agent over real pipes: the
// agent's way back (resume, else load), the replay kept out of every turn, and the failures that
// must never turn into a new session (an agent that can do neither, an id it does not know).
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "acp/session.h"
#include "supervisor/bridge.h"
#include "support/support.h"

using namespace tether;
using acp::TurnEvent;

namespace {

std::string fake_agent() {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE_MESSAGE(dir, "TETHER_ACP_FAKES_DIR is not set (run through meson test)");
  return std::string(dir) + "/fake_acp_agent";
}

supervisor::BridgeOptions bridge_options(std::vector<std::string> args) {
  supervisor::BridgeOptions o;
  o.argv = {fake_agent()};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.cwd = "/tmp";
  o.restart.base_delay = std::chrono::milliseconds(10);
  return o;
}

acp::ClientOptions continuing(const std::string& id) {
  acp::ClientOptions o;
  o.cwd = "/tmp";
  o.setup_timeout = std::chrono::seconds(10);
  o.session_id = id;
  return o;
}

struct Log {
  std::string path;
  Log() {
    char tmpl[] = "/tmp/tether-continue-XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
  }
  ~Log() { ::unlink(path.c_str()); }
  std::string text() const {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
};

std::string answer_of(acp::Turn& turn) {
  std::string s;
  auto deadline = base::Deadline::after(std::chrono::seconds(10));
  for (;;) {
    REQUIRE_MESSAGE(!deadline.expired(), "the turn did not end");
    for (auto& e : turn.wait(deadline)) {
      if (e.kind == TurnEvent::Kind::update && e.update.kind == acp::Update::Kind::agent_message) s += e.update.text;
      if (e.terminal()) {
        CHECK(e.kind == TurnEvent::Kind::completed);
        return s;
      }
    }
  }
}

}  // namespace

TEST_CASE("continue: an agent that can only load gets session/load of the id, never session/new; the replay is no answer") {
  Log log;
  supervisor::Bridge bridge(bridge_options({"sessions", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing("kept-7"));
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE_MESSAGE(!failed, failed->error.dump());
  CHECK(session.state().session_id == "kept-7");
  CHECK(session.state().sessions_loaded == 1);
  CHECK(session.state().sessions_created == 0);
  CHECK(session.state().replayed_turns == 2);  // two earlier prompts, the first in two chunks
  // No notice about a restart: continuing is what was asked.
  for (const auto& n : session.take_notices()) CHECK(n.kind != TurnEvent::Kind::notice);
  auto turn = session.prompt("next");
  CHECK(answer_of(turn) == "ok kept-7");  // the replayed chunks are not part of it
  CHECK(session.state().late_updates == 0);
  std::string wire = log.text();
  INFO(wire);
  CHECK(wire.find("initialize\nsession/load\nsession/prompt") != std::string::npos);
  CHECK(wire.find("session/new") == std::string::npos);
}

TEST_CASE("continue: an agent that can neither resume nor load fails with exit 69 and says so") {
  supervisor::Bridge bridge(bridge_options({"batch"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing("fake-session-1-1"));
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  CHECK(acp::exit_status(*failed) == 69);
  std::string msg = failed->error.value("message", "");
  CHECK(msg == "fake-acp-agent cannot continue a session: it advertises neither session/resume nor session/load; "
               "start a new conversation instead");
  CHECK(session.state().sessions_created == 0);
}

TEST_CASE("continue: an id the agent does not know fails with exit 69 naming it, never a new session") {
  Log log;
  supervisor::Bridge bridge(bridge_options({"sessions", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing("unknown-42"));
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  CHECK(acp::exit_status(*failed) == 69);
  std::string msg = failed->error.value("message", "");
  INFO(msg);
  CHECK(msg.find("cannot continue session unknown-42") == 0);
  CHECK(msg.find("-32002") != std::string::npos);
  CHECK(failed->error["sessionId"] == "unknown-42");
  CHECK(log.text().find("session/new") == std::string::npos);
}

TEST_CASE("continue: resume when the agent offers it (no replay), and the settings after it") {
  Log log;
  supervisor::Bridge bridge(bridge_options({"settings", log.path}));
  REQUIRE_FALSE(bridge.start());
  auto o = continuing("kept-9");
  o.settings.mode = "plan";
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.state().session_id == "kept-9");
  std::string wire = log.text();
  INFO(wire);
  CHECK(wire.find("initialize\nsession/resume\nsession/set_mode plan") != std::string::npos);
  CHECK(wire.find("session/new") == std::string::npos);
}

TEST_CASE("load_session: switches a running session to another id; an agent that cannot keeps its session") {
  SUBCASE("loads") {
    Log log;
    supervisor::Bridge bridge(bridge_options({"sessions", log.path}));
    REQUIRE_FALSE(bridge.start());
    acp::AcpSession session(bridge, continuing(""));
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    std::string first = session.state().session_id;
    auto failed = session.load_session("kept-3", base::Deadline::after(std::chrono::seconds(10)));
    REQUIRE_MESSAGE(!failed, failed->error.dump());
    CHECK(session.state().session_id == "kept-3");
    CHECK(session.state().replayed_turns == 2);
    auto turn = session.prompt("next");
    CHECK(answer_of(turn) == "ok kept-3");
    CHECK(first != "kept-3");
  }
  SUBCASE("cannot") {
    supervisor::Bridge bridge(bridge_options({"batch"}));
    REQUIRE_FALSE(bridge.start());
    acp::AcpSession session(bridge, continuing(""));
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    std::string first = session.state().session_id;
    auto failed = session.load_session("kept-3", base::Deadline::after(std::chrono::seconds(10)));
    REQUIRE(failed);
    CHECK(failed->error.value("message", "").find("cannot continue a session") != std::string::npos);
    CHECK(session.state().session_id == first);  // still usable
    auto turn = session.prompt("echo: hi");
    CHECK(answer_of(turn).find("echo") != std::string::npos);
  }
}

TEST_CASE("continue: a crash while the settings are applied still never becomes a new session") {
  Log log;
  std::string flag = log.path + ".crashed";
  auto bo = bridge_options({"settings", log.path});
  bo.extra_env = {"FAKE_CRASH_SET_MODE=" + flag};
  supervisor::Bridge bridge(bo);
  REQUIRE_FALSE(bridge.start());
  auto o = continuing("unknown-5");  // the restarted agent knows it neither by resume nor by load
  o.settings.mode = "plan";
  acp::AcpSession session(bridge, o);
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  ::unlink(flag.c_str());
  std::string wire = log.text();
  INFO(wire);
  REQUIRE(failed);
  CHECK(acp::exit_status(*failed) == 69);
  CHECK(failed->error.value("message", "").find("cannot continue session unknown-5") == 0);
  CHECK(session.state().sessions_created == 0);
  CHECK(wire.find("session/new") == std::string::npos);
}

TEST_CASE("load_session: a refused id, then a new session on the same connection (no second initialize)") {
  Log log;
  supervisor::Bridge bridge(bridge_options({"sessions", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing(""));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto failed = session.load_session("unknown-3", base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  auto again = session.new_session(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE_MESSAGE(!again, again->error.dump());
  auto turn = session.prompt("next");
  CHECK(answer_of(turn).find("ok fake-session-") == 0);
  std::string wire = log.text();
  INFO(wire);
  CHECK(wire.find("initialize") == wire.rfind("initialize"));
  CHECK(wire.find("session/load\nsession/new\nsession/prompt") != std::string::npos);
}

TEST_CASE("load_session: an agent that can do neither keeps the session being set up (capabilities known, link not ready)") {
  Log log;
  auto bo = bridge_options({"settings", log.path});
  bo.extra_env = {"FAKE_NO_REOPEN=1"};
  supervisor::Bridge bridge(bo);
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing(""));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  session.start_new_session();  // session/new under way
  auto failed = session.load_session("kept-1", base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  CHECK(failed->error.value("message", "").find("cannot continue a session") != std::string::npos);
  auto turn = session.prompt("next");
  CHECK(answer_of(turn).find("mode=") == 0);
  std::string wire = log.text();
  INFO(wire);
  CHECK(wire.find("initialize") == wire.rfind("initialize"));  // the new session went on
}

TEST_CASE("continue: a restart in the middle of the load counts the replay once") {
  Log log;
  std::string flag = log.path + ".crashed";
  auto bo = bridge_options({"sessions", log.path});
  bo.extra_env = {"FAKE_CRASH_LOAD=" + flag};
  supervisor::Bridge bridge(bo);
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, continuing("kept-8"));
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  ::unlink(flag.c_str());
  REQUIRE_MESSAGE(!failed, failed->error.dump());
  CHECK(session.state().session_id == "kept-8");
  CHECK(session.state().replayed_turns == 2);
}
