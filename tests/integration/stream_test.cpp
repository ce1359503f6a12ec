// What a bridge writes, in bulk and in bad shape: a stderr flood, an oversized line and garbage
// before a valid response, a million notifications to a slow consumer, and the wire order of
// queued responses and the notifications before them; a bridge that sends requests but never
// reads its stdin. And what we write to a bridge that reads slowly: from several threads at once
// (the write-through and the dispatcher's queue taking turns), a line bigger than the pipe, and
// closing its stdin (or a socket's sending side) while lines are being written.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <future>
#include <latch>
#include <sstream>
#include <thread>

#include "integration.h"
#include "proc/child.h"
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

// ---- What we write to a bridge that reads slowly ----
//
// A caller writes its line to the bridge's stdin itself when nothing waits before it (the
// write-through, rpc/connection.cpp), else queues it for the dispatcher; a full pipe (EAGAIN, or a
// line written in part) hands the rest over. These tests drive an rpc::Connection of their own
// (not a Bridge: they need several threads writing and close_stdin() at a moment of their choice)
// against the slow_reader fake, whose stdin pipe is one page: every line longer than that goes out
// in parts. Each thread waits for a round trip every third line, so that the dispatcher catches
// up now and then and the callers contend for the write-through, not only for the queue.

// The params of a test thread's line: its sender `t`, its index `i`, a pad of `n` bytes of one
// letter.
json slow_params(int t, long i, std::size_t n) {
  return {{"t", t}, {"i", i}, {"pad", std::string(n, static_cast<char>('a' + (t * 7 + i) % 26))}};
}

// Pad sizes: mostly small lines, each 4th longer than the pipe.
std::size_t slow_pad(int t, long i) {
  return i % 4 == 3 ? 4096 + static_cast<std::size_t>((i * 131 + t * 977) % 6000)
                    : 20 + static_cast<std::size_t>((i * 37 + t * 101) % 400);
}

// Thread t's line i: a request every third line (call(), which waits for the answer: false when
// there was none), else a notification.
bool send_slow_line(rpc::Connection& conn, int t, long i) {
  if (i % 3 != 2) {
    conn.notify("n", slow_params(t, i, slow_pad(t, i)));
    return true;
  }
  return conn.call("r", slow_params(t, i, slow_pad(t, i)), Deadline::after(10s)).ok();
}

// What a test reads of the connection's end.
rpc::Reply slow_gone() {
  rpc::Reply r;
  r.status = rpc::Reply::Status::closed;
  return r;
}

// A slow_reader fake and our own connection to it.
class SlowReader {
 public:
  // `pause_us`: the fake's pause after each 1 KiB read (0: it reads as fast as it can).
  explicit SlowReader(long pause_us = 20) {
    proc::SpawnOptions spawn;
    spawn.argv = {test::fake("slow_reader"), path_, std::to_string(pause_us)};
    proc::ChildFds fds;
    auto spawned = proc::Child::spawn(spawn, fds);
    REQUIRE(std::holds_alternative<proc::Child>(spawned));
    child_.emplace(std::move(std::get<proc::Child>(spawned)));
    rpc::ConnectionOptions o;
    o.events = events_;
    o.thread_name = "tether-slow";
    conn_ = std::make_unique<rpc::Connection>(
        rpc::ConnectionFds{std::move(fds.stdin_w), std::move(fds.stdout_r), std::move(fds.stderr_r),
                           std::move(fds.pidfd)},
        std::move(o));
    conn_->start();
    // Nothing is written before the fake has shrunk its pipe (which needs the pipe empty).
    auto ev = events_->pop(Deadline::after(10s));
    REQUIRE(ev.has_value());
    REQUIRE(ev->message.value("method", "") == "ready");
    REQUIRE(ev->message["params"].value("pipe", 0) == 4096);
  }

  rpc::Connection& conn() { return *conn_; }

  // Closes the bridge's stdin (unless `close` is false: the test did), waits for the fake to exit
  // at its EOF, ends the calls still waiting (as the supervisor does) and reaps the fake. The
  // bytes it read, as it read them.
  std::string finish(bool close = true) {
    if (close) conn_->close_stdin();
    CHECK(conn_->wait_exited(Deadline::after(30s)));
    conn_->fail_pending(slow_gone());
    auto status = child_->reap();
    CHECK_FALSE(status.signaled);
    CHECK(status.code == 0);
    std::ifstream in(path_, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
  }

 private:
  ScratchDir dir_;
  const std::string path_ = dir_.file("stdin");
  const std::shared_ptr<rpc::EventQueue> events_ = std::make_shared<rpc::EventQueue>(1024);
  std::optional<proc::Child> child_;
  std::unique_ptr<rpc::Connection> conn_;  // destroyed first: its dispatcher ends before the child goes
};

// Checks what the bridge read: whole lines only, each one a line a test thread sent (see
// slow_params) with its pad intact, and each thread's lines in the order sent, none missing
// before the last that arrived and none twice. Returns how many lines of each of `threads`
// arrived; `problem` says what was wrong first.
std::vector<long> read_back(const std::string& bytes, int threads, std::string& problem) {
  std::vector<long> next(static_cast<std::size_t>(threads), 0);
  if (!bytes.empty() && bytes.back() != '\n') problem = "the last line is cut short";
  std::size_t start = 0;
  while (start < bytes.size() && problem.empty()) {
    std::size_t end = bytes.find('\n', start);
    if (end == std::string::npos) break;
    std::string_view line(bytes.data() + start, end - start);
    start = end + 1;
    json msg = json::parse(line, nullptr, false);
    if (msg.is_discarded() || !msg.contains("params")) {
      problem = "a torn line: " + std::string(line.substr(0, 120));
      break;
    }
    const json& p = msg["params"];
    const int t = p.value("t", -1);
    const long i = p.value("i", -1L);
    if (t < 0 || t >= threads) {
      problem = "a line from no thread: " + std::string(line.substr(0, 120));
      break;
    }
    auto& expected = next[static_cast<std::size_t>(t)];
    if (i != expected) {
      problem = "thread " + std::to_string(t) + ": line " + std::to_string(i) + " where " +
                std::to_string(expected) + " was due";
      break;
    }
    const std::string pad = p.value("pad", "");
    if (pad != slow_params(t, i, pad.size())["pad"].get<std::string>()) {
      problem = "thread " + std::to_string(t) + ": line " + std::to_string(i) + " has a damaged pad";
      break;
    }
    ++expected;
  }
  return next;
}

TEST_CASE("eight threads write to a slow reader at once: every line arrives once, whole, each thread's in order") {
  constexpr int kThreads = 8;
  constexpr long kLines = 150;
  test::LeakGuard guard;
  // A reader that keeps up at times (callers write through, in part for the long lines) and one
  // that seldom does (the pipe is full, and most lines wait in the dispatcher's queue). Rounds of
  // the first: each is a few dozen milliseconds of races.
  for (long pause_us : {0L, 0L, 0L, 20L}) {
    CAPTURE(pause_us);
    SlowReader reader(pause_us);
    auto& conn = reader.conn();
    std::latch go(kThreads);
    std::atomic<int> unanswered{0};
    std::vector<std::thread> threads;
    auto t0 = std::chrono::steady_clock::now();
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([&, t] {
        go.arrive_and_wait();
        for (long i = 0; i < kLines; ++i)
          if (!send_slow_line(conn, t, i)) ++unanswered;
      });
    for (auto& th : threads) th.join();
    const std::string bytes = reader.finish();
    CHECK(unanswered == 0);
    std::string problem;
    auto got = read_back(bytes, kThreads, problem);
    CHECK_MESSAGE(problem.empty(), problem);
    for (int t = 0; t < kThreads; ++t) CHECK(got[static_cast<std::size_t>(t)] == kLines);
    // Each line counted once, whether a caller wrote it, or the dispatcher, or both in turn.
    auto c = conn.counters();
    CHECK(c.frames_out == static_cast<std::uint64_t>(kThreads * kLines));
    CHECK(c.outbound_backlog == 0);
    MESSAGE((kThreads * kLines) << " lines (" << bytes.size() / 1024 << " KiB) through a one-page pipe in "
                                << ms_since(t0) << " ms");
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a 1 MiB line written in part, then small lines: the bridge reads them whole and in order") {
  test::LeakGuard guard;
  {
    SlowReader reader(0);
    auto& conn = reader.conn();
    auto t0 = std::chrono::steady_clock::now();
    // Two rounds: a small line (the pipe is empty: written through whole), a line of 1 MiB (written
    // through in part: the rest is the dispatcher's), then small lines queued behind that rest.
    long i = 0;
    for (int round = 0; round < 2; ++round) {
      conn.notify("n", slow_params(0, i++, 10));
      conn.notify("n", slow_params(0, i++, std::size_t{1} << 20));
      for (int k = 0; k < 20; ++k) conn.notify("n", slow_params(0, i++, 10 + static_cast<std::size_t>(k)));
    }
    const std::string bytes = reader.finish();
    std::string problem;
    auto got = read_back(bytes, 1, problem);
    CHECK_MESSAGE(problem.empty(), problem);
    CHECK(got[0] == i);
    CHECK(conn.counters().frames_out == static_cast<std::uint64_t>(i));
    MESSAGE(i << " lines, two of 1 MiB, in " << ms_since(t0) << " ms");
  }
  CHECK_NO_LEAKS(guard);
}

// Threads send lines (send_slow_line) until `closing` has been set for a while; `before[t]`: how
// many of thread t's lines were sent (notify() or call() returned) before `closing` was set, so
// before close_stdin() was called.
struct CloseRace {
  static constexpr int kThreads = 4;
  static constexpr long kMaxLines = 3000;
  static constexpr long kAfter = 30;  // lines each thread still sends once `closing` is set

  std::atomic<bool> closing{false};
  std::latch started{kThreads};  // each thread has sent 20 lines
  std::array<std::atomic<long>, kThreads> before{};
  std::vector<std::thread> threads;

  explicit CloseRace(rpc::Connection& conn) {
    for (int t = 0; t < kThreads; ++t)
      threads.emplace_back([this, &conn, t] {
        long after = 0;
        for (long i = 0; i < kMaxLines && after < kAfter; ++i) {
          // A call whose line was dropped after the close waits until the test ends the calls.
          const bool sent = send_slow_line(conn, t, i);
          if (!closing.load()) {
            CHECK(sent);
            before[static_cast<std::size_t>(t)].store(i + 1);
          } else {
            ++after;
          }
          if (i == 19) started.count_down();
        }
      });
  }
  // Closes the connection's stdin once every thread is under way.
  void close(rpc::Connection& conn) {
    started.wait();
    closing.store(true);
    conn.close_stdin();
  }
  void join() {
    for (auto& th : threads) th.join();
  }
  // What arrived holds all that was sent before the close, whole and in order.
  void check(const std::string& bytes) {
    std::string problem;
    auto got = read_back(bytes, kThreads, problem);
    CHECK_MESSAGE(problem.empty(), problem);
    for (int t = 0; t < kThreads; ++t) {
      CAPTURE(t);
      CHECK(got[static_cast<std::size_t>(t)] >= before[static_cast<std::size_t>(t)].load());
    }
  }
};

TEST_CASE("close_stdin() while threads write: what was sent before it arrives whole and in order, then EOF") {
  test::LeakGuard guard;
  auto t0 = std::chrono::steady_clock::now();
  // A reader that keeps up (the close may meet a caller in its write) and a slow one (the close
  // waits behind queued lines and a line's rest). A close that never comes, or comes before what
  // was sent ahead of it, fails in finish() (the fake exits only at its EOF) or in check().
  int round = 0;
  for (long pause_us : {0L, 0L, 0L, 0L, 0L, 0L, 20L}) {
    ++round;
    CAPTURE(round);
    CAPTURE(pause_us);
    SlowReader reader(pause_us);
    CloseRace race(reader.conn());
    race.close(reader.conn());
    const std::string bytes = reader.finish(false);  // also ends the calls the close left waiting
    race.join();
    race.check(bytes);
  }
  MESSAGE(round << " rounds in " << ms_since(t0) << " ms");
  CHECK_NO_LEAKS(guard);
}

// A peer at the other end of a socket (a `tether serve` server, for a client's connection): it
// reads what we send through a small receive buffer, answers each request as slow_reader does,
// and, at the end of its input (our shutdown(SHUT_WR)), closes its end.
void socket_peer(base::UniqueFd& fd, std::string& bytes) {
  char buf[1024];
  std::size_t start = 0;
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    bytes.append(buf, static_cast<std::size_t>(n));
    for (std::size_t nl; (nl = bytes.find('\n', start)) != std::string::npos; start = nl + 1) {
      json msg = json::parse(std::string_view(bytes).substr(start, nl - start), nullptr, false);
      if (msg.is_discarded() || !msg.contains("id")) continue;
      std::string answer = rpc::dump(json{{"jsonrpc", "2.0"}, {"id", msg["id"]}, {"result", json::object()}}) + "\n";
      if (::send(fd.get(), answer.data(), answer.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(answer.size())) break;
    }
  }
  fd.reset();
}

// A connection's fds over one socket, as a `tether serve` client has them (stdin_w a dup of
// stdout_r); `peer` gets the other end. `buffer`: when not 0, both sides' socket buffers.
rpc::ConnectionFds socket_fds(base::UniqueFd& peer, int buffer = 0) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  base::UniqueFd ours(sv[0]);
  peer = base::UniqueFd(sv[1]);
  REQUIRE(base::set_nonblocking(ours.get()));
  if (buffer > 0) {
    ::setsockopt(ours.get(), SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
    ::setsockopt(peer.get(), SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  }
  rpc::ConnectionFds fds;
  fds.stdout_r = std::move(ours);
  fds.stdin_w = base::UniqueFd(::fcntl(fds.stdout_r.get(), F_DUPFD_CLOEXEC, 0));
  REQUIRE(fds.stdin_w);
  return fds;
}

std::atomic<int> g_recognized{0};

// A recognizer for the test: the lines it knows start with {"jsonrpc":"2.0","method":"known".
bool known_line(std::string_view line) {
  if (!line.starts_with(R"({"jsonrpc":"2.0","method":"known")")) return false;
  g_recognized.fetch_add(1);
  return true;
}

TEST_CASE("a line the recognizer knows goes on as a notification, unscanned, in wire order with the rest") {
  test::LeakGuard guard;
  {
    base::UniqueFd peer;
    rpc::ConnectionOptions o;
    o.events = std::make_shared<rpc::EventQueue>(1024);
    o.thread_name = "tether-known";
    o.generation = 7;
    o.plain_notification = known_line;
    auto events = o.events;
    rpc::Connection conn(socket_fds(peer), std::move(o));
    conn.start();
    g_recognized = 0;
    const std::string known = R"({"jsonrpc":"2.0","method":"known","params":{"n":1}})";
    const std::string lines = R"({"jsonrpc":"2.0","method":"other","params":{"n":2}})" "\n" + known + "\n" +
                              "not json\n" + known + "\n";
    REQUIRE(::send(peer.get(), lines.data(), lines.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(lines.size()));
    std::vector<rpc::Event> got;
    const auto deadline = Deadline::after(10s);
    while (got.size() < 4) {
      auto ev = events->pop(deadline);
      REQUIRE(ev.has_value());
      got.push_back(std::move(*ev));
    }
    CHECK(got[0].message.value("method", "") == "other");
    CHECK(got[1].kind == rpc::Event::Kind::notification);
    CHECK(got[1].generation == 7);
    CHECK(got[1].message.value("method", "") == "known");  // parsed by the consumer, from its line
    CHECK(got[2].kind == rpc::Event::Kind::output);
    CHECK(got[3].message["params"].value("n", 0) == 1);
    CHECK(g_recognized.load() == 2);
    // The counters are published after the events, as the dispatcher gets round to it.
    CHECK(test::eventually([&] { return conn.counters().frames_in == 4; }));
    CHECK(conn.counters().invalid_json == 1);
    peer.reset();
    CHECK(conn.wait_exited(Deadline::after(10s)));
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("on a socket, close_stdin() while threads write: the peer reads what was sent before it, then its end") {
  // A `tether serve` client's connection: one socket (stdin_w a dup of stdout_r), written with
  // send(MSG_NOSIGNAL), ended with shutdown(SHUT_WR), with no exit fd: the peer's end is the end.
  test::LeakGuard guard;
  {
    base::UniqueFd peer;
    rpc::ConnectionOptions o;
    o.events = std::make_shared<rpc::EventQueue>(1024);
    o.thread_name = "tether-sock";
    rpc::Connection conn(socket_fds(peer, 4096), std::move(o));
    conn.start();
    std::string bytes;
    std::thread peer_thread([&] { socket_peer(peer, bytes); });
    CloseRace race(conn);
    race.close(conn);
    const bool ended = conn.wait_exited(Deadline::after(30s));
    CHECK(ended);
    conn.fail_pending(slow_gone());
    race.join();
    if (!ended) ::shutdown(peer.get(), SHUT_RDWR);  // let the peer go: the test fails instead of hanging
    peer_thread.join();
    race.check(bytes);
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

    const auto w = watch_cpu(conn, 300ms);
    CHECK_FALSE(w.exited);
    CHECK_MESSAGE(w.cpu_ms < w.wall_ms / 3, "the process used " << w.cpu_ms << " ms of CPU in " << w.wall_ms << " ms");
    CHECK(conn.death() == rpc::DeathCause::none);
    CHECK(contains(conn.stderr_tail(), "the peer's last words"));
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
