// Routing between clients of one session: who is asked the bridge's questions, who sees the
// stream, who gets the response; sessions opened through the server.
#include "serve/serve_e2e.h"

using namespace serve_e2e;

TEST_CASE("two raw clients: the newer gets the permission request, both the stream, only the sender the response") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());
  CHECK(attach_main(b, t) == sid);

  auto prompt = a.request("session/prompt", text_prompt(sid, "please edit it"));
  auto perm = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  REQUIRE(perm->contains("id"));
  b.respond((*perm)["id"], allow_once());

  auto done = a.response(prompt);
  CHECK(stop_reason(done) == "end_turn");
  CHECK(a.count([](const json& m) { return is_method(m, "session/request_permission"); }) == 0);
  CHECK(contains(a.chunks(), "Echo: please edit it"));
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
  // B sees the same answer stream, and A's prompt as the user's message.
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Permission granted: the edit was applied"); }));
  CHECK(contains(b.chunks(), "Echo: please edit it"));
  CHECK(b.chunks("user_message_chunk") == "please edit it");
  CHECK(a.chunks("user_message_chunk").empty());
  // Only A gets the response of A's prompt.
  CHECK(b.count([](const json& m) { return m.contains("result") && m["result"].is_object() && m["result"].contains("stopReason"); }) == 0);
  for (auto& m : b.messages())
    if (is_update(m, "agent_message_chunk")) CHECK(m["params"]["sessionId"] == sid);

  // B leaves: A, the only one left, is now asked.
  b.close();
  Raw observer(srv.socket());
  CHECK(eventually([&] { return attached(observer, sid) == 1; }));
  auto prompt2 = a.request("session/prompt", text_prompt(sid, "edit once more"));
  auto perm2 = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm2.has_value());
  a.respond((*perm2)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt2)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: edit once more"));
  CHECK_FALSE(a.closed());
}

TEST_CASE("the permission request moves to the older client when the newer one leaves before answering") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  auto b = std::make_unique<Raw>(srv.socket());
  attach_main(*b, t);
  auto prompt = a.request("session/prompt", text_prompt(sid, "edit while B leaves"));
  REQUIRE(b->wait([](const json& m) { return is_method(m, "session/request_permission"); }).has_value());
  b.reset();  // leaves with the question unanswered
  auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm.has_value());
  a.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
}

TEST_CASE_FIXTURE(TwoOnMain, "_tether/detach: a client that leaves a session (talk /new) is withdrawn its question and no longer asked") {
  auto prompt = a.request("session/prompt", text_prompt(sid, "edit while B detaches"));
  auto asked = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  REQUIRE(asked.has_value());  // B, the newer, is asked
  auto detached = b.response(b.request("_tether/detach", {{"sessionId", sid}}));
  CHECK(detached["result"] == json::object());
  // B learns the question is no longer its own; A, now the only client, is asked instead.
  CHECK(b.wait([&](const json& m) {
    return is_method(m, "$/cancel_request") && m["params"]["requestId"] == (*asked)["id"];
  }).has_value());
  auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump());
  REQUIRE(perm.has_value());
  a.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "Permission granted: the edit was applied"));
  CHECK(status(a)["sessions"][0]["attached"] == 1);
  // Detaching from a session one is not attached to is an error, not a crash.
  CHECK(b.response(b.request("_tether/detach", {{"sessionId", sid}}))["error"]["code"] == -32602);
}

TEST_CASE("two talk --connect clients in terminals: the newer is asked; after it quits, the older") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw observer(srv.socket());
  std::string sid = initialize(observer)["_meta"]["tether"]["mainSessionId"];

  Pty older(connect_arg("talk", srv.socket()), t.env());
  expect(older, kPrompt);
  REQUIRE_MESSAGE(eventually([&] { return attached(observer, sid) == 1; }), "talk did not attach to the main session");
  Pty newer(connect_arg("talk", srv.socket()), t.env());
  expect(newer, kPrompt);
  REQUIRE_MESSAGE(eventually([&] { return attached(observer, sid) == 2; }), "the second talk did not attach");

  older.mark();
  newer.mark();
  older.send("please edit the file\r");
  expect(newer, "choose 1-4");
  CHECK(older.count("choose 1-4") == 0);
  newer.send("1");
  expect(older, "Permission granted: the edit was applied");
  expect(newer, "Permission granted: the edit was applied");
  expect(older, kPrompt);

  newer.mark();
  newer.send("\x04");
  auto st = newer.wait_exit(15s);
  REQUIRE_MESSAGE(st.has_value(), "talk --connect did not exit after Ctrl-D\n" << screen(newer));
  CHECK(*st == 0);
  REQUIRE(eventually([&] { return attached(observer, sid) == 1; }));

  older.mark();
  older.send("edit it again\r");
  expect(older, "choose 1-4");
  older.send("1");
  expect(older, "Permission granted: the edit was applied");
  expect(older, kPrompt);
  older.mark();
  older.send("\x04");
  auto st2 = older.wait_exit(15s);
  REQUIRE(st2.has_value());
  CHECK(*st2 == 0);
  CHECK(srv.proc().running());
}

TEST_CASE("a session opened through the server: others attach with session/load; prompts need attaching") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string main_sid = initialize(a)["_meta"]["tether"]["mainSessionId"];
  auto created = a.response(a.request("session/new", {{"cwd", t.dir}, {"mcpServers", json::array()}}));
  INFO(created.dump());
  REQUIRE(created.contains("result"));
  std::string sid = created["result"]["sessionId"];
  CHECK(sid != main_sid);

  Raw b(srv.socket());
  initialize(b);
  auto refused = b.response(b.request("session/prompt", text_prompt(sid, "not attached")));
  INFO(refused.dump());
  REQUIRE(refused.contains("error"));
  CHECK(refused["error"]["code"] == -32602);
  auto loaded = b.response(b.request("session/load", {{"sessionId", sid}, {"cwd", t.dir}, {"mcpServers", json::array()}}));
  REQUIRE(loaded.contains("result"));
  CHECK(loaded["result"]["modes"]["currentModeId"] == "ask");  // what the session offers, no replay

  auto prompt = a.request("session/prompt", text_prompt(sid, "edit the new session"));
  auto perm = b.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  b.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Permission granted"); }));
  CHECK(b.chunks("user_message_chunk") == "edit the new session");
  // The main session heard nothing of it.
  Raw c(srv.socket());
  attach_main(c, t);
  CHECK(c.chunks().empty());
}
