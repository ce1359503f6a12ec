// What a bridge writes, in bulk and in bad shape: a stderr flood, an oversized line and garbage
// before a valid response, a million notifications to a slow consumer, and the wire order of
// queued responses and the notifications before them; a bridge that sends requests but never
// reads its stdin.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>

#include <cstdio>
#include <future>

#include "integration.h"
#include "rpc/connection.h"
#include "support/sanitizers.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Event;
using rpc::Reply;
using supervisor::Bridge;

// The stderr_flood fake writes 100 writes of 1 MiB of 'x' with '\n' at every offset % 128 == 127,
// then 200 lines "trailer NNNN".
constexpr std::size_t kFloodChunk = std::size_t{1} << 20;
constexpr std::size_t kFloodFiller = 100 * kFloodChunk;

std::string flood_trailer() {
  std::string t;
  for (int i = 0; i < 200; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "trailer %04d\n", i);
    t += buf;
  }
  return t;
}

std::string flood_expected_tail(std::size_t n) {
  std::string trailer = flood_trailer();
  std::string tail;
  for (std::size_t off = kFloodChunk - (n - trailer.size()); off < kFloodChunk; ++off)
    tail.push_back(off % 128 == 127 ? '\n' : 'x');
  return tail + trailer;
}

TEST_CASE("100 MiB of stderr while answering: every call answered, no stall, the tail is the last 4 KiB") {
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("stderr_flood"));
    REQUIRE_FALSE(bridge.start().has_value());
    const std::size_t total = kFloodFiller + flood_trailer().size();

    // The first call starts the flood; the fake answers the others between its 1 MiB writes, and
    // only gets there if we keep draining its stderr.
    auto t0 = std::chrono::steady_clock::now();
    int answered_mid_flood = 0;
    constexpr auto kPatience = 10s;
    for (int i = 0; i < 100; ++i) {
      CAPTURE(i);
      Reply r = bridge.call("work", {{"i", i}}, Deadline::after(kPatience));
      REQUIRE(r.status == Reply::Status::result);
      auto flooded = r.value.value("flooded", std::size_t{0});
      if (flooded > 0 && flooded < kFloodFiller) ++answered_mid_flood;
    }
    // No stall: a stalled drain would hold a call to its deadline; all 100 together take less than
    // one call's deadline (an ordering, not a speed that a busy machine could miss).
    const double calls_ms = ms_since(t0);
    CHECK(calls_ms < std::chrono::duration<double, std::milli>(kPatience).count());

    REQUIRE(test::eventually([&] { return bridge.status().counters.stderr_bytes == total; }, Ms(10000)));
    const double flood_ms = ms_since(t0);
    auto st = bridge.status();
    CHECK(st.counters.stderr_bytes == total);
    CHECK(st.stderr_tail.size() == 4096);
    CHECK(st.stderr_tail == flood_expected_tail(4096));
    CHECK(st.generation == 1);
    MESSAGE("100 calls in " << calls_ms << " ms, " << answered_mid_flood << " of them answered mid-flood; "
                            << total << " stderr bytes drained after " << flood_ms << " ms");
  }
  CHECK_NO_LEAKS(guard);
}

// Sanitizers keep shadow memory (and ASan a quarantine of freed blocks) that counts in RSS:
// bounds on growth are scaled there, still far below what holding a 70 MiB line whole would cost
// at the larger scale.
#if TETHER_TEST_TSAN
constexpr long kRssScale = 8;
#elif TETHER_TEST_ASAN
// 5: since the dispatcher hands a request over as its line and the consumer parses it (issue 17),
// each request is one more allocation through ASan's quarantine; the outbound-backlog case read
// +97 MiB against the 96 of a scale of 4, and 24 MiB with no sanitizer, as before.
constexpr long kRssScale = 5;
#else
constexpr long kRssScale = 1;
#endif

void big_line_case(std::size_t max_line, long rss_bound_kib) {
  rss_bound_kib *= kRssScale;
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("big_line_then_garbage");
    opt.max_line = max_line;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    const long rss0 = rss_kib();
    auto t0 = std::chrono::steady_clock::now();
    json params = {{"answer", 42}, {"text", "after the storm"}};
    Reply r = bridge.call("work", params, Deadline::after(30s));
    const double ms = ms_since(t0);
    REQUIRE(r.status == Reply::Status::result);
    CHECK(r.value == params);
    // The framer's buffer is still alive here: its size shows what was held of the huge line.
    const long grew = rss_kib() - rss0;

    // Counters are published by the dispatcher right after the response was routed.
    auto expected = [](const rpc::Counters& c) {
      return c.oversize_lines == 1 && c.invalid_json == 500 && c.not_jsonrpc == 250 && c.unknown_responses == 250;
    };
    test::eventually([&] { return expected(bridge.status().counters); }, Ms(2000));
    auto c = bridge.status().counters;
    CHECK(c.oversize_lines == 1);
    CHECK(c.invalid_json == 500);      // 250 not JSON + 250 invalid UTF-8
    CHECK(c.not_jsonrpc == 250);
    CHECK(c.unknown_responses == 250);
    CHECK(c.frames_in == 1001);        // the garbage and the response; the huge line never was a frame
    MESSAGE("max_line " << (max_line >> 20) << " MiB: answered after " << ms << " ms, RSS grew " << grew / 1024 << " MiB");
    CHECK(grew < rss_bound_kib);

    // The stream goes on.
    Reply again = bridge.call("ping-again", {{"n", 2}}, Deadline::after(30s));
    CHECK(again.ok());
    CHECK(bridge.status().generation == 1);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a 70 MiB line and 1,000 garbage lines before a valid response: delivered, each bad line counted") {
  // Default max_line (64 MiB): the oversized line is held up to the cap, then dropped.
  big_line_case(std::size_t{64} << 20, 200 * 1024);
}

TEST_CASE("a 70 MiB line with max_line 1 MiB is never buffered whole") {
  big_line_case(std::size_t{1} << 20, 32 * 1024);
}

TEST_CASE("1,000,000 notifications to a slow consumer: none lost, in order, memory bounded") {
  constexpr long kN = 1000000;
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("notification_flood"));
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    REQUIRE(wait_state(q, "ready", 1).has_value());
    // Earlier tests' freed memory would otherwise stay resident and hide growth from this one.
    ::malloc_trim(0);
    const long rss0 = rss_kib();
    long rss_peak = rss0;
    test::eventually([] { return thread_voluntary_switches("tether-disp1") >= 0; });
    const long switches0 = thread_voluntary_switches("tether-disp1");

    auto t0 = std::chrono::steady_clock::now();
    std::uint64_t gen = 0;
    auto id = bridge.call_queued("flood", {{"n", kN}}, &gen);
    CHECK(gen == 1);
    // Let the queue fill before consuming at all: backpressure has certainly engaged once.
    REQUIRE(test::eventually([&] { return q.size() >= q.capacity(); }, Ms(10000)));

    long next = 0;
    bool order_ok = true, kinds_ok = true, got_response = false;
    std::string first_problem;
    std::size_t work = 0;
    auto deadline = Deadline::after(90s);
    while (!got_response) {
      auto ev = q.pop(deadline);
      if (!ev) {
        first_problem = "timed out at seq " + std::to_string(next);
        break;
      }
      if (ev->kind == Event::Kind::notification) {
        // Some work per event, as a consumer that renders each one would do: enough to make it
        // clearly slower than the dispatcher, so without backpressure the queue would grow.
        for (int k = 0; k < 6; ++k) work += rpc::dump(ev->message).size();
        long seq = ev->message["params"].value("seq", -1L);
        if (seq != next && order_ok) {
          order_ok = false;
          first_problem = "expected seq " + std::to_string(next) + ", got " + std::to_string(seq);
        }
        next = seq + 1;
        if (next % 8192 == 0) rss_peak = std::max(rss_peak, rss_kib());
      } else if (ev->kind == Event::Kind::response) {
        got_response = true;
        CHECK(ev->call_id == id);
        CHECK(ev->generation == 1);
        CHECK(ev->reply.ok());
        CHECK(ev->reply.value.value("sent", 0L) == kN);
      } else {
        kinds_ok = false;
        first_problem = "unexpected event " + rpc::dump(ev->message);
      }
    }
    const double ms = ms_since(t0);
    const long switches = thread_voluntary_switches("tether-disp1") - switches0;
    CHECK_MESSAGE(order_ok, first_problem);
    CHECK_MESSAGE(kinds_ok, first_problem);
    CHECK_MESSAGE(got_response, first_problem);
    CHECK(next == kN);
    CHECK(q.high_water() >= q.capacity());       // the queue did fill: backpressure was exercised
    CHECK(q.high_water() <= q.capacity() + 8);   // and never grew past its capacity
    CHECK(rss_peak - rss0 < 100 * 1024 * kRssScale);
    CHECK(bridge.status().counters.frames_in == static_cast<std::uint64_t>(kN) + 1);
    MESSAGE(kN << " notifications in " << ms << " ms; queue high water " << q.high_water() << " of "
               << q.capacity() << "; RSS +" << (rss_peak - rss0) / 1024 << " MiB; dispatcher wake-ups "
               << switches << " (" << work << " bytes rendered)");
  }
  CHECK_NO_LEAKS(guard);
}

// PollableQueue: space_fd() is "made readable when a full queue drains below half", so that a
// producer held back by a slow consumer resumes once per half-queue of room, not once per event
// (DESIGN §4: a flood costs one wake-up per batch, not one per line).
TEST_CASE("backpressure wakes the dispatcher about once per half-queue, not once per event") {
  constexpr long kN = 200000;
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("notification_flood"));
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    REQUIRE(wait_state(q, "ready", 1).has_value());
    // The dispatcher thread is named "tether-disp" + generation (Bridge::run); it may start just
    // after the "ready" event.
    REQUIRE(test::eventually([] { return thread_voluntary_switches("tether-disp1") >= 0; }));
    const long switches0 = thread_voluntary_switches("tether-disp1");
    bridge.call_queued("flood", {{"n", kN}}, nullptr);
    REQUIRE(test::eventually([&] { return q.size() >= q.capacity(); }, Ms(10000)));
    long next = 0;
    std::size_t work = 0;
    auto deadline = Deadline::after(60s);
    for (;;) {
      auto ev = q.pop(deadline);
      REQUIRE(ev.has_value());
      if (ev->kind == Event::Kind::response) break;
      if (ev->kind != Event::Kind::notification) continue;
      for (int k = 0; k < 6; ++k) work += rpc::dump(ev->message).size();  // the slow consumer's work
      ++next;
    }
    CHECK(next == kN);
    const long switches = thread_voluntary_switches("tether-disp1") - switches0;
    const long batches = kN / static_cast<long>(q.capacity() / 2);
    MESSAGE(kN << " notifications: the dispatcher blocked " << switches << " times (" << batches
               << " half-queue batches; " << work << " bytes rendered)");
    CHECK(switches < 10 * batches);
  }
  CHECK_NO_LEAKS(guard);
}

// Pops events until `count` notifications and then a response have arrived; checks their order.
void expect_ticks_then_response(rpc::EventQueue& q, long count, std::int64_t id) {
  long next = 0;
  for (;;) {
    auto ev = q.pop(Deadline::after(10s));
    REQUIRE(ev.has_value());
    if (ev->kind == Event::Kind::notification) {
      REQUIRE(ev->message.value("method", "") == "tick");
      REQUIRE(ev->message["params"].value("seq", -1L) == next);
      ++next;
      continue;
    }
    REQUIRE(ev->kind == Event::Kind::response);
    CHECK(next == count);  // the response never overtakes a notification sent before it
    CHECK(ev->call_id == id);
    CHECK(ev->reply.ok());
    CHECK(ev->reply.value.value("sent", -1L) == count);
    return;
  }
}

TEST_CASE("call_queued: the response comes through the event queue after the notifications before it") {
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("notification_flood"));
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    REQUIRE(wait_state(q, "ready", 1).has_value());

    SUBCASE("one at a time, below and above the queue's capacity") {
      for (long n : {0L, 1L, 10L, 1000L, 5000L}) {
        CAPTURE(n);
        std::uint64_t gen = 0;
        auto id = bridge.call_queued("flood", {{"n", n}}, &gen);
        CHECK(gen == 1);
        expect_ticks_then_response(q, n, id);
      }
    }
    SUBCASE("pipelined: two requests in flight, each response after its own notifications") {
      auto a = bridge.call_queued("flood", {{"n", 300}}, nullptr);
      auto b = bridge.call_queued("flood", {{"n", 3000}}, nullptr);
      expect_ticks_then_response(q, 300, a);
      expect_ticks_then_response(q, 3000, b);
    }
    CHECK(q.size() == 0);
  }
  CHECK_NO_LEAKS(guard);
}


TEST_CASE("requests from a bridge that never reads its stdin: reading stops past the outbound limit, memory stays bounded, its death ends every waiter") {
  // The fake sends 50,000 requests whose answers echo a 1 KiB id (about 50 MiB owed to it). We
  // answer each at once, as a session answers a method it does not offer. Unbounded, all of them
  // would come through and wait in our memory; bounded, tether stops reading the bridge once
  // kOutboundLimit bytes wait for it, and only what was already in the event queue follows.
  constexpr std::size_t kTotal = 50000;
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("requests_never_reads", {std::to_string(kTotal)});
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    const long rss0 = rss_kib();
    long rss_peak = rss0;
    std::size_t answered = 0;
    const auto t0 = std::chrono::steady_clock::now();
    bool stalled = false;
    while (answered < kTotal && ms_since(t0) < 30000) {
      for (auto& ev : q.drain()) {
        if (ev.kind != Event::Kind::request) continue;
        bridge.respond_error(ev.generation, ev.message["id"], rpc::kMethodNotFound, "Method not found");
        if (++answered % 512 == 0) rss_peak = std::max(rss_peak, rss_kib());
      }
      // Stalled, and what was queued before is answered: nothing more can come.
      if (bridge.status().counters.outbound_stalls > 0 && q.size() == 0) {
        stalled = true;
        break;
      }
      pollfd p{q.fd(), POLLIN, 0};
      ::poll(&p, 1, 20);  // not a synchronization: the loop re-checks its condition either way
    }
    rss_peak = std::max(rss_peak, rss_kib());
    auto c = bridge.status().counters;
    MESSAGE("answered " << answered << " of " << kTotal << " requests; outbound backlog " << c.outbound_backlog / 1024
                        << " KiB; RSS +" << (rss_peak - rss0) / 1024 << " MiB");
    CHECK(stalled);
    CHECK(answered < kTotal);
    CHECK(c.outbound_backlog > rpc::kOutboundLimit);
    // The limit, the event queue's worth of answers behind it (1 KiB each), allocator slack.
    CHECK(rss_peak - rss0 < 24 * 1024 * kRssScale);

    // A call made now waits behind the backlog; the bridge's death ends it.
    const auto backlog = c.outbound_backlog;
    auto waiting = std::async(std::launch::async, [&] { return bridge.call("work", json::object(), Deadline::after(60s)); });
    REQUIRE(test::eventually([&] { return bridge.status().counters.outbound_backlog > backlog; }, Ms(10000)));
    const pid_t pid = bridge.status().pid;
    REQUIRE(pid > 0);
    REQUIRE(::kill(pid, SIGKILL) == 0);
    REQUIRE(waiting.wait_for(10s) == std::future_status::ready);
    Reply r = waiting.get();
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("code", "") == "bridge_exited");
  }
  CHECK_NO_LEAKS(guard);
}

// A peer with no exit fd whose stdout cannot be waited on (a regular file: epoll refuses it, poll()
// calls it always readable) stalls on its stdin: its stdout is then watched for a hang-up only,
// which a file never reports. The dispatcher must sleep, as poll() did, not count the file as
// ready for nothing and spin. Its stderr, a regular file too, is read to its end and let go.
TEST_CASE("a stalled peer whose stdout and stderr are regular files: stderr is read, and the dispatcher sleeps, it does not spin") {
  test::LeakGuard guard;
  {
    ScratchDir dir;
    const std::string path = dir.file("out.jsonl");
    {
      std::FILE* f = std::fopen(path.c_str(), "w");
      REQUIRE(f != nullptr);
      for (int i = 0; i < 16; ++i) std::fprintf(f, "{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"i\":%d}}\n", i);
      std::fclose(f);
      f = std::fopen(dir.file("err.txt").c_str(), "w");
      REQUIRE(f != nullptr);
      std::fputs("the peer's last words\n", f);
      std::fclose(f);
    }
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC | O_NONBLOCK) == 0);
    base::UniqueFd unread(p[0]);  // nobody reads what we write to the peer
    rpc::ConnectionFds fds;
    fds.stdin_w.reset(p[1]);
    fds.stdout_r.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fds.stdout_r.valid());
    fds.stderr_r.reset(::open(dir.file("err.txt").c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fds.stderr_r.valid());
    rpc::ConnectionOptions copt;
    copt.events = std::make_shared<rpc::EventQueue>(4);  // full after four of the file's lines
    copt.thread_name = "tether-disp-file";
    rpc::Connection conn(std::move(fds), std::move(copt));
    conn.start();

    const std::string big(256 << 10, 'x');
    for (std::size_t sent = 0; sent <= rpc::kOutboundLimit + (1 << 20); sent += big.size())
      conn.notify("fill", {{"text", big}});
    REQUIRE(test::eventually([&] { return conn.counters().outbound_stalls >= 1; }));

    const double cpu0 = process_cpu_ms();
    const auto t0 = std::chrono::steady_clock::now();
    CHECK_FALSE(conn.wait_exited(Deadline::after(300ms)));
    const double wall = ms_since(t0), cpu = process_cpu_ms() - cpu0;
    CHECK_MESSAGE(cpu < wall / 3, "the process used " << cpu << " ms of CPU in " << wall << " ms");
    CHECK(conn.death() == rpc::DeathCause::none);
    CHECK(contains(conn.stderr_tail(), "the peer's last words"));
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
