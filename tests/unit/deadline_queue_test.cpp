// Unit tests for base::Deadline (poll timeouts from a deadline, with injected time) and
// base::PollableQueue (bounded FIFO with a pollable readiness fd). No sleeps: expiry is tested
// with deadlines that have already passed, readiness with poll(2) and a zero timeout.
#include "base/clock.h"
#include "base/pollable_queue.h"

#include <poll.h>

#include <doctest/doctest.h>

#include <chrono>
#include <climits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using namespace std::chrono_literals;
using tether::base::Clock;
using tether::base::Deadline;
using tether::base::Duration;
using tether::base::PollableQueue;
using tether::base::TimePoint;

namespace {

const TimePoint t0 = TimePoint{} + 1000h;

// Whether `fd` is readable right now (poll with a zero timeout: no waiting).
bool readable(int fd) {
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, 0);
  REQUIRE(n >= 0);
  return n == 1 && (p.revents & POLLIN);
}

}  // namespace

TEST_SUITE("base::Deadline") {

TEST_CASE("never: poll forever, never expires") {
  Deadline d = Deadline::never();
  CHECK(d.is_never());
  CHECK(d.poll_timeout_ms(t0) == -1);
  CHECK_FALSE(d.expired(t0));
  CHECK_FALSE(d.expired(TimePoint::max()));
  CHECK(d.when() == TimePoint::max());
}

TEST_CASE("poll_timeout_ms rounds up, is 0 at and after the deadline") {
  Deadline d = Deadline::at(t0);
  CHECK_FALSE(d.is_never());
  CHECK(d.when() == t0);
  CHECK(d.poll_timeout_ms(t0 - 1500ms) == 1500);
  CHECK(d.poll_timeout_ms(t0 - 1500us) == 2);
  CHECK(d.poll_timeout_ms(t0 - 1ms) == 1);
  CHECK(d.poll_timeout_ms(t0 - 1ns) == 1);  // never 0 while time is left: poll would spin
  CHECK(d.poll_timeout_ms(t0) == 0);
  CHECK(d.poll_timeout_ms(t0 + 1s) == 0);
}

TEST_CASE("poll_timeout_ms saturates at INT_MAX") {
  Deadline d = Deadline::at(t0 + 1000h);  // 3.6e9 ms
  CHECK(d.poll_timeout_ms(t0) == INT_MAX);
}

TEST_CASE("expired() at and after the deadline only") {
  Deadline d = Deadline::at(t0);
  CHECK_FALSE(d.expired(t0 - 1ns));
  CHECK(d.expired(t0));
  CHECK(d.expired(t0 + 1h));
  CHECK(Deadline::at(Clock::now() - 1s).expired());
  CHECK_FALSE(Deadline::after(1h).expired());
}

TEST_CASE("earliest() of two deadlines") {
  Deadline a = Deadline::at(t0);
  Deadline b = Deadline::at(t0 + 1s);
  CHECK(Deadline::earliest(a, b).when() == t0);
  CHECK(Deadline::earliest(b, a).when() == t0);
  CHECK(Deadline::earliest(Deadline::never(), b).when() == t0 + 1s);
  CHECK(Deadline::earliest(a, Deadline::never()).when() == t0);
  CHECK(Deadline::earliest(Deadline::never(), Deadline::never()).is_never());
}

TEST_CASE("seconds() converts command-line values") {
  CHECK(tether::base::seconds(0.5) == Duration(500ms));
  CHECK(tether::base::seconds(60) == Duration(60s));
  CHECK(tether::base::seconds(0) == Duration(0));
  CHECK(tether::base::seconds(0.001) == Duration(1ms));
}

}  // TEST_SUITE

TEST_SUITE("base::PollableQueue") {

TEST_CASE("capacity and has_room; push beyond capacity still appends") {
  PollableQueue<int> q(3);
  CHECK(q.capacity() == 3);
  CHECK(q.has_room());
  q.push(1);
  q.push(2);
  CHECK(q.has_room());
  q.push(3);
  CHECK_FALSE(q.has_room());
  q.push(4);  // status events must not be lost: no drop
  CHECK(q.size() == 4);
  CHECK_FALSE(q.has_room());
  CHECK(q.high_water() == 4);
  CHECK(q.drain() == std::vector<int>{1, 2, 3, 4});
  CHECK(q.has_room());
}

TEST_CASE("capacity 0 is treated as 1") {
  PollableQueue<int> q(0);
  CHECK(q.capacity() == 1);
  CHECK(q.has_room());
  q.push(1);
  CHECK_FALSE(q.has_room());
}

TEST_CASE("drain returns everything in push order and clears readiness") {
  PollableQueue<std::string> q(100);
  CHECK_FALSE(readable(q.fd()));
  for (int i = 0; i < 50; ++i) q.push("e" + std::to_string(i));
  CHECK(readable(q.fd()));
  auto got = q.drain();
  REQUIRE(got.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(got[static_cast<std::size_t>(i)] == "e" + std::to_string(i));
  CHECK(q.size() == 0);
  CHECK_FALSE(readable(q.fd()));
  CHECK(q.drain().empty());
  q.push("again");
  CHECK(readable(q.fd()));
}

TEST_CASE("pop returns items in order; readiness ends with the last item") {
  PollableQueue<int> q(10);
  q.push(1);
  q.push(2);
  auto a = q.pop(Deadline::at(TimePoint{}));
  REQUIRE(a.has_value());
  CHECK(*a == 1);
  CHECK(readable(q.fd()));  // one still waiting
  auto b = q.pop();
  REQUIRE(b.has_value());
  CHECK(*b == 2);
  CHECK_FALSE(readable(q.fd()));
}

TEST_CASE("pop with an already-expired deadline returns nothing on an empty queue") {
  PollableQueue<int> q(4);
  CHECK_FALSE(q.pop(Deadline::at(Clock::now() - 1s)).has_value());
  CHECK_FALSE(q.pop(Deadline::at(TimePoint{})).has_value());
  q.push(7);
  auto v = q.pop(Deadline::at(Clock::now() - 1s));  // an item waiting is returned even so
  REQUIRE(v.has_value());
  CHECK(*v == 7);
  CHECK_FALSE(q.pop(Deadline::at(Clock::now() - 1s)).has_value());
}

TEST_CASE("draining a full queue makes space_fd readable") {
  PollableQueue<int> q(4);
  for (int i = 0; i < 4; ++i) q.push(i);
  REQUIRE_FALSE(q.has_room());
  q.clear_space();
  CHECK_FALSE(readable(q.space_fd()));
  q.drain();
  CHECK(readable(q.space_fd()));
  q.clear_space();
  CHECK_FALSE(readable(q.space_fd()));
}

TEST_CASE("move-only items") {
  PollableQueue<std::unique_ptr<int>> q(2);
  q.push(std::make_unique<int>(5));
  q.push(std::make_unique<int>(6));
  auto first = q.pop();
  REQUIRE(first.has_value());
  CHECK(**first == 5);
  auto rest = q.drain();
  REQUIRE(rest.size() == 1);
  CHECK(*rest[0] == 6);
}

}  // TEST_SUITE

// recycle(): what a consumer is done with is destroyed by the producer's next push, on the
// producer's thread (issue 17: glibc's malloc is slow when another thread frees), and at most a
// queue's worth is held.
namespace {
struct Tracked {
  std::shared_ptr<std::vector<std::thread::id>> freed_on;
  Tracked() = default;
  explicit Tracked(std::shared_ptr<std::vector<std::thread::id>> f) : freed_on(std::move(f)) {}
  Tracked(Tracked&& o) noexcept = default;
  Tracked& operator=(Tracked&& o) noexcept = default;
  ~Tracked() {
    if (freed_on) freed_on->push_back(std::this_thread::get_id());
  }
};
}  // namespace

TEST_CASE("recycle: the producer's next push destroys what the consumer gave back, on its thread") {
  auto freed = std::make_shared<std::vector<std::thread::id>>();
  tether::base::PollableQueue<Tracked> q(4);
  std::thread consumer([&] {
    std::vector<Tracked> done;
    for (int i = 0; i < 3; ++i) done.emplace_back(freed);
    q.recycle(std::move(done));
    CHECK(freed->empty());  // held, not destroyed here
    std::vector<Tracked> more;
    for (int i = 0; i < 2; ++i) more.emplace_back(freed);
    q.recycle(std::move(more));  // 3 + 2 > capacity 4: left to the caller
    CHECK(more.size() == 2);
  });
  consumer.join();
  CHECK(freed->size() == 2);  // the two the queue refused, destroyed with the consumer's vector
  q.push(Tracked());
  REQUIRE(freed->size() == 5);
  for (std::size_t i = 2; i < 5; ++i) CHECK((*freed)[i] == std::this_thread::get_id());
}
