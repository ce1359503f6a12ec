// AcpSession and Turn against the fake agent (tests/fakes/fake_acp_agent.cpp) over real pipes:
// the handshake's variants, updates before and after their turn, the ask policy with a withdrawn
// request, requests we do not serve.
#include <doctest/doctest.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <fstream>
#include <string>

#include "acp/session.h"
#include "rpc/trace.h"
#include "integration/integration.h"
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

// restart(), then what a front-end waits for (talk's /restart polls status()): a newer generation
// that is ready, rather than one that failed (the integration suite's helper).
bool restart_and_wait(supervisor::Bridge& bridge) { return itest::restart_and_wait(bridge, std::chrono::seconds(10)); }

acp::ClientOptions client_options(acp::PermissionPolicy p = acp::PermissionPolicy::deny) {
  acp::ClientOptions o;
  o.cwd = "/tmp";
  o.permission = p;
  o.setup_timeout = std::chrono::seconds(10);
  return o;
}

// Every event of the turn up to and including its terminal one (fails the test after 10 s).
std::vector<TurnEvent> collect(acp::Turn& turn) {
  std::vector<TurnEvent> all;
  auto deadline = base::Deadline::after(std::chrono::seconds(10));
  while (all.empty() || !all.back().terminal()) {
    REQUIRE_MESSAGE(!deadline.expired(), "the turn did not end");
    for (auto& e : turn.wait(deadline)) all.push_back(std::move(e));
  }
  return all;
}

std::string answer_text(const std::vector<TurnEvent>& events) {
  std::string s;
  for (const auto& e : events)
    if (e.kind == TurnEvent::Kind::update && e.update.kind == acp::Update::Kind::agent_message) s += e.update.text;
  return s;
}

}  // namespace

TEST_CASE("updates sent before session/new's answer are kept; unknown kinds are ignored") {
  supervisor::Bridge bridge(bridge_options({"before-new"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  const auto& st = session.state();
  CHECK(st.session_id.rfind("fake-session-", 0) == 0);
  REQUIRE(st.commands.size() == 1);
  CHECK(st.commands[0].name == "early");
  CHECK(st.mode_id == "architect");
  CHECK(st.ignored_updates >= 1);
  CHECK(st.agent_info["name"] == "fake-acp-agent");
  // The title update came after the answer, outside any turn: a later poll applies it.
  auto turn = session.prompt("hi");
  auto events = collect(turn);
  CHECK(events.back().kind == TurnEvent::Kind::completed);
  CHECK(st.title == "after new");
}

TEST_CASE("a late update never reaches the next turn; state updates still apply") {
  supervisor::Bridge bridge(bridge_options({"late-updates"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  for (int i = 1; i <= 3; ++i) {
    auto turn = session.prompt("go");
    auto events = collect(turn);
    CHECK(answer_text(events) == "answer-" + std::to_string(i));
    for (const auto& e : events) {
      bool tool = e.kind == TurnEvent::Kind::update && e.update.kind == acp::Update::Kind::tool_call;
      CHECK_FALSE(tool);
    }
  }
  session.poll();
  CHECK(session.state().late_updates >= 2);
  CHECK(session.state().title.rfind("late title ", 0) == 0);
}

TEST_CASE("ask policy: the consumer answers with an offered option only") {
  supervisor::Bridge bridge(bridge_options({"permission", "allow_once,reject_once"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options(acp::PermissionPolicy::ask));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto turn = session.prompt("touch it");
  std::optional<acp::PermissionRequest> asked;
  std::vector<TurnEvent> all;
  auto deadline = base::Deadline::after(std::chrono::seconds(10));
  while (all.empty() || !all.back().terminal()) {
    REQUIRE(!deadline.expired());
    for (auto& e : turn.wait(deadline)) {
      if (e.kind == TurnEvent::Kind::permission) {
        asked = e.permission;
        CHECK_FALSE(e.permission.answered);
        REQUIRE(e.permission.options.size() == 2);
        CHECK(e.permission.tool.title == "Touch a file");
        CHECK_FALSE(turn.answer_permission(e.permission.token, std::string("opt-allow_always")));  // not offered
        CHECK(turn.answer_permission(e.permission.token, std::string("opt-reject_once")));
        CHECK_FALSE(turn.answer_permission(e.permission.token, std::string("opt-reject_once")));  // once only
      }
      all.push_back(std::move(e));
    }
  }
  REQUIRE(asked);
  CHECK(answer_text(all) == "selected:opt-reject_once");
}

TEST_CASE("a withdrawn permission request ($/cancel_request) is answered cancelled, once") {
  supervisor::Bridge bridge(bridge_options({"withdraw"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options(acp::PermissionPolicy::ask));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto turn = session.prompt("touch it");
  auto events = collect(turn);
  std::uint64_t token = 0;
  bool withdrawn = false;
  for (const auto& e : events) {
    if (e.kind == TurnEvent::Kind::permission) token = e.permission.token;
    if (e.kind == TurnEvent::Kind::permission_withdrawn) withdrawn = e.permission.token == token;
  }
  CHECK(withdrawn);
  CHECK(answer_text(events) == "cancelled");
  CHECK_FALSE(turn.answer_permission(token, std::string("opt-allow_once")));
}

TEST_CASE("requests for capabilities we did not advertise get -32601") {
  supervisor::Bridge bridge(bridge_options({"unknown-requests"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto turn = session.prompt("x");
  CHECK(answer_text(collect(turn)) == "terminal/create:-32601 fs/read_text_file:-32601 ");
}

std::string slurp_file(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct TempFile {
  std::string path;
  TempFile() {
    char tmpl[] = "/tmp/tether-session-test.XXXXXX";
    int fd = ::mkstemp(tmpl);
    REQUIRE(fd >= 0);
    ::close(fd);
    path = tmpl;
  }
  ~TempFile() { ::unlink(path.c_str()); }
};

// An environment for env_var authentication, instead of the process's.
acp::EnvLookup env_with(std::string name, std::string value) {
  return [name, value](const char* n) -> const char* { return name == n ? value.c_str() : nullptr; };
}

TEST_CASE("auth_required with nothing usable: fails at once naming every method; no browser login is started") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"auth", log.path}));
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.env = env_with("UNRELATED", "x");
  acp::AcpSession session(bridge, o);
  // At once: long before the deadline (an ordering, not a speed a busy machine could miss).
  auto t0 = base::Clock::now();
  const auto patience = std::chrono::seconds(10);
  auto failed = session.open(base::Deadline::after(patience));
  REQUIRE(failed);
  CHECK(base::Clock::now() - t0 < patience / 2);
  CHECK(failed->error["code"] == "auth_required");
  CHECK(acp::exit_status(*failed) == 69);
  std::string m = failed->error.value("message", "");
  INFO(m);
  for (const char* id : {"terminal-login", "agent-login", "api-key", "FAKE_API_KEY", "--auth"})
    CHECK(m.find(id) != std::string::npos);
  // The agent's own reason (error.data.details) is in the message.
  CHECK(m.find("no credentials for the fake provider") != std::string::npos);
  CHECK(slurp_file(log.path).find("authenticate") == std::string::npos);
}

TEST_CASE("auth_required: an env_var method whose variables are set is used, then session/new again") {
  TempFile log;
  auto bo = bridge_options({"auth", log.path});
  bo.extra_env = {"FAKE_API_KEY=secret"};
  supervisor::Bridge bridge(bo);
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.env = env_with("FAKE_API_KEY", "secret");
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK_FALSE(session.state().session_id.empty());
  CHECK(session.state().auth_method == "api-key");
  CHECK(slurp_file(log.path) == "initialize\nsession/new\nauthenticate\nsession/new\n");
}

TEST_CASE("auth_required: --auth names the method; a terminal method is explained, never run; an unknown one is listed") {
  {
    supervisor::Bridge bridge(bridge_options({"auth"}));
    REQUIRE_FALSE(bridge.start());
    auto o = client_options();
    o.auth = "agent-login";
    acp::AcpSession session(bridge, o);
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    CHECK(session.state().auth_method == "agent-login");
  }
  for (std::string pick : {"terminal-login", "no-such-method"}) {
    CAPTURE(pick);
    supervisor::Bridge bridge(bridge_options({"auth"}));
    REQUIRE_FALSE(bridge.start());
    auto o = client_options();
    o.auth = pick;
    acp::AcpSession session(bridge, o);
    auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
    REQUIRE(failed);
    CHECK(failed->error["code"] == "auth_required");
    std::string m = failed->error.value("message", "");
    CHECK(m.find(pick == "terminal-login" ? "runs in a terminal" : "offers no method no-such-method") != std::string::npos);
  }
}

TEST_CASE("auth_required: ask_auth lets a person pick when nothing else settles it") {
  supervisor::Bridge bridge(bridge_options({"auth"}));
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.env = env_with("UNRELATED", "x");
  int asked = 0;
  o.ask_auth = [&](const nlohmann::json& methods, const nlohmann::json&) {
    ++asked;
    CHECK(methods.size() == 3);
    return std::string("agent-login");
  };
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(asked == 1);
  CHECK(session.state().auth_method == "agent-login");
}

TEST_CASE("settings: --mode, --model and --set go out after session/new and before the first prompt") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"settings", log.path}));
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.settings.mode = "plan";
  o.settings.model = "m2";
  o.settings.set = {{"fast", "true"}};
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.state().mode_id == "plan");
  auto turn = session.prompt("x");
  CHECK(answer_text(collect(turn)) == "mode=plan model=m2 fast=true");
  CHECK(slurp_file(log.path) ==
        "initialize\nsession/new\nsession/set_mode plan\nsession/set_config_option model=\"m2\"\n"
        "session/set_config_option fast=true\nsession/prompt\n");
}

TEST_CASE("settings: what is already in effect is not sent; an id the agent does not offer is a usage error listing its offer") {
  {
    TempFile log;
    supervisor::Bridge bridge(bridge_options({"settings", log.path}));
    REQUIRE_FALSE(bridge.start());
    auto o = client_options();
    o.settings.mode = "ask";
    o.settings.model = "m1";
    acp::AcpSession session(bridge, o);
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    CHECK(slurp_file(log.path) == "initialize\nsession/new\n");
  }
  struct Case {
    std::string mode, model, key, value, expect;
  } cases[] = {
      {"yolo", "", "", "", "ask, plan"},
      {"", "m9", "", "", "m1, m2"},
      {"", "", "colour", "red", "model, fast"},
      {"", "", "fast", "maybe", "true or false"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.expect);
    supervisor::Bridge bridge(bridge_options({"settings", "/dev/null"}));
    REQUIRE_FALSE(bridge.start());
    auto o = client_options();
    o.settings.mode = c.mode;
    o.settings.model = c.model;
    if (!c.key.empty()) o.settings.set = {{c.key, c.value}};
    acp::AcpSession session(bridge, o);
    auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
    REQUIRE(failed);
    CHECK(failed->error["code"] == "usage");
    CHECK(acp::exit_status(*failed) == 64);
    CHECK(failed->error.value("message", "").find(c.expect) != std::string::npos);
  }
}

TEST_CASE("close: session/close for the session close() ends and for the one start_new_session() replaces") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"settings", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  REQUIRE_FALSE(session.new_session(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.close(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.state().sessions_closed == 2);
  CHECK(session.state().session_id.empty());
  CHECK(slurp_file(log.path) == "initialize\nsession/new\nsession/close\nsession/new\nsession/close\n");
}

TEST_CASE("close: nothing is sent to an agent that does not advertise sessionCapabilities.close") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"sessions", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK_FALSE(session.close(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(slurp_file(log.path).find("session/close") == std::string::npos);
}

TEST_CASE("errors: the agent's own reason (error.data.details) is in the turn's error, and in error.data") {
  supervisor::Bridge bridge(bridge_options({"error-data"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto turn = session.prompt("x");
  auto events = collect(turn);
  const auto& end = events.back();
  REQUIRE(end.kind == TurnEvent::Kind::failed);
  CHECK(end.error.value("message", "").find("Quota exceeded for model fake-1") != std::string::npos);
  CHECK(end.error["data"]["details"] == "Quota exceeded for model fake-1");
  CHECK(end.error["rpcCode"] == -32603);
}

TEST_CASE("lines on the agent's stdout that are not JSON are delivered as output events, in and outside a turn") {
  supervisor::Bridge bridge(bridge_options({"noisy"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto before = session.take_notices();
  auto url = std::find_if(before.begin(), before.end(), [](const TurnEvent& e) { return e.kind == TurnEvent::Kind::output; });
  REQUIRE(url != before.end());
  CHECK(url->text.find("https://login.example.invalid/device?code=ABCD") != std::string::npos);
  auto turn = session.prompt("x");
  auto events = collect(turn);
  CHECK(std::any_of(events.begin(), events.end(),
                    [](const TurnEvent& e) { return e.kind == TurnEvent::Kind::output && e.text == "still here: not JSON"; }));
  CHECK(answer_text(events) == "ok");
  CHECK(session.state().stray_lines == 2);
}

TEST_CASE("after a restart the settings are sent again even when the resume answer reports no modes") {
  TempFile log;
  auto bo = bridge_options({"settings", log.path});
  bo.extra_env = {"FAKE_RESUME_BARE=1"};
  supervisor::Bridge bridge(bo);
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.settings.mode = "plan";
  o.settings.model = "m2";
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  REQUIRE(restart_and_wait(bridge));
  auto turn = session.prompt("x");
  CHECK(answer_text(collect(turn)) == "mode=plan model=m2 fast=false");
  std::string wire = slurp_file(log.path);
  INFO(wire);
  CHECK(wire.find("session/resume\nsession/set_mode plan\nsession/set_config_option model=\"m2\"\nsession/prompt") !=
        std::string::npos);
}

TEST_CASE("a setting changed later is kept for re-establishment only once the agent accepted it") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"settings", log.path}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  acp::SessionSettings change;
  change.mode = "plan";
  auto token = session.change_settings(change);
  REQUIRE(std::holds_alternative<std::uint64_t>(token));
  auto deadline = base::Deadline::after(std::chrono::seconds(10));
  bool replied = false;
  while (!replied && !deadline.expired()) {
    pollfd p{session.fd(), POLLIN, 0};
    ::poll(&p, 1, 100);
    for (auto& e : session.poll()) replied = replied || (e.kind == TurnEvent::Kind::reply && e.request_id == std::get<std::uint64_t>(token));
  }
  REQUIRE(replied);
  CHECK(session.state().mode_id == "plan");
  REQUIRE(restart_and_wait(bridge));
  auto turn = session.prompt("x");
  CHECK(answer_text(collect(turn)) == "mode=plan model=m1 fast=false");
  // An id it does not offer is refused before anything is sent.
  acp::SessionSettings bad;
  bad.mode = "yolo";
  CHECK(std::holds_alternative<nlohmann::json>(session.change_settings(bad)));
}

TEST_CASE("a restart brings the session back with session/resume when the agent offers it, and the settings again") {
  TempFile log;
  supervisor::Bridge bridge(bridge_options({"settings", log.path}));
  REQUIRE_FALSE(bridge.start());
  auto o = client_options();
  o.settings.mode = "plan";
  acp::AcpSession session(bridge, o);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  std::string id = session.state().session_id;
  REQUIRE(restart_and_wait(bridge));
  auto turn = session.prompt("x");
  CHECK(answer_text(collect(turn)) == "mode=plan model=m1 fast=false");
  CHECK(session.state().session_id == id);
  std::string wire = slurp_file(log.path);
  INFO(wire);
  CHECK(wire.find("session/resume\nsession/set_mode plan\nsession/prompt") != std::string::npos);
  CHECK(wire.find("session/load") == std::string::npos);
}

TEST_CASE("a protocol version other than 1 is a protocol error") {
  supervisor::Bridge bridge(bridge_options({"version", "2"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  CHECK(failed->error["code"] == "protocol_error");
  CHECK(acp::exit_status(*failed) == 76);
}

TEST_CASE("after a crash the session is loaded again and the prompt retried") {
  char tmpl[] = "/tmp/tether-acp-session-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  supervisor::Bridge bridge(bridge_options({"crash-once", dir + "/crashed"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  std::string id = session.state().session_id;
  auto turn = session.prompt("x");
  auto events = collect(turn);
  bool retried = false, restored = false;
  for (const auto& e : events) {
    retried = retried || e.kind == TurnEvent::Kind::retry;
    restored = restored || (e.kind == TurnEvent::Kind::notice && e.text.find("restored") != std::string::npos);
  }
  CHECK(retried);
  CHECK(restored);
  CHECK(events.back().kind == TurnEvent::Kind::completed);
  // The retried attempt's answer follows the dropped partial one.
  CHECK(answer_text(events) == "partial recovered");
  CHECK(session.state().session_id == id);
  CHECK(session.state().sessions_loaded == 1);
  ::unlink((dir + "/crashed").c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE("prompts are serialized: a turn started while another runs waits for it") {
  supervisor::Bridge bridge(bridge_options({"count", "3"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto first = session.prompt("a");
  auto second = session.prompt("b");
  auto b = collect(second);  // drives the first one too
  auto a = collect(first);
  CHECK(answer_text(a) == "1 2 3 ");
  CHECK(answer_text(b) == "1 2 3 ");
  CHECK(a.back().kind == TurnEvent::Kind::completed);
  CHECK(b.back().kind == TurnEvent::Kind::completed);
}

TEST_CASE("prompt(text) puts on the wire what prompt_blocks() of the same text block does, byte for byte") {
  // prompt() writes its one text block itself; dump() of the block is the reference.
  char dir_template[] = "/tmp/tether-prompt-wire-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string trace_path = std::string(dir_template) + "/trace";
  const std::string text = "a \"q\"\n\\ caf\xc3\xa9 \x01 bad\xff";
  {
    auto o = bridge_options({});
    std::string err;
    o.trace = rpc::Trace::open(trace_path, err);
    REQUIRE_MESSAGE(o.trace, err);
    supervisor::Bridge bridge(o);
    REQUIRE_FALSE(bridge.start());
    acp::AcpSession session(bridge, client_options());
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    auto by_text = session.prompt(text);
    CHECK(collect(by_text).back().kind == TurnEvent::Kind::completed);
    auto by_blocks = session.prompt_blocks(nlohmann::json::array({{{"type", "text"}, {"text", text}}}));
    CHECK(collect(by_blocks).back().kind == TurnEvent::Kind::completed);
  }
  std::ifstream in(trace_path);
  std::string line, expected = "\"params\":{\"prompt\":" +
                                     rpc::dump(nlohmann::json::array({{{"type", "text"}, {"text", text}}})) + ",\"sessionId\":";
  int prompts = 0;
  while (std::getline(in, line)) {
    if (line.find("\"method\":\"session/prompt\"") == std::string::npos) continue;
    ++prompts;
    CHECK_MESSAGE(line.find(expected) != std::string::npos, line);
  }
  CHECK(prompts == 2);
  std::remove(trace_path.c_str());
  ::rmdir(dir_template);
}

TEST_CASE("a turn dropped by its caller is cancelled; the next turn runs after it") {
  char tmpl[] = "/tmp/tether-acp-session-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string log = dir + "/log";
  supervisor::Bridge bridge(bridge_options({"record", log}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto wait_ready = [](acp::Turn& t) {
    auto deadline = base::Deadline::after(std::chrono::seconds(10));
    std::string text;
    while (text.find("ready") == std::string::npos) {
      REQUIRE(!deadline.expired());
      text += answer_text(t.wait(deadline));
    }
  };
  {
    auto dropped = session.prompt("first");
    wait_ready(dropped);
  }  // dropped here: session/cancel goes out, the agent answers cancelled later
  auto next = session.prompt("second");
  wait_ready(next);
  next.cancel(acp::CancelCause::interrupt);
  auto events = collect(next);
  CHECK(events.back().kind == TurnEvent::Kind::completed);
  CHECK(events.back().stop_reason == "cancelled");
  CHECK(events.back().cancelled == acp::CancelCause::interrupt);
  std::ifstream in(log);
  int prompts = 0, cancels = 0;
  for (std::string l; std::getline(in, l);) {
    prompts += l == "session/prompt";
    cancels += l == "session/cancel";
  }
  CHECK(prompts == 2);
  CHECK(cancels == 2);
  [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str());
}

TEST_CASE("new_session: a fresh session/new on the same connection, without a second initialize") {
  char tmpl[] = "/tmp/tether-acp-session-XXXXXX";
  std::string dir = ::mkdtemp(tmpl);
  std::string log = dir + "/log";
  supervisor::Bridge bridge(bridge_options({"sessions", log}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, client_options());
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  std::string first = session.state().session_id;
  {
    auto turn = session.prompt("one");
    CHECK(answer_text(collect(turn)) == "ok " + first);
  }

  // Blocking, as /session new in talk uses it.
  REQUIRE_FALSE(session.new_session(base::Deadline::after(std::chrono::seconds(10))));
  std::string second = session.state().session_id;
  CHECK(second != first);
  CHECK(second.rfind("fake-session-", 0) == 0);
  CHECK(session.state().sessions_created == 2);
  {
    auto turn = session.prompt("two");
    CHECK(answer_text(collect(turn)) == "ok " + second);
  }

  // Not blocking, as batch uses it per item: the prompt waits for the new session.
  session.start_new_session();
  CHECK(session.state().session_id.empty());
  {
    auto turn = session.prompt("three");
    auto events = collect(turn);
    CHECK(events.back().kind == TurnEvent::Kind::completed);
    std::string third = session.state().session_id;
    CHECK(third != second);
    CHECK(answer_text(events) == "ok " + third);
  }

  std::ifstream in(log);
  int initializes = 0, news = 0, prompts = 0;
  for (std::string l; std::getline(in, l);) {
    initializes += l == "initialize";
    news += l == "session/new";
    prompts += l == "session/prompt";
  }
  CHECK(initializes == 1);
  CHECK(news == 3);
  CHECK(prompts == 3);
  CHECK(bridge.status().restarts_total == 0);
  [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str());
}

// --- through a tether server (via_server): the fake plays the server --------------------------

namespace {

struct ServerRun {
  std::string dir, log;
  ServerRun() {
    char tmpl[] = "/tmp/tether-acp-session-XXXXXX";
    dir = ::mkdtemp(tmpl);
    log = dir + "/log";
  }
  ~ServerRun() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::ifstream in(log);
    for (std::string l; std::getline(in, l);) out.push_back(l);
    return out;
  }
};

acp::ClientOptions server_client(acp::PermissionPolicy p, bool attach_main) {
  acp::ClientOptions o = client_options(p);
  o.via_server = true;
  o.attach_main = attach_main;
  return o;
}

// Events from session.poll() until `done` holds for what was collected (fails after 10 s). It
// waits as a front-end does, on fd() and next_deadline(), even when a turn's poll() already took
// the events off the bridge's queue.
std::vector<TurnEvent> poll_until(acp::AcpSession& session, const std::function<bool(const std::vector<TurnEvent>&)>& done,
                                  const std::function<void(TurnEvent&)>& each = {}) {
  std::vector<TurnEvent> all;
  auto deadline = base::Deadline::after(std::chrono::seconds(10));
  while (!done(all)) {
    REQUIRE_MESSAGE(!deadline.expired(), "poll() did not deliver what was expected");
    pollfd p{session.fd(), POLLIN, 0};
    ::poll(&p, 1, base::Deadline::earliest(deadline, session.next_deadline()).poll_timeout_ms());
    for (auto& e : session.poll()) {
      if (each) each(e);
      all.push_back(std::move(e));
    }
  }
  return all;
}

std::string texts_of(const std::vector<TurnEvent>& events, acp::Update::Kind kind) {
  std::string s;
  for (const auto& e : events)
    if (e.kind == TurnEvent::Kind::update && e.update.kind == kind) s += e.update.text;
  return s;
}

}  // namespace

TEST_CASE("via a server, attach_main joins the server's main session with session/load, not session/new") {
  ServerRun run;
  supervisor::Bridge bridge(bridge_options({"server", run.log}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::deny, true));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.state().session_id == "main-1");
  CHECK(session.state().on_main);
  CHECK(session.state().server.value("mainSessionId", "") == "main-1");
  CHECK(session.state().sessions_loaded == 0);  // joining is not a restore
  // The session's command list, sent by the server before it answered the attach, is known.
  CHECK(session.state().commands_announced);
  REQUIRE(session.state().commands.size() == 1);
  CHECK(session.state().commands[0].name == "shared");
  auto turn = session.prompt("hello");
  CHECK(answer_text(collect(turn)) == "ok main-1");
  auto lines = run.lines();
  CHECK(std::count(lines.begin(), lines.end(), "session/load main-1") == 1);
  CHECK(std::count(lines.begin(), lines.end(), "session/new") == 0);
  // No turn barrier: the server answers $/ping itself, so it would mark no boundary.
  CHECK(std::count(lines.begin(), lines.end(), "$/ping") == 0);
}

TEST_CASE("via a server without attach_main, the session is our own (session/new)") {
  ServerRun run;
  supervisor::Bridge bridge(bridge_options({"server", run.log}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::deny, false));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  CHECK(session.state().session_id.rfind("fake-session-", 0) == 0);
  CHECK_FALSE(session.state().on_main);
  auto lines = run.lines();
  CHECK(std::count(lines.begin(), lines.end(), "session/new") == 1);
}

TEST_CASE("via a server, a peer without _meta.tether is not a tether server: a protocol error") {
  supervisor::Bridge bridge(bridge_options({"not-server"}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::deny, true));
  auto failed = session.open(base::Deadline::after(std::chrono::seconds(10)));
  REQUIRE(failed);
  CHECK(failed->error["code"] == "protocol_error");
  CHECK(failed->error.value("message", "").find("the peer is not a tether server") != std::string::npos);
  CHECK(acp::exit_status(*failed) == 76);
}

TEST_CASE("via a server, a prompt its bridge died under is sent again (--retries), then fails with tether's error object") {
  ServerRun run;
  supervisor::Bridge bridge(bridge_options({"server", run.log}));
  REQUIRE_FALSE(bridge.start());
  auto opt = server_client(acp::PermissionPolicy::deny, false);
  opt.retries = 2;
  acp::AcpSession session(bridge, opt);
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  auto turn = session.prompt("fail now");
  auto events = collect(turn);
  REQUIRE(events.back().kind == TurnEvent::Kind::failed);
  CHECK(events.back().error.value("code", "") == "bridge_exited");
  CHECK(events.back().error.value("signal", "") == "SIGSEGV");
  CHECK(acp::exit_status(events.back()) == 69);
  CHECK(std::count_if(events.begin(), events.end(), [](const TurnEvent& e) { return e.kind == TurnEvent::Kind::retry; }) == 2);
  auto lines = run.lines();
  CHECK(std::count(lines.begin(), lines.end(), "session/prompt") == 3);  // once, and twice again
}

TEST_CASE("via a server, another client's turn, its permission request and the server's notices come from poll()") {
  ServerRun run;
  supervisor::Bridge bridge(bridge_options({"server", run.log}));
  REQUIRE_FALSE(bridge.start());
  acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::ask, true));
  REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
  {
    auto turn = session.prompt("other");
    CHECK(answer_text(collect(turn)) == "mine");
  }
  bool answered = false;
  auto events = poll_until(
      session,
      [](const std::vector<TurnEvent>& all) {
        return std::any_of(all.begin(), all.end(), [](const TurnEvent& e) {
          return e.kind == TurnEvent::Kind::notice && e.text.find("gave up") != std::string::npos;
        });
      },
      [&](TurnEvent& e) {
        if (e.kind != TurnEvent::Kind::permission) return;
        CHECK_FALSE(e.permission.answered);
        CHECK(e.permission.tool.title == "B edits");
        CHECK_FALSE(session.answer_permission(e.permission.token, std::string("maybe")));  // not offered
        CHECK(session.answer_permission(e.permission.token, std::string("no")));
        answered = true;
      });
  CHECK(answered);
  // The other client's prompt first, then its answer; our own late chunk is not among them.
  CHECK(texts_of(events, acp::Update::Kind::user_message) == "from B");
  CHECK(texts_of(events, acp::Update::Kind::agent_message) == "answer B B got selected:no");
  CHECK(session.state().late_updates == 1);
  std::vector<std::string> notices;
  for (const auto& e : events)
    if (e.kind == TurnEvent::Kind::notice) {
      CHECK(e.server_trouble);
      notices.push_back(e.text);
    }
  REQUIRE(notices.size() == 2);
  CHECK(notices[0] ==
        "the tether server restarted its bridge (generation 2): the bridge was killed by SIGSEGV; its last stderr "
        "line: boom; the agent lost the conversation context");
  CHECK(notices[1] == "the tether server gave up on its bridge: tether gave up on the bridge after 3 restarts");

  // A request of the server's own: its answer comes from poll() too.
  std::uint64_t id = session.request("_tether/status", nlohmann::json::object());
  auto replies = poll_until(session, [&](const std::vector<TurnEvent>& all) {
    return std::any_of(all.begin(), all.end(), [&](const TurnEvent& e) { return e.kind == TurnEvent::Kind::reply && e.request_id == id; });
  });
  for (const auto& e : replies)
    if (e.kind == TurnEvent::Kind::reply) {
      CHECK(e.error.is_null());
      CHECK(e.result.value("clients", 0) == 2);
    }
}

TEST_CASE("via a server, a routed permission request is answered by the policy at once, or withdrawn") {
  ServerRun run;
  supervisor::Bridge bridge(bridge_options({"server", run.log}));
  REQUIRE_FALSE(bridge.start());
  SUBCASE("allow: answered at once, told as answered") {
    acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::allow, true));
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    {
      auto turn = session.prompt("other");
      collect(turn);
    }
    auto events = poll_until(session, [](const std::vector<TurnEvent>& all) {
      return texts_of(all, acp::Update::Kind::agent_message).find("B got") != std::string::npos;
    });
    bool told = false;
    for (const auto& e : events)
      if (e.kind == TurnEvent::Kind::permission) {
        told = true;
        CHECK(e.permission.answered);
        REQUIRE(e.permission.chosen);
        CHECK(e.permission.chosen->id == "yes");
      }
    CHECK(told);
    CHECK(texts_of(events, acp::Update::Kind::agent_message).find("B got selected:yes") != std::string::npos);
  }
  SUBCASE("ask, then $/cancel_request: withdrawn, answered cancelled") {
    acp::AcpSession session(bridge, server_client(acp::PermissionPolicy::ask, true));
    REQUIRE_FALSE(session.open(base::Deadline::after(std::chrono::seconds(10))));
    {
      auto turn = session.prompt("withdraw");
      collect(turn);
    }
    std::uint64_t token = 0;
    auto events = poll_until(session, [](const std::vector<TurnEvent>& all) {
      return texts_of(all, acp::Update::Kind::agent_message).find("B got") != std::string::npos;
    });
    bool withdrawn = false;
    for (const auto& e : events) {
      if (e.kind == TurnEvent::Kind::permission) token = e.permission.token;
      if (e.kind == TurnEvent::Kind::permission_withdrawn) withdrawn = token != 0 && e.permission.token == token;
    }
    CHECK(withdrawn);
    CHECK(texts_of(events, acp::Update::Kind::agent_message) == "B got cancelled");
    CHECK_FALSE(session.answer_permission(token, std::string("yes")));
  }
}
