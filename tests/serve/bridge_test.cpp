// The server's own answers while the bridge is busy ($/ping), and the bridge dying: restarts,
// queued prompts, the restart budget.
#include "serve/serve_e2e.h"

using namespace serve_e2e;

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
    auto r = b.response(id, 10s);
    auto rtt = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - sent);
    // Answered while the turn still ran: the ping did not wait for it (an ordering).
    a.drain();
    if (a.find([&](const json& m) { return is_response(m, turn); })) break;
    worst = std::max(worst, rtt);
    CHECK(r["result"] == json::object());
    ++pings;
    // Paced by waiting on A's socket until the next ping is due (A's messages are read meanwhile).
    next_ping += 50ms;
    for (auto now = Clock::now(); now < next_ping; now = Clock::now())
      a.pump(static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(next_ping - now).count()) + 1);
  }
  auto turn_took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - turn_start);
  MESSAGE(pings << " pings during a " << turn_took.count() << " ms turn, slowest answered in " << worst.count()
                << " ms");
  // Bounds relative to the turn measured here: many pings answered during it, none taking a
  // sizeable part of it (a ping that waited for the turn would take most of it).
  CHECK(pings >= 20);
  CHECK(worst * 4 < turn_took);
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

// A turn the server's bridge dies under is answered with an error by the server and sent again by
// the client only, by its own --retries (the direct commands' rule, applied once, by one side).
TEST_CASE("prompt --connect: a turn the bridge crashed on is resent by the client's --retries, never by the server") {
  TmpDir t;
  Server srv(t, {"--restart-delay", "0.05"});
  srv.wait_ready();
  auto prompts_out = [&] {
    int n = 0;
    for (auto& m : srv.to_bridge()) n += is_method(m, "session/prompt") && contains(m["params"]["prompt"].dump(), "boom");
    return n;
  };
  int sent = 0;
  SUBCASE("--retries 0: sent once") {
    sent = 1;
    auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"--retries", "0", "/crash boom"}));
    INFO(r.err);
    CHECK(r.status == 69);
    CHECK(prompts_out() == sent);
  }
  SUBCASE("--retries 1 (the default): sent twice") {
    sent = 2;
    auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"/crash boom"}));
    INFO(r.err);
    CHECK(r.status == 69);
    CHECK(contains(r.err, "retry 1 of 1"));
    CHECK(prompts_out() == sent);
  }
  // The server sent nothing again on its own, even once its bridge was back.
  Raw c(srv.socket());
  CHECK(eventually([&] { return status(c)["link"] == "ready"; }));
  CHECK(prompts_out() == sent);
}
