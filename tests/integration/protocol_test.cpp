// Both directions of JSON-RPC over one connection: the bridge's own requests reach the consumer as
// events and are answered through the Bridge, with ids that live in their own space.
#include <doctest/doctest.h>

#include <thread>

#include "integration.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Event;
using rpc::Reply;
using supervisor::Bridge;

// Pops events until the bridge's next request.
std::optional<Event> next_request(rpc::EventQueue& q) {
  auto deadline = Deadline::after(5s);
  while (auto ev = q.pop(deadline))
    if (ev->kind == Event::Kind::request) return ev;
  return std::nullopt;
}

TEST_CASE("a request from the bridge, with the same id as our pending one, is answered through respond()") {
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("asks_back"));
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();

    Reply reply;
    std::thread caller([&] { reply = bridge.call("do-it", {{"what", "deploy"}}, Deadline::after(10s)); });
    auto req = next_request(q);
    REQUIRE(req.has_value());
    CHECK(req->generation == 1);
    CHECK(req->message.value("method", "") == "client/confirm");
    CHECK(req->message["params"].value("question", "") == "proceed?");
    // Our call is id 1 and still waiting; the bridge's request is id 1 too: a request, not its reply.
    CHECK(req->message["id"] == 1);
    bridge.respond(2, req->message["id"], {{"ignored", true}});  // another generation: dropped
    bridge.respond(req->generation, req->message["id"], {{"yes", true}});
    caller.join();
    REQUIRE(reply.ok());
    CHECK(reply.value["clientSaid"] == json{{"yes", true}});
    CHECK(reply.value["clientError"].is_null());

    std::thread caller2([&] { reply = bridge.call("do-it-again", json::object(), Deadline::after(10s)); });
    req = next_request(q);
    REQUIRE(req.has_value());
    bridge.respond_error(req->generation, req->message["id"], -32000, "not allowed");
    caller2.join();
    REQUIRE(reply.ok());
    CHECK(reply.value["clientError"].value("code", 0) == -32000);
    CHECK(reply.value["clientError"].value("message", "") == "not allowed");
    CHECK(bridge.status().counters.unknown_responses == 0);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a request id a double cannot hold (12345678901234567890123, 1.50) is echoed exactly as the bridge wrote it") {
  test::LeakGuard guard;
  for (std::string raw : {"12345678901234567890123", "1.50", "-0.0"}) {
    CAPTURE(raw);
    Bridge bridge(fake_bridge("asks_back", {"--id", raw}));
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    for (bool as_error : {false, true}) {
      Reply reply;
      std::thread caller([&] { reply = bridge.call("do-it", json::object(), Deadline::after(10s)); });
      auto req = next_request(q);
      REQUIRE(req.has_value());
      CHECK(req->message["id"].is_number_float());
      if (as_error) bridge.respond_error(req->generation, req->message["id"], rpc::kMethodNotFound, "Method not found");
      else bridge.respond(req->generation, req->message["id"], {{"yes", true}});
      caller.join();
      REQUIRE(reply.ok());
      CHECK(reply.value["echoedId"] == raw);
      if (as_error) CHECK(reply.value["clientError"].value("code", 0) == rpc::kMethodNotFound);
      else CHECK(reply.value["clientSaid"] == json{{"yes", true}});
    }
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
