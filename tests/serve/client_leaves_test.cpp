// A client that disappears mid-turn (closes, is killed, leaves a question unanswered): its turn is
// cancelled at the bridge and the session goes on; the turn queue's boundary between turns.
#include <signal.h>

#include "serve/serve_e2e.h"

using namespace serve_e2e;

namespace {
bool stopped(pid_t pid) {  // the process is in state T (SIGSTOP took)
  std::string st = slurp("/proc/" + std::to_string(pid) + "/stat");
  auto close = st.rfind(')');
  return close != std::string::npos && close + 2 < st.size() && st[close + 2] == 'T';
}
}  // namespace

// --- 2. a client that disappears mid-turn ----------------------------------------------------------------


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
  auto next = b.request("session/prompt", text_prompt(sid, "after the drop"));
  auto r = b.response(next, 10s);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: after the drop"));
  CHECK(cancelled_before_next(srv, "slow", "after the drop"));
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
  auto r = b.response(b.request("session/prompt", text_prompt(sid, "after the kill")), 10s);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: after the kill"));
  // The killed client's turn was on a session of its own (prompt --connect opens one), so nothing
  // orders its end against B's prompt on the main session: wait for it instead.
  CHECK(ended_cancelled(srv, "slow"));
  CHECK(srv.proc().running());
}

TEST_CASE("a sender that leaves while it holds its permission request: answered cancelled at the bridge, the session goes on") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  auto a = std::make_unique<Raw>(srv.socket());
  std::string sid = attach_main(*a, t);
  Raw b(srv.socket());  // the newer: not asked (the question is the sender's)
  attach_main(b, t);
  a->request("session/prompt", text_prompt(sid, "edit and leave"));
  auto perm = a->wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a->dump());
  REQUIRE(perm.has_value());
  std::string bridge_sid = wait_prompt_out(srv, "edit and leave");
  a.reset();  // the sender leaves mid-turn, its question unanswered
  {
    INFO("trace:\n" << srv.trace());
    CHECK(cancel_sent(srv, bridge_sid));
    CHECK(srv.wait_trace([](const json& m) {
      return m.contains("result") && m["result"].is_object() && m["result"].contains("outcome") &&
             m["result"]["outcome"].value("outcome", "") == "cancelled";
    }));
  }
  // The bridge got its answer (cancelled), so the turn ended and the session is free.
  auto r = b.response(b.request("session/prompt", text_prompt(sid, "next one")), 10s);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: next one"));
  CHECK(cancelled_before_next(srv, "edit and leave", "next one"));
  CHECK(b.count([](const json& m) { return is_method(m, "session/request_permission"); }) == 0);
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
  // Seen queued before A's turn ended (an ordering: however slow the machine, A's turn lasts 1 s
  // of the agent's time and B's prompt cannot leave the queue before it ends).
  bool queued = false;
  CHECK(eventually([&] {
    queued = status(watcher)["sessions"][0]["queued"] == 1;
    a.drain();
    return queued || a.find([&](const json& m) { return is_response(m, first); });
  }, 15s));
  CHECK(queued);
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

TEST_CASE("a client that answers and leaves at once keeps its answer, though a write to it fails first") {
  // The server is held (SIGSTOP) while B answers a file request and closes, and C prompts in a second
  // session B also joined: on resuming, the server writes C's user message to B before it reads B
  // (EPIPE: B is dead). B's answer, still in its socket, must reach the agent, not be handed over
  // or refused (it used to be refused -32601: no other client served files).
  TmpDir t;
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw c(srv.socket());  // first, so its input is read first in a poll round
  initialize(c);
  auto created = c.response(c.request("session/new", {{"cwd", t.dir}, {"mcpServers", json::array()}}));
  REQUIRE(created.contains("result"));
  std::string s2 = created["result"]["sessionId"];
  Raw a(srv.socket());  // the sender: serves no files
  std::string sid = attach_main(a, t);
  auto b = std::make_unique<Raw>(srv.socket());  // the only client that serves files
  attach_main(*b, t, fs_caps());
  auto loaded = b->response(b->request("session/load", {{"sessionId", s2}, {"cwd", t.dir}, {"mcpServers", json::array()}}));
  REQUIRE(loaded.contains("result"));

  auto prompt = a.request("session/prompt", text_prompt(sid, "/read " + t.path("note.txt") + " show it"));
  auto asked = b->wait([](const json& m) { return is_method(m, "fs/read_text_file"); });
  REQUIRE(asked.has_value());
  REQUIRE(::kill(srv.pid(), SIGSTOP) == 0);
  REQUIRE(eventually([&] { return stopped(srv.pid()); }));
  b->respond((*asked)["id"], {{"content", "hello from B"}});
  b.reset();
  c.request("session/prompt", text_prompt(s2, "hi"));
  REQUIRE(::kill(srv.pid(), SIGCONT) == 0);
  auto done = a.response(prompt);
  INFO("A got:\n" << a.dump() << "\nserver log:\n" << srv.log());
  CHECK(stop_reason(done) == "end_turn");
  CHECK(contains(a.chunks(), "Read " + t.path("note.txt") + ": hello from B"));
}
