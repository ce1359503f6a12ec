// Connection churn during a streaming turn, closing sessions at the agent, and the acceptance
// run of `prompt --connect`.
#include "serve/serve_e2e.h"

using namespace serve_e2e;

// --- 8. connection churn during a streaming turn -------------------------------------------------------

TEST_CASE("200 clients come and go while a turn streams: the turn completes whole, the server's fds return") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  Raw a(srv.socket());
  std::string sid = attach_main(a, t);
  // The flood's chunks are counted, not kept.
  std::size_t chunks = 0;
  a.sink = [&](const json& m) {
    if (!is_update(m, "agent_message_chunk")) return false;
    ++chunks;
    return true;
  };
  const int baseline = fd_count(srv.pid());
  REQUIRE(baseline > 0);

  constexpr std::size_t kChunks = 100000;
  auto turn = a.request("session/prompt", text_prompt(sid, "/flood " + std::to_string(kChunks)));
  REQUIRE(a.wait_until([&] { return chunks > 0; }));
  const std::string init =
      R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})";
  int answered = 0;
  std::size_t after_20 = 0;
  for (int i = 0; i < 200; ++i) {
    if (i == 20) after_20 = chunks;
    {
      Raw x(srv.socket());
      switch (i % 5) {
        case 0: break;  // closes right after connecting
        case 1: {       // a proper initialize, answered
          x.send_raw(init + "\n");
          answered += x.wait([](const json& m) { return is_response(m, 1); }, 10s).has_value();
          break;
        }
        case 2: x.send_raw(init.substr(0, 40)); break;  // drops mid-line
        case 3: x.send_raw(init + "\n"); break;         // asks and leaves without reading
        case 4: {                                       // attaches to the busy session, then leaves
          x.send_raw(init + "\n");
          x.send({{"jsonrpc", "2.0"}, {"id", 2}, {"method", "session/load"},
                  {"params", {{"sessionId", sid}, {"cwd", t.dir}, {"mcpServers", json::array()}}}});
          x.wait([](const json& m) { return is_response(m, 2); }, 10s);
          break;
        }
      }
    }
    a.drain_some(4);  // at most 256 KiB per client that came and went
  }
  const std::size_t during = chunks;
  CHECK(answered == 40);
  // Read slowly, the stream was still going after the first 20 clients: they overlapped.
  CHECK(after_20 < kChunks);
  auto r = a.response(turn, 60s);
  MESSAGE(after_20 << " chunks after 20 clients, " << during << " after 200, of " << kChunks);
  CHECK(stop_reason(r) == "end_turn");
  CHECK(chunks == kChunks);
  CHECK_FALSE(a.closed());
  CHECK(srv.proc().running());
  CHECK(eventually([&] { return fd_count(srv.pid()) == baseline; }));
  INFO("server fds now " << fd_count(srv.pid()) << ", baseline " << baseline);
  CHECK(fd_count(srv.pid()) == baseline);
  // Still serving.
  Raw late(srv.socket());
  initialize(late);
  auto next = a.request("session/prompt", text_prompt(sid, "still here"));
  a.sink = nullptr;
  CHECK(stop_reason(a.response(next)) == "end_turn");
  CHECK(contains(a.chunks(), "Echo: still here"));
}

// --- acceptance ---------------------------------------------------------------------------------------

TEST_CASE("serve closes a client's session at the agent when its last client leaves, and every session at --stop") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  for (int i = 0; i < 3; ++i) {
    auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"hello"}));
    CHECK(r.status == 0);
  }
  auto count = [&](const std::string& needle) {
    std::string trace = srv.trace();
    std::size_t n = 0;
    for (auto at = trace.find(needle); at != std::string::npos; at = trace.find(needle, at + 1)) ++n;
    return n;
  };
  // Three sessions of their own, each closed once its client left (the main one stays open).
  CHECK(eventually([&] { return count("-> {\"id\"") > 0 && count("\"method\":\"session/close\"") == 3; }, 5s));
  CHECK(count("\"method\":\"session/new\"") == 4);
  CHECK(count("$/ping") == 0);
  // --stop closes what is left: the main session.
  auto stop = run_to_end(t, {tether_bin(), "serve", "--stop", "--socket", srv.socket()});
  CHECK(stop.status == 0);
  CHECK(srv.proc().wait_exit(10s) == 0);
  CHECK(count("\"method\":\"session/close\"") == 4);
}

TEST_CASE("tether prompt --connect=PATH prints the demo agent's answer and exits 0") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  auto r = run_to_end(t, connect_arg("prompt", srv.socket(), {"hello"}));
  INFO("stdout:\n" << r.out << "\nstderr:\n" << r.err);
  CHECK(r.status == 0);
  CHECK(contains(r.out, "Echo: hello"));
  CHECK(srv.proc().running());
}

// Continued sessions through a server (issue 15): `prompt --connect -c` loads the session of the
// last conversation at the bridge (the server closed it when its client left).
TEST_CASE("prompt --connect -c continues the last conversation through the server") {
  TmpDir t;
  Server srv(t);
  srv.wait_ready();
  auto first = run_to_end(t, connect_arg("prompt", srv.socket(), {"my name is Ada"}));
  REQUIRE(first.status == 0);
  auto second = run_to_end(t, connect_arg("prompt", srv.socket(), {"-c", "what is my name?"}));
  INFO("stdout:\n" << second.out << "\nstderr:\n" << second.err);
  CHECK(second.status == 0);
  CHECK(contains(second.out, "turn 2 of this session"));
}
