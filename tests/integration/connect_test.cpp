// Connect mode: the Bridge as a client of a `tether serve` socket. A small server in a thread of
// the test stands in for tether serve; it answers, closes, or half-closes connections. Each
// connection is a generation: the server closing it ends the generation with its own sentence,
// a reconnect is a restart under the same policy, and a socket nobody listens on is a failure
// that says how to start a server.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "base/unique_fd.h"
#include "integration.h"
#include "rpc/connection.h"
#include "rpc/message.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using base::Clock;
using base::UniqueFd;
using rpc::Reply;
using supervisor::Bridge;
using supervisor::ExitReason;
using supervisor::State;

// One accepted connection, as the server's handler sees it.
class Peer {
 public:
  Peer(int fd, int stop_fd) : fd_(fd), stop_fd_(stop_fd) {}
  int fd() const { return fd_; }

  // The next line from the client; false at its EOF or when the server is stopping.
  bool read_line(std::string& line) {
    for (;;) {
      auto nl = buf_.find('\n');
      if (nl != std::string::npos) {
        line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return true;
      }
      if (!wait_readable()) return false;
      char chunk[4096];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n <= 0) return false;
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }
  void write_line(const json& msg) {
    std::string line = rpc::dump(msg) + "\n";
    base::write_all(fd_, line);
  }
  // Blocks until the server is stopping (the handler keeps the connection as it is meanwhile).
  void hold() {
    pollfd p{stop_fd_, POLLIN, 0};
    ::poll(&p, 1, -1);
  }

 private:
  bool wait_readable() {
    pollfd p[2] = {{fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
    for (;;) {
      int r = ::poll(p, 2, -1);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && !(p[1].revents & POLLIN);
    }
  }

  int fd_;
  int stop_fd_;
  std::string buf_;
};

// A Unix socket server on `path`, in its own thread: it accepts connections one at a time and
// runs `handler` on each (the connection closes when the handler returns). Destroying it stops the
// handler, closes everything and removes the socket, so later connects find nobody.
class FakeServer {
 public:
  using Handler = std::function<void(Peer&)>;

  FakeServer(std::string path, Handler handler) : path_(std::move(path)), handler_(std::move(handler)) {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    stop_r_.reset(p[0]);
    stop_w_.reset(p[1]);
    listen_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(listen_.valid());
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    REQUIRE(path_.size() < sizeof addr.sun_path);
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    REQUIRE(::bind(listen_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listen_.get(), 8) == 0);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeServer() {
    // The name goes first, as in the real server: a client reconnecting the moment its connection
    // closes must find nobody, not the backlog of a listener that is still open.
    ::unlink(path_.c_str());
    base::write_all(stop_w_.get(), "x");
    thread_.join();
  }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  int accepted() const { return accepted_.load(); }
  int finished() const { return finished_.load(); }

 private:
  void run() {
    for (;;) {
      pollfd p[2] = {{listen_.get(), POLLIN, 0}, {stop_r_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) continue;
      if (p[1].revents & POLLIN) return;
      UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (!conn) continue;
      ++accepted_;
      Peer peer(conn.get(), stop_r_.get());
      handler_(peer);
      conn.reset();
      ++finished_;
    }
  }

  std::string path_;
  Handler handler_;
  UniqueFd listen_, stop_r_, stop_w_;
  std::atomic<int> accepted_{0};
  std::atomic<int> finished_{0};
  std::thread thread_;
};

// Answers every request with {"method":…,"params":…} until the client leaves.
void echo(Peer& peer) {
  std::string line;
  while (peer.read_line(line)) {
    auto msg = json::parse(line, nullptr, false);
    if (!msg.is_object() || !msg.contains("id") || !msg.contains("method")) continue;
    peer.write_line({{"jsonrpc", "2.0"}, {"id", msg["id"]}, {"result", {{"method", msg["method"]}, {"params", msg.value("params", json())}}}});
  }
}

supervisor::BridgeOptions connect_options(const std::string& path) {
  supervisor::BridgeOptions o = fake_bridge("echo");  // the process set-up; argv stays unused
  o.connect_path = path;
  return o;
}

TEST_CASE("no server: start() fails at once, saying that nobody listens and how to start a server") {
  test::LeakGuard guard;
  ScratchDir dir;
  SUBCASE("no socket file") {
    const std::string path = dir.file("none.sock");
    Bridge bridge(connect_options(path));
    auto failed = bridge.start();
    REQUIRE(failed.has_value());
    CHECK(failed->reason == ExitReason::spawn_failed);
    CHECK(failed->connection);
    CHECK(supervisor::describe(*failed) ==
          "no tether server is listening on " + path + " (start one with `tether serve`)");
    auto st = bridge.status();
    CHECK(st.state == State::failed);
    CHECK(st.pid == -1);
    Reply r = bridge.call("x", json::object(), Deadline::after(1s));
    CHECK(r.status == Reply::Status::closed);
    CHECK(contains(r.value.value("message", ""), "no tether server is listening on " + path));
  }
  SUBCASE("a socket file nobody listens on (a server that died)") {
    const std::string path = dir.file("dead.sock");
    {
      UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::memcpy(addr.sun_path, path.data(), path.size());
      REQUIRE(::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    }
    Bridge bridge(connect_options(path));
    auto failed = bridge.start();
    REQUIRE(failed.has_value());
    CHECK(supervisor::describe(*failed) ==
          "no tether server is listening on " + path + " (start one with `tether serve`)");
    ::unlink(path.c_str());
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("no server yet: start() waits out connect_patience, and a stop() meanwhile ends it as a stop") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("later.sock");
  auto o = connect_options(path);
  o.connect_patience = 30s;  // far longer than the test may take
  {
    Bridge bridge(o);
    std::optional<supervisor::BridgeExited> started;
    std::atomic<bool> returned{false};
    std::thread starter([&] {
      started = bridge.start();
      returned = true;
    });
    struct JoinOnExit {  // a failed REQUIRE below must not leave a joinable thread (std::terminate)
      Bridge& b;
      std::thread& t;
      ~JoinOnExit() {
        if (t.joinable()) {
          b.stop();
          t.join();
        }
      }
    } join_on_exit{bridge, starter};
    // Its first generation is trying to connect: no answer either way while the patience lasts.
    REQUIRE(test::eventually([&] { return bridge.status().generation == 1; }));
    CHECK(bridge.status().state == State::starting);
    CHECK_FALSE(returned.load());
    auto t0 = Clock::now();
    bridge.stop();
    starter.join();
    CHECK(Clock::now() - t0 < o.connect_patience / 2);  // long before the patience ends
    // Not taken for a connection: start() says it was stopped.
    REQUIRE(started.has_value());
    CHECK(started->reason == ExitReason::stopped);
    CHECK(started->connection);
  }
  CHECK_NO_LEAKS(guard);
}

// What cli::start_bridge does with its signalfd: start() polls the fd while it waits and asks the
// callback about each wake-up; only a "yes" stops the bridge, without a thread of the caller's.
TEST_CASE("no server yet: start() with an interrupt fd ends as a stop once interrupted() says so") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("later.sock");
  auto o = connect_options(path);
  o.connect_patience = 30s;  // far longer than the test may take
  {
    int p[2];
    REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
    UniqueFd r(p[0]), w(p[1]);
    Bridge bridge(o);
    std::vector<char> asked;  // start()'s thread only, read after start() returned
    std::thread writer([&] {
      // Once the first generation is trying to connect: a byte to ignore, then one to stop on.
      if (test::eventually([&] { return bridge.status().generation == 1; })) (void)!::write(w.get(), "xs", 2);
      else bridge.stop();
    });
    auto t0 = Clock::now();
    auto started = bridge.start(r.get(), [&] {
      char c = 0;
      if (::read(r.get(), &c, 1) != 1) return false;
      asked.push_back(c);
      return c == 's';
    });
    writer.join();
    CHECK(Clock::now() - t0 < 5s);
    CHECK(asked == std::vector<char>{'x', 's'});
    REQUIRE(started.has_value());
    CHECK(started->reason == ExitReason::stopped);
    CHECK(started->connection);
    CHECK(bridge.status().state == State::exited);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("stop() before start() is for good: start() starts nothing and says stopped") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("never.sock");
  {
    FakeServer server(path, echo);
    auto o = connect_options(path);
    o.connect_patience = 30s;
    Bridge bridge(o);
    bridge.stop();  // e.g. a Ctrl-C watcher that was quicker than start()
    auto t0 = Clock::now();
    auto started = bridge.start();
    CHECK(Clock::now() - t0 < o.connect_patience / 2);  // it did not try to connect for a while
    REQUIRE(started.has_value());
    CHECK(started->reason == ExitReason::stopped);
    CHECK(started->connection);
    CHECK(bridge.status().generation == 0);
    CHECK(bridge.status().state == State::exited);  // not left `starting` for good
    CHECK(server.accepted() == 0);  // it never connected, though a server was there
    bridge.stop();                  // still idempotent
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("connected: requests and answers go over the socket; no pid; stop() closes our side") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("echo.sock");
  {
    FakeServer server(path, echo);
    {
      auto o = connect_options(path);
      o.grace = 20s;  // what stop() would wait if the server did not close when we do
      Bridge bridge(o);
      REQUIRE_FALSE(bridge.start().has_value());
      auto st = bridge.status();
      CHECK(st.state == State::ready);
      CHECK(st.pid == -1);
      CHECK(st.generation == 1);

      Reply r = bridge.call("hello", {{"n", 1}}, Deadline::after(5s));
      REQUIRE(r.status == Reply::Status::result);
      CHECK(r.value["method"] == "hello");
      CHECK(r.value["params"]["n"] == 1);

      // A queued call's answer comes through the event queue, as from a process.
      std::uint64_t gen = 0;
      auto id = bridge.call_queued("queued", json::object(), &gen);
      CHECK(gen == 1);
      auto deadline = Deadline::after(5s);
      std::optional<rpc::Event> got;
      while (!got && !deadline.expired()) {
        auto ev = bridge.events()->pop(deadline);
        if (ev && ev->kind == rpc::Event::Kind::response && ev->call_id == id) got = std::move(ev);
      }
      REQUIRE(got.has_value());
      CHECK(got->reply.value["method"] == "queued");

      auto t0 = std::chrono::steady_clock::now();
      bridge.stop();
      // The server reads the end of our stream and closes: no grace period is waited out (an
      // ordering: long before the grace would end).
      CHECK(ms_since(t0) < std::chrono::duration<double, std::milli>(o.grace).count() / 2);
      CHECK(test::eventually([&] { return server.finished() == 1; }));
      auto last = bridge.status().last_exit;
      REQUIRE(last.has_value());
      CHECK(last->reason == ExitReason::stopped);
      CHECK(supervisor::describe(*last) == "tether disconnected from the tether server");
    }
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("the server closes the connection: waiters fail with the new sentence, and tether reconnects") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("flaky.sock");
  {
    // The first connection reads one request and closes without answering; later ones echo.
    std::atomic<int> connections{0};
    FakeServer server(path, [&](Peer& peer) {
      if (connections++ == 0) {
        std::string line;
        peer.read_line(line);
        return;
      }
      echo(peer);
    });
    auto opt = connect_options(path);
    opt.restart.max_restarts = 3;
    opt.restart.base_delay = 10ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());

    Reply r = bridge.call("first", json::object(), Deadline::after(5s));
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("code", "") == "bridge_exited");
    CHECK(r.value.value("message", "") == "the tether server closed the connection");
    CHECK(r.value.value("generation", 0) == 1);

    auto& q = *bridge.events();
    auto exited = wait_state(q, "exited", 1);
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("message", "") == "the tether server closed the connection");
    REQUIRE(wait_state(q, "ready", 2).has_value());
    CHECK(test::eventually([&] { return server.accepted() == 2; }));  // connected once it was queued

    Reply again = bridge.call("second", json::object(), Deadline::after(5s));
    REQUIRE(again.status == Reply::Status::result);
    CHECK(again.value["method"] == "second");
    auto st = bridge.status();
    CHECK(st.generation == 2);
    CHECK(st.restarts_total == 1);
    CHECK(st.pid == -1);
    REQUIRE(st.last_exit.has_value());
    CHECK(st.last_exit->connection);
    bridge.stop();
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("the server goes away for good: reconnects within the budget, then gives up naming the cause") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("gone.sock");
  {
    auto opt = connect_options(path);
    opt.restart.max_restarts = 2;
    opt.restart.window = 60s;
    opt.restart.base_delay = 10ms;
    std::optional<Bridge> bridge;
    std::vector<rpc::Event> before;
    {
      FakeServer server(path, [](Peer& peer) { peer.hold(); });
      bridge.emplace(opt);
      REQUIRE_FALSE(bridge->start().has_value());
      REQUIRE(test::eventually([&] { return server.accepted() == 1; }));
    }  // the server stops: connection closed, socket removed

    auto failed = wait_status(
        *bridge->events(), [](const json& m) { return m.value("state", "") == "failed"; }, Ms(10000), &before);
    REQUIRE(failed.has_value());
    int readies = 0, backoffs = 0;
    for (auto& ev : before) {
      if (ev.kind != rpc::Event::Kind::status) continue;
      readies += ev.message.value("state", "") == "ready";
      backoffs += ev.message.value("state", "") == "backoff";
    }
    CHECK(readies == 1);   // the first connection's: no reconnect succeeded
    CHECK(backoffs == 2);  // two reconnect attempts, both refused
    const std::string message = failed->value("message", "");
    CHECK(contains(message, "tether gave up reconnecting to the tether server after 2 attempts"));
    CHECK(contains(message, "no tether server is listening on " + path));
    CHECK((*failed)["error"].value("code", "") == "restart_limit");

    // A server that is back, and a manual restart (talk's /restart when disconnected): connected.
    FakeServer server(path, echo);
    REQUIRE(restart_and_wait(*bridge));
    Reply r = bridge->call("back", json::object(), Deadline::after(5s));
    REQUIRE(r.status == Reply::Status::result);
    bridge.reset();
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("the server stops reading: our write fails with EPIPE and no SIGPIPE, and the generation ends") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("deaf.sock");
  // SIGPIPE's default action would end this test process if a write raised it.
  struct sigaction dfl{}, old{};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGPIPE, &dfl, &old);
  {
    FakeServer server(path, [](Peer& peer) {
      ::shutdown(peer.fd(), SHUT_RD);  // still connected, writing side open: no EOF for the client
      peer.hold();
    });
    auto opt = connect_options(path);
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    REQUIRE(test::eventually([&] { return server.accepted() == 1; }));
    Reply r = bridge.call("anyone", json::object(), Deadline::after(5s));
    CHECK(r.status == Reply::Status::closed);
    CHECK(r.value.value("message", "") == "the tether server closed the connection");
    REQUIRE(wait_state(*bridge.events(), "exited", 1).has_value());
    auto st = bridge.status();
    REQUIRE(st.last_exit.has_value());
    CHECK(st.last_exit->reason == ExitReason::stdin_closed);
    bridge.stop();
  }
  ::sigaction(SIGPIPE, &old, nullptr);
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a server that stops answering heartbeats: the connection is hung, dropped, and said so") {
  test::LeakGuard guard;
  ScratchDir dir;
  const std::string path = dir.file("mute.sock");
  {
    // Answers the first $/ping (which arms the heartbeat), then reads on and answers nothing.
    FakeServer server(path, [](Peer& peer) {
      std::string line;
      bool answered = false;
      while (peer.read_line(line)) {
        auto msg = json::parse(line, nullptr, false);
        if (answered || !msg.is_object() || msg.value("method", "") != "$/ping") continue;
        peer.write_line({{"jsonrpc", "2.0"}, {"id", msg["id"]}, {"result", json::object()}});
        answered = true;
      }
    });
    auto opt = connect_options(path);
    opt.heartbeat = Ms(50);
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto exited = wait_state(*bridge.events(), "exited", 1, Ms(10000));
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("code", "") == "bridge_hung");
    CHECK((*exited)["error"].value("message", "") ==
          "the tether server stopped answering heartbeats and tether disconnected");
    // Our side closed: the server reads the end of the stream.
    CHECK(test::eventually([&] { return server.finished() == 1; }));
    bridge.stop();
  }
  CHECK_NO_LEAKS(guard);
}

// Our end of a socketpair as a `--connect` connection has it: non-blocking, and stdin a dup of
// the stdout we read; `peer` gets the other end.
namespace {
rpc::ConnectionFds socket_fds(UniqueFd& peer) {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  UniqueFd ours(sv[0]);
  peer = UniqueFd(sv[1]);
  REQUIRE(::fcntl(ours.get(), F_SETFL, O_NONBLOCK) == 0);
  rpc::ConnectionFds fds;
  fds.stdout_r = std::move(ours);
  fds.stdin_w = UniqueFd(::fcntl(fds.stdout_r.get(), F_DUPFD_CLOEXEC, 0));
  REQUIRE(fds.stdin_w.valid());
  return fds;
}
}  // namespace

// The dispatcher waits with epoll, which registers a file, not an fd: our stdin is a dup of the
// socket we read, so closing it alone would leave its registration behind, writable for as long as
// the peer keeps its side open (a spin). Here stdin is registered when it closes: a backlog waits
// for it (the peer does not read yet) when close_stdin() is asked, and goes out before the close.
TEST_CASE("a socket peer: our stdin (a dup of stdout) closes with a backlog while the peer holds its side: no spin, one end") {
  test::LeakGuard guard;
  {
    UniqueFd peer;
    rpc::ConnectionFds fds = socket_fds(peer);
    rpc::ConnectionOptions copt;
    copt.events = std::make_shared<rpc::EventQueue>(64);
    copt.thread_name = "tether-disp-dup";
    rpc::Connection conn(std::move(fds), std::move(copt));
    conn.start();

    const std::string big(64 << 10, 'x');
    std::size_t sent = 0;
    for (int i = 0; i < 16; ++i, sent += big.size()) conn.notify("fill", {{"text", big}});
    // More than the socket holds: the dispatcher holds the rest, waiting for room (stdin registered).
    REQUIRE(test::eventually([&] { return conn.counters().outbound_backlog > 0; }));
    conn.close_stdin();

    // The peer reads everything, then our end of the stream: the backlog went first.
    std::size_t got = 0;
    char buf[64 << 10];
    for (;;) {
      ssize_t n = ::read(peer.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      REQUIRE(n >= 0);
      if (n == 0) break;
      got += static_cast<std::size_t>(n);
    }
    CHECK(got > sent);

    // The peer keeps its side open: nothing more can happen, and the dispatcher sleeps meanwhile.
    const auto w = watch_cpu(conn, 300ms);
    CHECK_FALSE(w.exited);
    CHECK_MESSAGE(w.cpu_ms < w.wall_ms / 3, "the process used " << w.cpu_ms << " ms of CPU in " << w.wall_ms << " ms");
    CHECK(conn.death() == rpc::DeathCause::none);

    peer.reset();  // the peer leaves: the connection ends, once
    CHECK(conn.wait_exited(Deadline::after(5s)));
    CHECK(conn.death() == rpc::DeathCause::stdout_eof);  // a socket peer's end: see connection.h
  }
  CHECK_NO_LEAKS(guard);
}

// Every fd number this process may still take, held until destroyed (the soft limit lowered to
// `limit` meanwhile, so that there are few): what a process at its fd limit looks like.
class FdTableFull {
 public:
  explicit FdTableFull(rlim_t limit) {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved_) == 0);
    rlimit lower = saved_;
    if (lower.rlim_cur > limit) lower.rlim_cur = limit;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lower) == 0);
    for (;;) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      held_.emplace_back(fd);
    }
  }
  ~FdTableFull() {
    held_.clear();
    ::setrlimit(RLIMIT_NOFILE, &saved_);
  }
  FdTableFull(const FdTableFull&) = delete;
  FdTableFull& operator=(const FdTableFull&) = delete;

 private:
  rlimit saved_{};
  std::vector<UniqueFd> held_;
};

// The dispatcher's epoll set costs an fd, which poll() did not: a process at its fd limit still
// serves a connection it has the fds of (the wait falls back to poll()), rather than declaring the
// peer gone.
TEST_CASE("no fd left for the dispatcher's epoll set: the connection still carries messages both ways") {
  test::LeakGuard guard;
  {
    UniqueFd peer;
    rpc::ConnectionFds fds = socket_fds(peer);
    rpc::ConnectionOptions copt;
    auto events = std::make_shared<rpc::EventQueue>(64);
    copt.events = events;
    copt.thread_name = "tether-disp-nofd";
    rpc::Connection conn(std::move(fds), std::move(copt));
    {
      FdTableFull full(256);
      REQUIRE(::open("/dev/null", O_RDONLY | O_CLOEXEC) < 0);  // no fd left for epoll_create1
      conn.start();
      // From the peer: read by the dispatcher, which is past its start-up by then.
      base::write_all(peer.get(), "{\"jsonrpc\":\"2.0\",\"method\":\"hello\",\"params\":{}}\n");
      auto ev = events->pop(Deadline::after(5s));
      REQUIRE(ev.has_value());
      CHECK(ev->message.value("method", "") == "hello");
      CHECK(conn.death() == rpc::DeathCause::none);
      // To the peer: written by a caller or the dispatcher.
      conn.notify("back", json::object());
      std::string got;
      char c = 0;
      while (got.find('\n') == std::string::npos && ::read(peer.get(), &c, 1) == 1) got.push_back(c);
      CHECK(contains(got, "\"method\":\"back\""));
    }
    peer.reset();  // the peer leaves: the connection ends
    CHECK(conn.wait_exited(Deadline::after(5s)));
    CHECK(conn.death() == rpc::DeathCause::stdout_eof);
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
