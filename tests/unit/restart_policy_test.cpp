// Unit tests for base::RestartPolicy with injected time: the budget of restarts in a sliding
// window, and the doubling delay before each.
#include "base/restart_policy.h"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>

using namespace std::chrono_literals;
using tether::base::Duration;
using tether::base::RestartPolicy;
using tether::base::RestartPolicyConfig;
using tether::base::TimePoint;

namespace {

// Any fixed origin will do: the policy never reads a clock.
const TimePoint t0 = TimePoint{} + 1000h;

std::optional<Duration> ms(long long n) { return Duration(std::chrono::milliseconds(n)); }

}  // namespace

TEST_SUITE("base::RestartPolicy") {

TEST_CASE("defaults: 3 restarts in 60 s, 0.5 s doubling, 30 s cap") {
  RestartPolicy p;
  CHECK(p.config().max_restarts == 3);
  CHECK(p.config().window == Duration(60s));
  CHECK(p.config().base_delay == Duration(500ms));
  CHECK(p.config().max_delay == Duration(30s));
}

TEST_CASE("three restarts are allowed, the fourth inside the window is refused") {
  RestartPolicy p;
  CHECK(p.request(t0) == ms(500));
  CHECK(p.request(t0 + 1s) == ms(1000));
  CHECK(p.request(t0 + 2s) == ms(2000));
  CHECK(p.in_window(t0 + 2s) == 3);
  CHECK_FALSE(p.request(t0 + 3s).has_value());
  CHECK_FALSE(p.request(t0 + 59s).has_value());
  CHECK(p.in_window(t0 + 59s) == 3);  // a refusal is not counted
}

TEST_CASE("the window slides: 60 s after the first restart, one more is allowed") {
  RestartPolicy p;
  REQUIRE(p.request(t0));
  REQUIRE(p.request(t0 + 10s));
  REQUIRE(p.request(t0 + 20s));
  CHECK_FALSE(p.request(t0 + 59999ms).has_value());
  CHECK(p.in_window(t0 + 60s) == 2);
  // Two restarts still in the window (t0+10s, t0+20s): the delay is doubled twice.
  CHECK(p.request(t0 + 60s) == ms(2000));
  CHECK_FALSE(p.request(t0 + 65s).has_value());  // t0+10s, t0+20s, t0+60s
  CHECK(p.request(t0 + 70s) == ms(2000));        // t0+10s has left the window
  CHECK_FALSE(p.request(t0 + 71s).has_value());
}

TEST_CASE("restarts that are far apart each get the base delay") {
  RestartPolicy p;
  for (int i = 0; i < 10; ++i) {
    CAPTURE(i);
    CHECK(p.request(t0 + i * 61s) == ms(500));
  }
}

TEST_CASE("the delay doubles per restart in the window and is capped at max_delay") {
  RestartPolicyConfig c;
  c.max_restarts = 8;
  c.window = 600s;
  c.base_delay = 500ms;
  c.max_delay = 3s;
  RestartPolicy p(c);
  CHECK(p.request(t0) == ms(500));
  CHECK(p.request(t0 + 1s) == ms(1000));
  CHECK(p.request(t0 + 2s) == ms(2000));
  CHECK(p.request(t0 + 3s) == ms(3000));
  CHECK(p.request(t0 + 4s) == ms(3000));
  CHECK(p.request(t0 + 5s) == ms(3000));
}

TEST_CASE("the default cap of 30 s holds for a long run of restarts") {
  RestartPolicyConfig c;
  c.max_restarts = 100;
  RestartPolicy p(c);
  Duration last{};
  for (int i = 0; i < 100; ++i) {
    auto d = p.request(t0 + i * 10ms);
    REQUIRE(d.has_value());
    CHECK(*d <= Duration(30s));
    last = *d;
  }
  CHECK(last == Duration(30s));
}

TEST_CASE("a base delay above the cap is capped") {
  RestartPolicyConfig c;
  c.base_delay = 5s;
  c.max_delay = 1s;
  RestartPolicy p(c);
  CHECK(p.request(t0) == ms(1000));
}

TEST_CASE("reset() restores the full budget and the base delay") {
  RestartPolicy p;
  REQUIRE(p.request(t0));
  REQUIRE(p.request(t0 + 1s));
  REQUIRE(p.request(t0 + 2s));
  REQUIRE_FALSE(p.request(t0 + 3s));
  p.reset();
  CHECK(p.in_window(t0 + 3s) == 0);
  CHECK(p.request(t0 + 3s) == ms(500));
  CHECK(p.request(t0 + 4s) == ms(1000));
  CHECK(p.request(t0 + 5s) == ms(2000));
  CHECK_FALSE(p.request(t0 + 6s).has_value());
}

TEST_CASE("max restarts and window are configurable") {
  RestartPolicyConfig c;
  c.max_restarts = 1;
  c.window = 10s;
  RestartPolicy p(c);
  CHECK(p.request(t0) == ms(500));
  CHECK_FALSE(p.request(t0 + 9s).has_value());
  CHECK(p.request(t0 + 10s) == ms(500));  // the window is (now - 10 s, now]
  CHECK_FALSE(p.request(t0 + 19s).has_value());

  RestartPolicyConfig five;
  five.max_restarts = 5;
  five.window = 5s;
  RestartPolicy q(five);
  for (int i = 0; i < 5; ++i) REQUIRE(q.request(t0 + i * 100ms));
  CHECK_FALSE(q.request(t0 + 1s).has_value());
  CHECK(q.in_window(t0 + 5s + 50ms) == 4);
  CHECK(q.request(t0 + 5s + 50ms).has_value());
}

TEST_CASE("max_restarts 0 never allows a restart") {
  RestartPolicyConfig c;
  c.max_restarts = 0;
  RestartPolicy p(c);
  CHECK_FALSE(p.request(t0).has_value());
  CHECK_FALSE(p.request(t0 + 1000h).has_value());
}

}  // TEST_SUITE
