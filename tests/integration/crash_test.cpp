// Bridges that die: killed in the middle of a request, failing at start-up every time, or not
// startable at all. Every waiter must hear about the death at once, with the cause and the stderr
// tail, and the restart budget must bound the retries.
#include <doctest/doctest.h>

#include <thread>

#include "integration.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Reply;
using supervisor::Bridge;
using supervisor::State;

// The deadline of calls that must fail at once. "At once" is asserted as an ordering, not a speed
// (a busy machine may be slow, but not by seconds): the call returns `closed`, not `timeout`, long
// before its deadline, so it waited neither for the deadline nor for anything of that size.
constexpr auto kPatience = 10s;
constexpr double kPatienceMs = std::chrono::duration<double, std::milli>(kPatience).count();

TEST_CASE("killed mid-request: every caller fails at once with bridge_exited, the signal and the stderr tail") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("crash_mid_request");
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    const pid_t pid = bridge.status().pid;

    // Five callers wait at once; the first request to arrive makes the bridge kill itself.
    constexpr int kCallers = 5;
    std::vector<Reply> replies(kCallers);
    std::vector<double> took(kCallers);
    std::vector<std::thread> callers;
    for (int i = 0; i < kCallers; ++i)
      callers.emplace_back([&, i] {
        auto t0 = std::chrono::steady_clock::now();
        replies[static_cast<std::size_t>(i)] = bridge.call("work", {{"i", i}}, Deadline::after(kPatience));
        took[static_cast<std::size_t>(i)] = ms_since(t0);
      });
    for (auto& t : callers) t.join();

    for (int i = 0; i < kCallers; ++i) {
      CAPTURE(i);
      const Reply& r = replies[static_cast<std::size_t>(i)];
      CHECK(r.status == Reply::Status::closed);
      REQUIRE(r.value.is_object());
      CHECK(r.value.value("code", "") == "bridge_exited");
      CHECK(r.value.value("signal", "") == "SIGKILL");
      CHECK_FALSE(r.value.contains("exitStatus"));
      CHECK(contains(r.value.value("stderrTail", ""), "about to crash: boom"));
      CHECK(r.value.value("generation", 0) == 1);
      CHECK(contains(r.value.value("message", ""), "SIGKILL"));
      // The crash follows the first request within microseconds: the call's duration bounds the
      // time from the crash to the failed reply, which comes long before the call's deadline.
      CHECK(took[static_cast<std::size_t>(i)] < kPatienceMs / 2);
    }
    MESSAGE("slowest caller failed after " << *std::max_element(took.begin(), took.end()) << " ms");

    auto exited = wait_state(*bridge.events(), "exited", 1);
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("signal", "") == "SIGKILL");
    CHECK(eventually_gone(pid));

    // Dead and not restarted: a later call fails at once with the same cause.
    auto t0 = std::chrono::steady_clock::now();
    Reply later = bridge.call("work", json::object(), Deadline::after(kPatience));
    CHECK(ms_since(t0) < kPatienceMs / 2);
    CHECK(later.status == Reply::Status::closed);
    CHECK(later.value.value("code", "") == "bridge_exited");
    CHECK(contains(later.value.value("stderrTail", ""), "about to crash: boom"));
    CHECK(bridge.status().state == State::exited);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("crashes at start-up every time: 3 restarts (4 spawns), then failed with restart_limit naming the stderr") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string count_file = dir.file("spawns");
  {
    auto opt = fake_bridge("crash_at_startup");
    opt.extra_env = {"FAKE_COUNT_FILE=" + count_file};
    opt.restart.max_restarts = 3;
    opt.restart.window = 60s;
    opt.restart.base_delay = 10ms;
    Bridge bridge(opt);
    auto t0 = std::chrono::steady_clock::now();
    bridge.start();  // the first generation may already have died when start() looks: either is fine

    std::vector<rpc::Event> before;
    auto failed = wait_status(
        *bridge.events(), [](const json& m) { return m.value("state", "") == "failed"; }, Ms(10000), &before);
    REQUIRE(failed.has_value());
    MESSAGE("gave up after " << ms_since(t0) << " ms");

    // Exactly 4 spawns, 3 of them restarts, with the backoff doubling from 10 ms.
    CHECK(count_lines(count_file) == 4);
    std::vector<long> delays;
    int readies = 0;
    for (auto& ev : before) {
      if (ev.kind != rpc::Event::Kind::status) continue;
      if (ev.message.value("state", "") == "backoff") delays.push_back(ev.message.value("delayMs", -1L));
      if (ev.message.value("state", "") == "ready") ++readies;
    }
    CHECK(delays == std::vector<long>{10, 20, 40});
    CHECK(readies == 4);
    auto st = bridge.status();
    CHECK(st.state == State::failed);
    CHECK(st.generation == 4);
    CHECK(st.restarts_total == 3);
    CHECK(st.pid == -1);

    // The failed event: message and error name the count, the cause and the stderr's last line.
    const std::string message = failed->value("message", "");
    CHECK(contains(message, "after 3 restarts"));
    CHECK(contains(message, "status 3"));
    CHECK(contains(message, "fatal: config missing"));
    REQUIRE(failed->contains("error"));
    const json& err = (*failed)["error"];
    CHECK(err.value("code", "") == "restart_limit");
    CHECK(contains(err.value("message", ""), "fatal: config missing"));
    CHECK(err.value("exitStatus", -1) == 3);
    CHECK(err.value("generation", 0) == 4);

    // A call now fails at once with the same error.
    auto c0 = std::chrono::steady_clock::now();
    Reply r = bridge.call("work", json::object(), Deadline::after(kPatience));
    CHECK(ms_since(c0) < kPatienceMs / 2);
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("code", "") == "restart_limit");
    CHECK(contains(r.value.value("message", ""), "fatal: config missing"));
    CHECK(contains(r.value.value("stderrTail", ""), "fatal: config missing"));
    CHECK(bridge.status().state == State::failed);  // and the call did not start anything

    // A queued call fails through the event queue, not silently.
    std::uint64_t gen = 99;
    auto id = bridge.call_queued("work", json::object(), &gen);
    CHECK(gen == 0);
    auto ev = bridge.events()->pop(Deadline::after(1s));
    REQUIRE(ev.has_value());
    CHECK(ev->kind == rpc::Event::Kind::response);
    CHECK(ev->call_id == id);
    CHECK(ev->reply.value.value("code", "") == "restart_limit");
  }
  CHECK(count_lines(count_file) == 4);  // and nothing was spawned while stopping
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge that cannot be spawned: start() says why, the state is failed, nothing leaks") {
  test::LeakGuard guard;
  {
    supervisor::BridgeOptions opt;
    opt.argv = {"/nonexistent/tether-no-such-bridge"};
    Bridge bridge(opt);
    auto err = bridge.start();
    REQUIRE(err.has_value());
    CHECK(err->reason == supervisor::ExitReason::spawn_failed);
    CHECK(contains(supervisor::describe(*err), "no-such-bridge"));
    CHECK(bridge.status().state == State::failed);
    Reply r = bridge.call("x", json::object(), Deadline::after(1s));
    CHECK(r.status == Reply::Status::closed);
    CHECK(contains(r.value.value("message", ""), "cannot start the bridge"));
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge that closes its stdin (EPIPE): the caller fails at once, the process is stopped") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("closes_stdin");
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    const pid_t pid = bridge.status().pid;
    REQUIRE(test::eventually([&] { return contains(bridge.status().stderr_tail, "closed my stdin"); }));
    Reply r = bridge.call("work", json::object(), Deadline::after(kPatience));
    // Waiters are failed before the stop ladder runs (250 ms to exit by itself, then the ladder:
    // stdin closed, `grace`, SIGTERM): the bridge still runs when the caller has its answer.
    CHECK(test::process_exists(pid));
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("code", "") == "bridge_exited");
    CHECK(contains(r.value.value("message", ""), "stopped reading its stdin"));
    auto exited = wait_state(*bridge.events(), "exited", 1);
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("signal", "") == "SIGTERM");
    CHECK(eventually_gone(pid));
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge that closes its stdout but keeps running: the caller fails at once, the process is stopped") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("closes_stdout");
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    const pid_t pid = bridge.status().pid;
    Reply r = bridge.call("work", json::object(), Deadline::after(kPatience));
    CHECK(test::process_exists(pid));  // failed before the stop ladder, as above
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("code", "") == "bridge_exited");
    CHECK(contains(r.value.value("message", ""), "closed its stdout"));
    auto exited = wait_state(*bridge.events(), "exited", 1);
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("signal", "") == "SIGTERM");
    CHECK(contains((*exited)["error"].value("stderrTail", ""), "closing my stdout"));
    CHECK(eventually_gone(pid));
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
