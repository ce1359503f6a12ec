#include "supervisor/generation_source.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <optional>
#include <variant>

#include "proc/child.h"
#include "rpc/trace.h"

namespace tether::supervisor {
namespace {

using base::Clock;
using base::Deadline;

// After stdout EOF or EPIPE, how long the process gets to exit by itself before the ladder.
constexpr auto kExitAfterEof = std::chrono::milliseconds(250);
// How long a connect may wait for a tether server whose backlog is full.
constexpr int kConnectWaitSecs = 5;
// How often a connect is tried again: while a server may still be starting (connect_patience),
// and while its listen backlog is full (for kConnectWaitSecs at most).
constexpr auto kConnectRetry = std::chrono::milliseconds(20);

// Fails every waiter of `conn` with `e` (with the stderr tail read now). Once is enough: later
// calls only refresh e.stderr_tail and fail nothing new.
void fail_waiters(rpc::Connection& conn, BridgeExited& e) {
  e.stderr_tail = conn.stderr_tail();
  rpc::Reply r;
  r.status = rpc::Reply::Status::closed;
  r.value = e.to_json();
  conn.fail_pending(r);
}

// One connect attempt to a tether server's socket: CLOEXEC and non-blocking (the dispatcher
// never blocks on it, and a full backlog fails at once with EAGAIN instead of blocking the
// supervisor thread, and with it stop()).
struct ConnectAttempt {
  enum class Outcome { connected, absent, busy, failed };
  Outcome outcome = Outcome::failed;
  base::UniqueFd fd;
  std::string why;  // the sentence a person reads, when not connected
};

ConnectAttempt connect_socket(const std::string& path) {
  ConnectAttempt a;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    a.why = "the socket path " + path + " is too long (at most " + std::to_string(sizeof addr.sun_path - 1) + " bytes)";
    return a;
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  base::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) {
    a.why = std::string("cannot create a socket: ") + ::strerror(errno);
    return a;
  }
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED) {
      a.outcome = ConnectAttempt::Outcome::absent;
      a.why = "no tether server is listening on " + path + " (start one with `tether serve`)";
    } else if (err == EAGAIN) {
      a.outcome = ConnectAttempt::Outcome::busy;
      a.why = "the tether server at " + path + " did not accept the connection within " +
              std::to_string(kConnectWaitSecs) + " s (it is overloaded or stuck)";
    } else {
      a.why = "cannot connect to the tether server at " + path + ": " + ::strerror(err);
    }
    return a;
  }
  a.outcome = ConnectAttempt::Outcome::connected;
  a.fd = std::move(fd);
  return a;
}

// Each generation is a process spawned from BridgeOptions::argv.
class ProcessSource final : public GenerationSource {
 public:
  explicit ProcessSource(const BridgeOptions& o) : opt_(o) {}

  bool connection() const override { return false; }

  Opened open(const WaitForStop&) override {
    Opened o;
    proc::ChildFds fds;
    auto spawned = proc::Child::spawn({opt_.argv, opt_.cwd, opt_.extra_env}, fds);
    if (auto* err = std::get_if<proc::SpawnError>(&spawned)) {
      o.why = err->what;
      return o;
    }
    child_.emplace(std::move(std::get<proc::Child>(spawned)));
    last_stray_reap_ = Clock::now();
    o.outcome = Opened::Outcome::running;
    o.fds = {std::move(fds.stdin_w), std::move(fds.stdout_r), std::move(fds.stderr_r), std::move(fds.pidfd)};
    return o;
  }

  bool open_failure_is_final() const override { return true; }

  pid_t pid() const override { return child_ ? child_->pid() : -1; }
  json ready_payload() const override { return {{"pid", pid()}}; }
  std::string ready_note() const override { return "spawned pid " + std::to_string(pid()); }

  void tick() override {
    // A bridge's helper that left its process group (setsid) and exited is our zombie (we are a
    // subreaper) until someone waits for it.
    if (auto now = Clock::now(); now - last_stray_reap_ >= kStrayReapInterval) {
      last_stray_reap_ = now;
      proc::reap_strays();
    }
  }

  void end(rpc::Connection& conn, BridgeExited& e, base::Duration stop_grace) override {
    proc::Child& child = *child_;
    proc::LadderHooks hooks{[&] { conn.close_stdin(); }, [&](Deadline d) { return conn.wait_exited(d); }};
    if ((e.reason == ExitReason::stdout_closed || e.reason == ExitReason::stdin_closed) &&
        conn.wait_exited(Deadline::after(kExitAfterEof))) {
      e.reason = ExitReason::exited;  // it was simply exiting: say so, with its status
    }
    switch (e.reason) {
      case ExitReason::exited:
        child.reap();
        break;
      case ExitReason::stdout_closed:
      case ExitReason::stdin_closed:
      case ExitReason::hung:
        fail_waiters(conn, e);  // do not hold callers while the ladder runs
        proc::stop_ladder(child, e.reason == ExitReason::hung ? base::Duration(0) : opt_.grace, opt_.term_wait, hooks);
        break;
      case ExitReason::stopped:
        proc::stop_ladder(child, stop_grace, opt_.term_wait, hooks);
        break;
      case ExitReason::restarted:
      case ExitReason::spawn_failed:
        proc::stop_ladder(child, opt_.grace, opt_.term_wait, hooks);
        break;
    }
    // The dispatcher drains the pipes for at most ~100 ms after the exit; wait for it so the
    // stderr tail is complete.
    conn.wait_exited(Deadline::after(std::chrono::seconds(1)));
    e.status = child.status();
    fail_waiters(conn, e);  // no-op if already done; otherwise fails them now, with the exit status
    if (opt_.trace) opt_.trace->note(e.generation, describe(e));
    child.clean_up_group(opt_.term_wait);  // grandchildren: after the waiters heard, not before
    child_.reset();
  }

 private:
  const BridgeOptions& opt_;
  std::optional<proc::Child> child_;  // the running generation's process
  base::TimePoint last_stray_reap_{};
};

// Each generation is a connection to the tether server listening on BridgeOptions::connect_path.
// The server's end of the connection is the generation's death; a reconnect is its restart.
class ServerSource final : public GenerationSource {
 public:
  explicit ServerSource(const BridgeOptions& o) : opt_(o) {}

  bool connection() const override { return true; }

  Opened open(const WaitForStop& wait_for_stop) override {
    // Tried again while there is no server yet, the first time only (a server started a moment
    // before may still be binding its socket: connect_patience), and while its backlog is full
    // (kConnectWaitSecs). A stop() ends the wait.
    using Outcome = ConnectAttempt::Outcome;
    Opened o;
    const auto now = Clock::now();
    const auto absent_until = ever_connected_ ? now : now + opt_.connect_patience;
    const auto busy_until = now + std::chrono::seconds(kConnectWaitSecs);
    auto sock = connect_socket(opt_.connect_path);
    while ((sock.outcome == Outcome::absent && Clock::now() < absent_until) ||
           (sock.outcome == Outcome::busy && Clock::now() < busy_until)) {
      if (wait_for_stop(kConnectRetry)) {
        o.outcome = Opened::Outcome::stopped;
        return o;
      }
      sock = connect_socket(opt_.connect_path);
    }
    if (sock.outcome != Outcome::connected) {
      o.why = sock.why;
      return o;
    }
    o.fds.stdout_r = std::move(sock.fd);
    o.fds.stdin_w = base::UniqueFd(::fcntl(o.fds.stdout_r.get(), F_DUPFD_CLOEXEC, 0));
    if (!o.fds.stdin_w) {
      o.why = std::string("cannot duplicate the socket: ") + ::strerror(errno);
      o.fds.stdout_r.reset();  // the server must not keep a client that will never speak
      return o;
    }
    ever_connected_ = true;
    o.outcome = Opened::Outcome::running;
    return o;
  }

  bool open_failure_is_final() const override { return !ever_connected_; }

  pid_t pid() const override { return -1; }
  json ready_payload() const override { return {{"socket", opt_.connect_path}}; }
  std::string ready_note() const override { return "connected to " + opt_.connect_path; }

  void end(rpc::Connection& conn, BridgeExited& e, base::Duration) override {
    // Nothing to signal or reap. When the server went first, what it wrote before is read to the
    // end of the stream; when we leave, closing our side (after what is queued, a session/cancel
    // say) tells it, and it closes its own.
    switch (e.reason) {
      case ExitReason::stdin_closed:
        conn.wait_exited(Deadline::after(kExitAfterEof));
        break;
      case ExitReason::stopped:
      case ExitReason::restarted:
        conn.close_stdin();
        conn.wait_exited(Deadline::after(opt_.grace));
        break;
      case ExitReason::exited:
      case ExitReason::stdout_closed:
      case ExitReason::hung:
      case ExitReason::spawn_failed:
        break;
    }
    fail_waiters(conn, e);
    if (opt_.trace) opt_.trace->note(e.generation, describe(e));
  }

 private:
  const BridgeOptions& opt_;
  bool ever_connected_ = false;  // a generation has been up: no more connect_patience
};

}  // namespace

std::unique_ptr<GenerationSource> make_generation_source(const BridgeOptions& options) {
  if (!options.connect_path.empty()) return std::make_unique<ServerSource>(options);
  return std::make_unique<ProcessSource>(options);
}

}  // namespace tether::supervisor
