// Routing between clients of one session: who is asked the bridge's questions, who sees the
// stream, who gets the response; sessions opened through the server.
#include "serve/serve_e2e.h"

using namespace serve_e2e;

namespace {
bool is_permission(const json& m) { return is_method(m, "session/request_permission"); }
bool is_read(const json& m) { return is_method(m, "fs/read_text_file"); }
bool asked_elsewhere(const json& m, const std::string& method) {
  return is_method(m, "_tether/asked_elsewhere") && m["params"]["method"] == method;
}
}  // namespace

TEST_CASE("two raw clients: each turn's sender gets its permission request, both the stream, only the sender the response") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());
  CHECK(attach_main(b, t) == sid);

  // A's turn: A is asked, although B attached later.
  auto prompt = a.request("session/prompt", text_prompt(sid, "please edit it"));
  auto perm = a.wait(is_permission);
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  REQUIRE(perm->contains("id"));
  a.respond((*perm)["id"], allow_once());

  auto done = a.response(prompt);
  CHECK(stop_reason(done) == "end_turn");
  CHECK(b.count(is_permission) == 0);
  // Its own question: no note that it waits on someone else.
  CHECK(a.count([](const json& m) { return is_method(m, "_tether/asked_elsewhere"); }) == 0);
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

  // B's turn: B is asked, not A (the older).
  auto prompt2 = b.request("session/prompt", text_prompt(sid, "edit once more"));
  auto perm2 = b.wait(is_permission);
  INFO("B got:\n" << b.dump());
  REQUIRE(perm2.has_value());
  b.respond((*perm2)["id"], allow_once());
  CHECK(stop_reason(b.response(prompt2)) == "end_turn");
  CHECK(contains(b.chunks(), "Echo: edit once more"));
  CHECK(a.count(is_permission) == 1);  // its own, from the first turn
  CHECK_FALSE(a.closed());
}

TEST_CASE("a question the sender cannot answer goes to the newest client that can; when that one leaves, to the next; the sender is told") {
  TmpDir t;
  std::ofstream(t.path("note.txt")) << "hello from the file";
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw a(srv.socket());  // the sender: serves no files
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());  // serves files
  attach_main(b, t, fs_caps());
  auto c = std::make_unique<Raw>(srv.socket());  // serves files, attached last
  attach_main(*c, t, fs_caps());

  auto prompt = a.request("session/prompt", text_prompt(sid, "/read " + t.path("note.txt") + " show it"));
  auto first = c->wait(is_read);
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(first.has_value());
  CHECK(b.count(is_read) == 0);
  CHECK(a.wait([](const json& m) { return asked_elsewhere(m, "fs/read_text_file"); }).has_value());
  c.reset();  // leaves with the request unanswered
  auto handed = b.wait(is_read);
  REQUIRE(handed.has_value());
  CHECK((*handed)["params"]["path"] == t.path("note.txt"));
  b.respond((*handed)["id"], {{"content", "hello from B"}});
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "Read " + t.path("note.txt") + ": hello from B"));
  // One line per turn, not one per client asked (nor one per request: next test).
  CHECK(a.count([](const json& m) { return asked_elsewhere(m, "fs/read_text_file"); }) == 1);
  CHECK(a.count(is_read) == 0);
}

TEST_CASE("the sender hears once per turn that its questions went elsewhere, however many there are") {
  TmpDir t;
  std::ofstream(t.path("note.txt")) << "hello";
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw a(srv.socket());  // the sender: serves no files
  std::string sid = attach_main(a, t);
  Raw b(srv.socket());
  attach_main(b, t, fs_caps());
  auto notes = [&] { return a.count([](const json& m) { return is_method(m, "_tether/asked_elsewhere"); }); };
  for (int turn = 1; turn <= 2; ++turn) {
    CAPTURE(turn);
    auto prompt = a.request("session/prompt",
                            text_prompt(sid, "/read " + t.path("note.txt") + " /write " + t.path("out.txt") + " edit"));
    auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
    REQUIRE(perm.has_value());
    a.respond((*perm)["id"], allow_once());
    auto wr = b.wait([](const json& m) { return is_method(m, "fs/write_text_file"); });
    REQUIRE(wr.has_value());
    b.respond((*wr)["id"], json::object());
    auto rd = b.wait(is_read);
    REQUIRE(rd.has_value());
    b.respond((*rd)["id"], {{"content", "from B"}});
    CHECK(stop_reason(a.response(prompt)) == "end_turn");
    CHECK(notes() == 1);  // two requests went to B in this turn: one note, and again next turn
    a.clear();
    b.clear();
  }
}

TEST_CASE("a file request nobody attached serves is refused at the bridge (-32601), not sent") {
  TmpDir t;
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  auto prompt = a.request("session/prompt", text_prompt(sid, "/read " + t.path("none.txt") + " show it"));
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  INFO("A got:\n" << a.dump());
  CHECK(contains(a.chunks(), "Could not read"));
  CHECK(contains(a.chunks(), "no attached tether client serves files"));
  CHECK(a.count(is_read) == 0);
}

TEST_CASE("_tether/detach: a client that leaves a session (talk /new) is withdrawn its question and no longer asked") {
  TmpDir t;
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw a(srv.socket());  // the sender: serves no files
  std::string sid = attach_main(a, t);
  Raw older(srv.socket());
  attach_main(older, t, fs_caps());
  Raw b(srv.socket());
  attach_main(b, t, fs_caps());

  auto prompt = a.request("session/prompt", text_prompt(sid, "/read " + t.path("x") + " while B detaches"));
  auto asked = b.wait(is_read);
  REQUIRE(asked.has_value());  // B, the newest that serves files, is asked
  auto detached = b.response(b.request("_tether/detach", {{"sessionId", sid}}));
  CHECK(detached["result"] == json::object());
  // B learns the question is no longer its own; the older client is asked instead.
  CHECK(b.wait([&](const json& m) {
    return is_method(m, "$/cancel_request") && m["params"]["requestId"] == (*asked)["id"];
  }).has_value());
  auto handed = older.wait(is_read);
  INFO("older got:\n" << older.dump());
  REQUIRE(handed.has_value());
  older.respond((*handed)["id"], {{"content", "from the older"}});
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(contains(a.chunks(), "from the older"));
  CHECK(attached(a, sid) == 2);
  // Detaching from a session one is not attached to is an error, not a crash.
  CHECK(b.response(b.request("_tether/detach", {{"sessionId", sid}}))["error"]["code"] == -32602);
}

TEST_CASE("two talk --connect clients in terminals: each turn's question is asked in its sender's terminal") {
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

  // The older one's turn: asked there, although the newer attached later.
  older.mark();
  newer.mark();
  older.send("please edit the file\r");
  expect(older, "choose 1-4");
  older.send("1");
  expect(older, "Permission granted: the edit was applied");
  expect(newer, "Permission granted: the edit was applied");
  expect(older, kPrompt);
  CHECK(newer.count("choose 1-4") == 0);
  CHECK(older.count("waiting:") == 0);

  // The newer one's turn: asked there.
  older.mark();
  newer.mark();
  newer.send("edit it again\r");
  expect(newer, "choose 1-4");
  newer.send("1");
  expect(newer, "Permission granted: the edit was applied");
  expect(older, "Permission granted: the edit was applied");
  expect(newer, kPrompt);
  CHECK(older.count("choose 1-4") == 0);

  for (Pty* p : {&newer, &older}) {
    p->mark();
    p->send("\x04");
    auto st = p->wait_exit(15s);
    REQUIRE_MESSAGE(st.has_value(), "talk --connect did not exit after Ctrl-D\n" << screen(*p));
    CHECK(*st == 0);
  }
  CHECK(srv.proc().running());
}

TEST_CASE("talk --connect: the sender is told where its question went; SIGHUP of the client holding it hands it on, as SIGKILL does") {
  TmpDir t;
  std::ofstream(t.path("note.txt")) << "hello from the file";
  Server srv(t, {"--allow-fs"});
  srv.wait_ready();
  Raw observer(srv.socket());
  std::string sid = initialize(observer)["_meta"]["tether"]["mainSessionId"];
  auto talk = [&](std::vector<std::string> rest, int n) {
    auto p = std::make_unique<Pty>(connect_arg("talk", srv.socket(), std::move(rest)), t.env());
    expect(*p, kPrompt);
    REQUIRE_MESSAGE(eventually([&] { return attached(observer, sid) == n; }), "talk " << n << " did not attach");
    return p;
  };
  auto sender = talk({}, 1);  // serves no files
  auto keeper = talk({"--allow-fs", "--cwd", t.dir}, 2);
  auto holder = talk({"--allow-fs", "--cwd", t.dir}, 3);  // the newest that serves files
  // The holder is stopped, so the request waits in it, as a question waits for a person.
  REQUIRE(::kill(holder->pid(), SIGSTOP) == 0);

  sender->mark();
  sender->send("//read " + t.path("note.txt") + " show it\r");
  expect(*sender, "waiting: the agent's fs/read_text_file request went to another client of the tether server");
  // The request is the holder's now (the note goes out with it); its terminal closes.
  REQUIRE(::kill(holder->pid(), SIGHUP) == 0);
  REQUIRE(::kill(holder->pid(), SIGCONT) == 0);
  auto st = holder->wait_exit(15s);
  REQUIRE(st.has_value());
  CHECK(*st == 128 + SIGHUP);
  // Handed to the keeper, which serves it: the sender's turn ends with the file's content.
  expect(*sender, "hello from the file");
  expect(*sender, kPrompt);
  CHECK(sender->count("waiting:") == 1);  // once per turn, not again when the keeper is asked
  for (Pty* p : {sender.get(), keeper.get()}) {
    p->send("\x04");
    CHECK(p->wait_exit(15s) == 0);
  }
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
  auto perm = a.wait([](const json& m) { return is_method(m, "session/request_permission"); });
  INFO("A got:\n" << a.dump() << "B got:\n" << b.dump());
  REQUIRE(perm.has_value());
  CHECK((*perm)["params"]["sessionId"] == sid);
  a.respond((*perm)["id"], allow_once());
  CHECK(stop_reason(a.response(prompt)) == "end_turn");
  CHECK(b.wait_until([&] { return contains(b.chunks(), "Permission granted"); }));
  CHECK(b.chunks("user_message_chunk") == "edit the new session");
  // The main session heard nothing of it.
  Raw c(srv.socket());
  attach_main(c, t);
  CHECK(c.chunks().empty());
}
