// The heartbeat: armed by the first answered "$/ping", three consecutive misses declare the bridge
// hung (it is killed and restarted); a bridge that never answers pings is never disturbed, and a
// healthy idle bridge is left alone.
#include <doctest/doctest.h>

#include <algorithm>
#include <thread>

#include "integration.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Reply;
using supervisor::Bridge;
using supervisor::State;

bool is_hung_event(const json& m) {
  return m.value("state", "") == "exited" && m.contains("error") && m["error"].value("code", "") == "bridge_hung";
}

// ping_once_then_hang with heartbeat `hb`: answers one ping, then nothing. Expected: hung after the
// answered ping plus 1 (silence) + 3 (misses) heartbeat periods; killed; generation 2 ready.
void hang_case(base::Duration hb, bool ping_answered_with_error) {
  const double hb_ms = std::chrono::duration<double, std::milli>(hb).count();
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("ping_once_then_hang");
    if (ping_answered_with_error) opt.argv.push_back("--error");
    opt.heartbeat = hb;
    Bridge bridge(opt);
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE_FALSE(bridge.start().has_value());
    const pid_t pid1 = bridge.status().pid;
    REQUIRE(bridge.call("hello", {{"x", 1}}, Deadline::after(5s)).ok());  // it answers before the ping

    // Once it answered its ping it answers nothing: a call now waits for the hang to be declared.
    REQUIRE(test::eventually([&] { return contains(bridge.status().stderr_tail, "answered one ping"); },
                             Ms(static_cast<long>(hb_ms * 3 + 2000))));
    // When it answered, by its own clock (the same as ours): seeing the line here may come later,
    // which would shorten the interval measured below and fail its lower bound under load.
    const std::string tail = bridge.status().stderr_tail;
    const std::string mark = "answered one ping at ";
    const auto at = tail.find(mark);
    REQUIRE(at != std::string::npos);
    const long long answered_ns = std::stoll(tail.substr(at + mark.size()));
    const double answered_ms =
        (answered_ns - std::chrono::duration_cast<std::chrono::nanoseconds>(t0.time_since_epoch()).count()) / 1e6;
    Reply stuck = bridge.call("stuck", json::object(), Deadline::after(30s));
    const double stuck_ms = ms_since(t0);
    CHECK(stuck.status == Reply::Status::closed);
    CHECK(stuck.value.value("code", "") == "bridge_hung");
    CHECK(stuck.value.value("generation", 0) == 1);

    auto hung = wait_status(*bridge.events(), is_hung_event, Ms(static_cast<long>(hb_ms * 10 + 5000)));
    REQUIRE(hung.has_value());
    CHECK((*hung).value("generation", 0) == 1);
    CHECK(contains((*hung)["error"].value("message", ""), "stopped answering heartbeats"));
    // A hung bridge ignores stdin EOF: the ladder goes straight to SIGTERM, which kills it.
    CHECK((*hung)["error"].value("signal", "") == "SIGTERM");
    CHECK(eventually_gone(pid1));

    // `hb` of silence after the answered ping, then three pings that each go unanswered for `hb`:
    // 4 periods, no sooner; each step may start up to one supervisor tick (hb / 4) late.
    const double hung_after = stuck_ms - answered_ms;
    MESSAGE("heartbeat " << hb_ms << " ms: ping answered by " << answered_ms << " ms, hung declared "
                         << hung_after << " ms later");
    CHECK(hung_after >= 4 * hb_ms - 100);
    // The upper bound scales with a baseline from this run: how late the machine ran the steps up
    // to the answered ping (start-up, the hello, `hb`, the ping), beyond `hb` itself. Declaring
    // the hang takes four more such steps, so a busy machine may be that much later, and no more.
    const double late_ms = std::max(0.0, answered_ms - hb_ms);
    CHECK(hung_after < 5 * hb_ms + 500 + 4 * late_ms);

    auto ready2 = wait_state(*bridge.events(), "ready", 2, Ms(5000));
    REQUIRE(ready2.has_value());
    CHECK(ready2->value("pid", -1) != pid1);
    CHECK(bridge.call("hello", {{"x", 2}}, Deadline::after(5s)).ok());
    CHECK(bridge.status().generation == 2);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("hangs after answering one ping, heartbeat 200 ms: declared hung, killed, restarted") {
  hang_case(200ms, false);
}

TEST_CASE("hangs after answering one ping with a -32601 error, heartbeat 100 ms: an error arms it too") {
  hang_case(100ms, true);
}

TEST_CASE("hangs after answering one ping, heartbeat 1 s: declared hung, killed, restarted") {
  hang_case(1s, false);
}

TEST_CASE("a bridge that never answers pings is never declared hung") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("ignore_pings");
    opt.heartbeat = 100ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    REQUIRE(bridge.call("hello", json::object(), Deadline::after(5s)).ok());
    // Ten unanswered pings: more than three times the three misses that would mean "hung".
    auto t0 = std::chrono::steady_clock::now();
    // (Stop early if it was restarted: then the new generation's counters start again from 0.)
    test::eventually(
        [&] {
          auto s = bridge.status();
          return s.counters.frames_out >= 11 || s.generation != 1 || s.state != State::ready;
        },
        Ms(10000));
    MESSAGE("10 unanswered pings in " << ms_since(t0) << " ms");
    auto st = bridge.status();
    CHECK(st.counters.frames_out >= 11);
    CHECK(st.state == State::ready);
    CHECK(st.generation == 1);
    CHECK(st.counters.frames_in == 1);  // only the answer to "hello"
    for (auto& ev : bridge.events()->drain()) {
      CHECK(ev.kind == rpc::Event::Kind::status);
      CHECK(ev.message.value("state", "") == "ready");
    }
    CHECK(bridge.call("still-there", {{"y", 1}}, Deadline::after(5s)).ok());
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a healthy idle bridge that answers pings is left alone") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("echo");
    opt.heartbeat = 100ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    REQUIRE(test::eventually([&] { return bridge.status().counters.frames_in >= 10; }, Ms(10000)));
    auto st = bridge.status();
    CHECK(st.state == State::ready);
    CHECK(st.generation == 1);
    CHECK(st.counters.unknown_responses == 0);  // every ping answer matched a pending ping
    for (auto& ev : bridge.events()->drain()) CHECK(ev.message.value("state", "") == "ready");
  }
  CHECK_NO_LEAKS(guard);
}

// Backpressure is not a hang: when our consumer is slow, the dispatcher stops reading the bridge's
// stdout on purpose, so the bridge (blocked writing) cannot answer pings. It has sent plenty; it
// must not be killed for our slowness.
TEST_CASE("a bridge blocked by backpressure from a slow consumer is not declared hung") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("notification_flood");  // answers "$/ping" too (n = 0: just the response)
    opt.heartbeat = 100ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    // The first ping is answered: the heartbeat is armed.
    REQUIRE(test::eventually([&] { return bridge.status().counters.frames_in >= 1; }, Ms(5000)));
    auto id = bridge.call_queued("flood", {{"n", 200000}}, nullptr);
    REQUIRE(test::eventually([&] { return q.size() >= q.capacity(); }, Ms(5000)));
    // The consumer is busy elsewhere for 10 heartbeat periods; 4 periods of silence after an answered
    // ping would mean "hung". This is a window in which nothing must happen (the scenario is a slow
    // consumer, not a synchronization), observed with a deadline like any other condition.
    bool killed = test::eventually([&] { return bridge.status().state != State::ready; }, Ms(1000));
    CHECK_FALSE(killed);
    CHECK(bridge.status().generation == 1);
    // Now consume: every notification and the response arrive, from generation 1.
    long ticks = 0;
    bool got_response = false, hung = false;
    auto deadline = Deadline::after(30s);
    while (!got_response) {
      auto ev = q.pop(deadline);
      if (!ev) break;
      if (ev->kind == rpc::Event::Kind::notification && ev->message.value("method", "") == "tick") ++ticks;
      if (ev->kind == rpc::Event::Kind::status && is_hung_event(ev->message)) hung = true;
      if (ev->kind == rpc::Event::Kind::response) {
        got_response = true;
        CHECK(ev->call_id == id);
        CHECK_MESSAGE(ev->reply.ok(), rpc::dump(ev->reply.value));
      }
    }
    for (auto& ev : q.drain())
      if (ev.kind == rpc::Event::Kind::status && is_hung_event(ev.message)) hung = true;
    CHECK_FALSE(hung);
    CHECK(got_response);
    CHECK(ticks == 200000);
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
