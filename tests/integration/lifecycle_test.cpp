// Lifecycle requests: recycle() ends a generation as if it had died, so the restart policy
// applies; restart() forgets the restart history, from a running bridge as from a failed one.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "integration.h"
#include "rpc/trace.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Reply;
using supervisor::Bridge;
using supervisor::State;

// The status events up to and including the first `state` event of `generation`.
std::vector<json> statuses_until(rpc::EventQueue& q, const std::string& state, std::uint64_t generation) {
  std::vector<json> seen;
  auto deadline = Deadline::after(5s);
  for (;;) {
    auto ev = q.pop(deadline);
    if (!ev) {
      FAIL("no \"" << state << "\" event for generation " << generation);
      return seen;
    }
    if (ev->kind != rpc::Event::Kind::status) continue;
    seen.push_back(ev->message);
    if (ev->message.value("state", "") == state && ev->message.value("generation", 0ull) == generation) return seen;
  }
}

std::vector<std::string> states_of(const std::vector<json>& events) {
  std::vector<std::string> s;
  for (auto& e : events) s.push_back(e.value("state", "") + "@" + std::to_string(e.value("generation", 0)));
  return s;
}

TEST_CASE("recycle() goes through the restart policy; restart() resets the budget") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("echo");
    opt.restart.max_restarts = 2;
    opt.restart.window = 60s;
    opt.restart.base_delay = 10ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    REQUIRE(wait_state(q, "ready", 1).has_value());

    // First recycle: counted, delayed by the base delay.
    bridge.recycle("rotating logs");
    auto ev = statuses_until(q, "ready", 2);
    CHECK(states_of(ev) == std::vector<std::string>{"exited@1", "backoff@1", "starting@2", "ready@2"});
    for (auto& e : ev) {
      if (e.value("state", "") == "exited")
        CHECK(contains(e["error"].value("message", ""), "the bridge was restarted (rotating logs)"));
      if (e.value("state", "") == "backoff") CHECK(e.value("delayMs", -1) == 10);
    }
    auto st = bridge.status();
    CHECK(st.restarts_in_window == 1);
    CHECK(st.restarts_total == 1);
    CHECK(bridge.call("hi", {{"g", 2}}, Deadline::after(5s)).ok());

    // Second recycle: the delay doubles.
    bridge.recycle("again");
    ev = statuses_until(q, "ready", 3);
    bool saw_backoff = false;
    for (auto& e : ev)
      if (e.value("state", "") == "backoff") {
        saw_backoff = true;
        CHECK(e.value("delayMs", -1) == 20);
      }
    CHECK(saw_backoff);
    CHECK(bridge.status().restarts_in_window == 2);

    // Third recycle: the budget (2 in 60 s) is spent, so the bridge fails instead of restarting.
    bridge.recycle("once too often");
    ev = statuses_until(q, "failed", 3);
    CHECK(contains(ev.back().value("message", ""), "after 2 restarts"));
    CHECK(ev.back()["error"].value("code", "") == "restart_limit");
    CHECK(bridge.status().state == State::failed);
    Reply refused = bridge.call("hi", json::object(), Deadline::after(1s));
    CHECK(refused.status == Reply::Status::closed);
    CHECK(refused.value.value("code", "") == "restart_limit");

    // A manual restart from failed: a new generation and the full budget again.
    bridge.restart();
    ev = statuses_until(q, "ready", 4);
    CHECK(bridge.status().state == State::ready);
    CHECK(bridge.status().restarts_in_window == 0);
    CHECK(bridge.call("hi", {{"g", 4}}, Deadline::after(5s)).ok());

    // So a recycle is granted again, with the base delay.
    bridge.recycle("budget is back");
    ev = statuses_until(q, "ready", 5);
    saw_backoff = false;
    for (auto& e : ev)
      if (e.value("state", "") == "backoff") {
        saw_backoff = true;
        CHECK(e.value("delayMs", -1) == 10);
      }
    CHECK(saw_backoff);
    CHECK(bridge.status().restarts_in_window == 1);

    // A manual restart of a running bridge: no backoff, and the history is forgotten.
    bridge.restart();
    ev = statuses_until(q, "ready", 6);
    for (auto& e : ev) {
      CHECK(e.value("state", "") != "backoff");
      if (e.value("state", "") == "exited") CHECK(contains(e["error"].value("message", ""), "manual restart"));
    }
    CHECK(bridge.status().restarts_in_window == 0);
    CHECK(bridge.status().generation == 6);
    CHECK(bridge.call("hi", {{"g", 6}}, Deadline::after(5s)).ok());
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("recycle() fails a waiting call with the reason given") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("silent");
    opt.grace = 20s;  // what the ladder would wait if closing stdin did not end the bridge
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    Reply reply;
    std::thread caller([&] { reply = bridge.call("never-answered", json::object(), Deadline::after(30s)); });
    // The request has reached the bridge's stdin: it is waiting for an answer that never comes.
    REQUIRE(test::eventually([&] { return bridge.status().counters.frames_out >= 1; }));
    auto t0 = std::chrono::steady_clock::now();
    bridge.recycle("operator asked");
    caller.join();
    // The silent bridge exits at stdin EOF, the ladder's first step: long before its grace ends (an
    // ordering, not a speed a busy machine could miss).
    CHECK(ms_since(t0) < std::chrono::duration<double, std::milli>(opt.grace).count() / 2);
    CHECK(reply.status == Reply::Status::closed);
    CHECK(reply.value.value("code", "") == "bridge_exited");
    CHECK(contains(reply.value.value("message", ""), "operator asked"));
    CHECK(reply.value.value("generation", 0) == 1);
    CHECK(wait_state(*bridge.events(), "ready", 2).has_value());
  }
  CHECK_NO_LEAKS(guard);
}

// What a front-end does for /restart: ask for it, wait until status() shows a newer generation
// ready, use it. The ready it sees must be the new generation's, not the old one's (or the failed
// state's): a status() never shows the new number with the old state.
TEST_CASE("restart() then a newer generation ready: the next call reaches it") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("echo");
    opt.restart.max_restarts = 0;  // any recycle fails the bridge at once
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());

    SUBCASE("from a running bridge") {
      for (std::uint64_t round = 0; round < 5; ++round) {
        CAPTURE(round);
        REQUIRE(restart_and_wait(bridge));
        Reply r = bridge.call("hi", {{"round", round}}, Deadline::after(5s));
        CHECK_MESSAGE(r.ok(), rpc::dump(r.value));
        CHECK(bridge.status().generation == round + 2);
      }
    }
    SUBCASE("from the failed state") {
      bridge.recycle("spend the budget");
      REQUIRE(wait_state(*bridge.events(), "failed", 1).has_value());
      CHECK(restart_and_wait(bridge));
      Reply r = bridge.call("hi", json::object(), Deadline::after(5s));
      CHECK_MESSAGE(r.ok(), rpc::dump(r.value));
      CHECK(bridge.status().generation == 2);
    }
  }
  CHECK_NO_LEAKS(guard);
}

// A second restart() while the first one's stop ladder still runs is the same restart: the new
// generation must not be torn down by a request meant for the old one.
TEST_CASE("restart() twice during one stop ladder: one new generation, and it stays") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("ignore_sigterm");  // the ladder runs its whole length: grace + term_wait
    opt.grace = 200ms;
    opt.term_wait = 200ms;
    // The trace tells when the ladder has begun (the supervisor has taken the first request).
    char trace_path[] = "/tmp/tether-lifecycle-trace-XXXXXX";
    int tfd = ::mkstemp(trace_path);
    REQUIRE(tfd >= 0);
    ::close(tfd);
    std::string err;
    opt.trace = rpc::Trace::open(trace_path, err);
    REQUIRE_MESSAGE(opt.trace, err);
    auto trace_says = [&](const std::string& what) {
      std::ifstream in(trace_path);
      std::stringstream text;
      text << in.rdbuf();
      return contains(text.str(), what);
    };
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    REQUIRE(wait_state(q, "ready", 1).has_value());
    bridge.restart();
    REQUIRE(test::eventually([&] { return trace_says("closed the bridge's stdin"); }, Ms(5000)));
    bridge.restart();  // generation 1 is still in its ladder
    REQUIRE(ready_after(bridge, 1));
    CHECK(bridge.status().generation == 2);
    // A stale second request would end generation 2 at once: its ladder takes 400 ms, so a call
    // made now would fail and "exited@2" would follow. Neither may happen.
    Reply r = bridge.call("hi", json::object(), Deadline::after(5s));
    CHECK_MESSAGE(r.ok(), rpc::dump(r.value));
    auto seen = statuses_until(q, "ready", 2);
    CHECK(states_of(seen) == std::vector<std::string>{"exited@1", "starting@2", "ready@2"});
    REQUIRE(restart_and_wait(bridge));  // and a later restart still works
    CHECK(bridge.status().generation == 3);
    seen = statuses_until(q, "ready", 3);
    CHECK(states_of(seen) == std::vector<std::string>{"exited@2", "starting@3", "ready@3"});
    ::unlink(trace_path);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("stop() during a long backoff returns at once") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("crash_at_startup");
    opt.restart.base_delay = 30s;
    Bridge bridge(opt);
    bridge.start();
    REQUIRE(wait_state(*bridge.events(), "backoff", 1).has_value());
    auto t0 = std::chrono::steady_clock::now();
    bridge.stop();
    // Long before the backoff would end (an ordering, not a speed).
    CHECK(ms_since(t0) < std::chrono::duration<double, std::milli>(opt.restart.base_delay).count() / 2);
    CHECK(bridge.status().state == State::exited);
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
