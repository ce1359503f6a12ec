#include "supervisor/bridge.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cassert>
#include <variant>

#include "base/byte_ring.h"
#include "base/signals.h"
#include "rpc/trace.h"

namespace tether::supervisor {
namespace {

using base::Clock;
using base::Deadline;

constexpr int kHeartbeatMisses = 3;
// A stderr line quoted in a one-line message is cut here (the whole tail is in stderrTail).
constexpr std::size_t kMaxQuotedLine = 200;
// After stdout EOF or EPIPE, how long the process gets to exit by itself before the ladder.
constexpr auto kExitAfterEof = std::chrono::milliseconds(250);
// How long a connect may wait for a tether server whose backlog is full.
constexpr int kConnectWaitSecs = 5;

using base::last_lines;

bool allowed(State from, State to) {
  switch (to) {
    case State::starting: return from == State::exited || from == State::backoff || from == State::failed;
    case State::ready: return from == State::starting;
    case State::backoff: return from == State::exited;
    case State::stopping: return true;
    case State::exited: return from == State::ready || from == State::stopping || from == State::starting ||
                               from == State::backoff || from == State::failed;
    case State::failed: return from == State::exited || from == State::starting;
  }
  return false;
}

// How often a connect is tried again: while a server may still be starting (connect_patience),
// and while its listen backlog is full (for kConnectWaitSecs at most).
constexpr auto kConnectRetry = std::chrono::milliseconds(20);

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

}  // namespace

const char* to_string(State s) {
  switch (s) {
    case State::starting: return "starting";
    case State::ready: return "ready";
    case State::backoff: return "backoff";
    case State::stopping: return "stopping";
    case State::exited: return "exited";
    case State::failed: return "failed";
  }
  return "unknown";
}

std::string describe(const BridgeExited& e) {
  if (e.connection) {
    // The bridge runs in the server: its exit status and stderr are the server's to tell.
    switch (e.reason) {
      case ExitReason::exited:
      case ExitReason::stdout_closed:
      case ExitReason::stdin_closed: return "the tether server closed the connection";
      case ExitReason::hung: return "the tether server stopped answering heartbeats and tether disconnected";
      case ExitReason::spawn_failed: return e.detail;
      case ExitReason::stopped: return "tether disconnected from the tether server";
      case ExitReason::restarted:
        return "tether disconnected from the tether server to reconnect" +
               (e.detail.empty() ? std::string() : " (" + e.detail + ")");
    }
  }
  std::string s;
  switch (e.reason) {
    case ExitReason::exited:
      s = e.status ? (e.status->signaled ? "the bridge was " + e.status->describe()
                                         : "the bridge exited with " + e.status->describe())
                   : "the bridge exited";
      break;
    case ExitReason::stdout_closed: s = "the bridge closed its stdout"; break;
    case ExitReason::stdin_closed: s = "the bridge stopped reading its stdin"; break;
    case ExitReason::hung: s = "the bridge stopped answering heartbeats and was killed"; break;
    case ExitReason::spawn_failed: s = "cannot start the bridge: " + e.detail; break;
    case ExitReason::stopped: s = "the bridge was stopped"; break;
    case ExitReason::restarted:
      s = "the bridge was restarted" + (e.detail.empty() ? std::string() : " (" + e.detail + ")");
      break;
  }
  if ((e.reason == ExitReason::stdout_closed || e.reason == ExitReason::stdin_closed) && e.status)
    s += e.status->signaled ? " (it was then " + e.status->describe() + ")"
                            : " (it then exited with " + e.status->describe() + ")";
  std::string last = base::last_telling_line(e.stderr_tail);
  if (last.size() > kMaxQuotedLine) last = last.substr(0, kMaxQuotedLine) + "…";
  if (!last.empty()) s += "; its last stderr line: " + last;
  return s;
}

json BridgeExited::to_json() const {
  json j = {{"code", reason == ExitReason::hung ? "bridge_hung" : "bridge_exited"},
            {"message", describe(*this)},
            {"generation", generation}};
  if (status) {
    if (status->signaled) j["signal"] = base::signal_name(status->signal);
    else j["exitStatus"] = status->code;
  }
  if (!stderr_tail.empty()) j["stderrTail"] = stderr_tail;
  return j;
}

// How often a running bridge's exited strays are reaped (see the watch loop).
constexpr auto kStrayReapInterval = std::chrono::seconds(5);

std::string give_up_message(std::size_t restarts, base::Duration window, const BridgeExited& last) {
  auto secs = std::chrono::duration_cast<std::chrono::duration<double>>(window).count();
  char win[32];
  std::snprintf(win, sizeof win, "%g s", secs);
  if (last.connection) {
    std::string s = restarts == 0
                        ? std::string("tether did not reconnect to the tether server (--max-restarts is 0). Last cause: ") +
                              describe(last) + "."
                        : "tether gave up reconnecting to the tether server after " + std::to_string(restarts) +
                              " attempt" + (restarts == 1 ? "" : "s") + " within " + win +
                              " (the limit; see --max-restarts and --restart-window). Last cause: " + describe(last) + ".";
    return s + "\nMake sure the server runs (tether serve) and run tether again (in talk: /restart).";
  }
  std::string s = restarts == 0
                      ? std::string("tether did not restart the bridge (--max-restarts is 0). Last cause: ") + describe(last) + "."
                      : "tether gave up on the bridge after " + std::to_string(restarts) + " restart" +
                            (restarts == 1 ? "" : "s") + " within " + win +
                            " (the limit; see --max-restarts and --restart-window). Last cause: " + describe(last) + ".";
  std::string tail = last_lines(last.stderr_tail, 5);
  if (!tail.empty()) s += "\nLast lines of the bridge's stderr:\n" + tail;
  s += "\nFix the bridge and run tether again (in talk: /restart).";
  return s;
}

Bridge::Bridge(BridgeOptions options)
    : opt_(std::move(options)),
      events_(std::make_shared<rpc::EventQueue>(opt_.queue_capacity)),
      policy_(opt_.restart) {}

Bridge::~Bridge() { stop(); }

BridgeExited Bridge::stopped_exit() const {
  BridgeExited e;
  e.reason = ExitReason::stopped;
  e.generation = generation_;
  e.connection = !opt_.connect_path.empty();
  return e;
}

std::optional<BridgeExited> Bridge::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) return std::nullopt;
    started_ = true;
    // A stop() that came first is for good (a Ctrl-C watcher can be that quick): nothing starts.
    if (request_ == Request::stop) return stopped_exit();
    // Made in the same critical section that sets started_: a stop() from another thread that sees
    // started_ then sees the handle too (run() waits for mu_ before it touches anything).
    thread_ = std::thread([this] { run(); });
  }
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_ == State::ready || state_ == State::failed || state_ == State::exited; });
  // A stop() accepted meanwhile is what start() reports, even when the generation it ends got as
  // far as ready first; so is one before the first generation began (no last exit yet).
  if (request_ == Request::stop) return last_exit_ ? last_exit_ : stopped_exit();
  if (state_ == State::ready) return std::nullopt;
  if (last_exit_) return last_exit_;
  return stopped_exit();
}

bool Bridge::wait_ready(Deadline deadline) {
  std::unique_lock lock(mu_);
  auto settled = [&] {
    if (request_ == Request::stop || state_ == State::stopping) return true;
    if (generation_ < ready_min_gen_) return false;
    return state_ == State::ready || state_ == State::failed || state_ == State::stopping ||
           (state_ == State::exited && (!opt_.auto_restart || request_ == Request::stop));
  };
  if (deadline.is_never()) cv_.wait(lock, settled);
  else cv_.wait_until(lock, deadline.when(), settled);
  return state_ == State::ready && generation_ >= ready_min_gen_;
}

void Bridge::transition(State to, json extra) {
  std::uint64_t gen;
  {
    std::lock_guard lock(mu_);
    assert(allowed(state_, to));
    (void)allowed;
    state_ = to;
    gen = generation_;
  }
  publish(to, gen, std::move(extra));
}

void Bridge::publish(State to, std::uint64_t gen, json extra) {
  cv_.notify_all();
  rpc::Event ev;
  ev.kind = rpc::Event::Kind::status;
  ev.generation = gen;
  extra["state"] = to_string(to);
  extra["generation"] = gen;
  ev.message = std::move(extra);
  if (opt_.trace) opt_.trace->note(gen, "state " + std::string(to_string(to)));
  events_->push(std::move(ev));
}

rpc::Reply Bridge::closed_reply() const {
  rpc::Reply r;
  r.status = rpc::Reply::Status::closed;
  std::lock_guard lock(mu_);
  if (gave_up_) {
    r.value = {{"code", "restart_limit"}, {"message", give_up_message_}};
    if (last_exit_) {
      json last = last_exit_->to_json();
      for (const char* k : {"exitStatus", "signal", "stderrTail", "generation"})
        if (last.contains(k)) r.value[k] = last[k];
    }
  } else if (last_exit_) {
    r.value = last_exit_->to_json();
  } else {
    r.value = {{"code", "bridge_exited"}, {"message", "the bridge is not running"}};
  }
  return r;
}

rpc::Reply Bridge::call(std::string_view method, json params, Deadline deadline) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (!c) return closed_reply();
  return c->call(method, std::move(params), deadline);
}

std::int64_t Bridge::call_queued(std::string_view method, json params, std::uint64_t* generation) {
  return call_queued_to(0, method, std::move(params), generation);
}

std::int64_t Bridge::call_queued_to(std::uint64_t only, std::string_view method, json params,
                                    std::uint64_t* generation) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (!c || (only != 0 && c->generation() != only)) {
    static std::atomic<std::int64_t> synthetic{0};
    rpc::Event ev;
    ev.kind = rpc::Event::Kind::response;
    ev.call_id = --synthetic;  // negative: never an id we send
    ev.reply = closed_reply();
    ev.reply.id = ev.call_id;
    if (generation) *generation = 0;
    events_->push(ev);
    return ev.call_id;
  }
  if (generation) *generation = c->generation();
  return c->call_queued(method, std::move(params));
}

bool Bridge::cancel(std::uint64_t generation, std::int64_t id) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  return c && c->generation() == generation && c->cancel(id);
}

void Bridge::notify(std::string_view method, json params, std::uint64_t only) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (c && (only == 0 || c->generation() == only)) c->notify(method, std::move(params));
}

void Bridge::respond(std::uint64_t generation, const json& id, json result) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (c && c->generation() == generation) c->respond(id, std::move(result));
}

void Bridge::respond_error(std::uint64_t generation, const json& id, int code, std::string_view message) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (c && c->generation() == generation) c->respond_error(id, code, message);
}

BridgeStatus Bridge::status() const {
  std::shared_ptr<rpc::Connection> c;
  BridgeStatus s;
  {
    std::lock_guard lock(mu_);
    c = conn_;
    s.state = state_;
    s.generation = generation_;
    s.pid = pid_;
    s.restarts_in_window = const_cast<base::RestartPolicy&>(policy_).in_window(Clock::now());
    s.restarts_total = restarts_total_;
    if (c) s.uptime = Clock::now() - started_at_;
    s.last_exit = last_exit_;
    s.stderr_tail = last_stderr_;
  }
  if (c) {
    s.stderr_tail = c->stderr_tail();
    s.counters = c->counters();
  }
  return s;
}

void Bridge::restart() {
  {
    std::lock_guard lock(mu_);
    if (request_ != Request::stop) {
      request_ = Request::restart;
      ready_min_gen_ = generation_ + 1;
    }
  }
  cv_.notify_all();
}

void Bridge::recycle(std::string why) {
  std::uint64_t gen;
  {
    std::lock_guard lock(mu_);
    gen = conn_ ? generation_ : 0;
  }
  recycle(gen, std::move(why));
}

void Bridge::recycle(std::uint64_t generation, std::string why) {
  {
    std::lock_guard lock(mu_);
    // Only the generation the caller meant: a late recycle must not end its successor.
    bool stale_recycle = request_ == Request::recycle && recycle_gen_ != generation_;
    if ((request_ != Request::none && !stale_recycle) || !conn_ || generation != generation_) return;
    request_ = Request::recycle;
    recycle_gen_ = generation;
    recycle_why_ = std::move(why);
  }
  cv_.notify_all();
}

void Bridge::stop(base::Duration grace) {
  {
    std::lock_guard lock(mu_);
    stop_grace_ = std::min(grace, opt_.grace);
  }
  stop();
}

void Bridge::stop() {
  {
    std::lock_guard lock(mu_);
    request_ = Request::stop;  // before start(): start() will not start (see there)
    if (!started_) return;
  }
  cv_.notify_all();
  std::lock_guard join(join_mu_);  // two stop()s at once: one joins, the other waits for it
  if (thread_.joinable()) thread_.join();
}

std::optional<Bridge::Request> Bridge::wait_backoff(base::Duration delay) {
  const bool forever = delay == base::Duration::max();
  const auto until = forever ? base::TimePoint::max() : Clock::now() + delay;  // now + max overflows
  std::unique_lock lock(mu_);
  for (;;) {
    if (request_ == Request::recycle) request_ = Request::none;  // nothing runs to recycle
    if (request_ != Request::none) {
      Request r = request_;
      if (r != Request::stop) request_ = Request::none;
      return r;
    }
    if (!forever && Clock::now() >= until) return std::nullopt;
    if (forever) cv_.wait(lock);
    else cv_.wait_until(lock, until);
  }
}

void Bridge::heartbeat_tick(rpc::Connection& conn, bool& hung) {
  const auto hb = opt_.heartbeat;
  const auto now = Clock::now();
  auto rx = conn.last_received();
  if (rx > hb_last_rx_) {  // any traffic proves liveness
    hb_last_rx_ = rx;
    hb_misses_ = 0;
  }
  if (conn.backpressured()) {
    // We stopped reading (our consumer is slow): the bridge's answers wait in the pipe, unread.
    // Its silence is ours, so nothing counts as a miss until we read again.
    hb_last_rx_ = now;
    hb_misses_ = 0;
    if (hb_ping_out_) hb_ping_sent_ = now;
  }
  if (hb_answered_->exchange(0) > 0) {
    hb_armed_ = true;
    hb_misses_ = 0;
    hb_ping_out_ = false;
  }
  if (hb_ping_out_ && now - hb_ping_sent_ >= hb) {
    conn.cancel(hb_ping_id_);
    hb_ping_out_ = false;
    // Before the first answer the heartbeat is not armed: a bridge that never answers pings is
    // never disturbed.
    if (hb_armed_ && now - hb_last_rx_ >= hb && ++hb_misses_ >= kHeartbeatMisses) {
      hung = true;
      return;
    }
  }
  if (!hb_ping_out_ && now - hb_last_rx_ >= hb) {
    auto answered = hb_answered_;
    hb_ping_id_ = conn.call_async("$/ping", json::object(), [answered](rpc::Reply r) {
      // Any response, an error (-32601) included, proves the bridge reads and answers.
      if (r.status == rpc::Reply::Status::result || r.status == rpc::Reply::Status::error) answered->store(1);
    });
    hb_ping_sent_ = now;
    hb_ping_out_ = true;
  }
}

BridgeExited Bridge::end_generation(proc::Child* child, rpc::Connection& conn, ExitReason reason,
                                    std::string detail) {
  BridgeExited e;
  e.reason = reason;
  e.generation = conn.generation();
  e.detail = std::move(detail);
  e.connection = child == nullptr;

  auto fail_waiters = [&] {
    e.stderr_tail = conn.stderr_tail();
    rpc::Reply r;
    r.status = rpc::Reply::Status::closed;
    r.value = e.to_json();
    conn.fail_pending(r);
  };

  if (!child) {
    // A tether server: nothing to signal or reap. When it went first, what it wrote before is read
    // to the end of the stream; when we leave, closing our side (after what is queued, a
    // session/cancel say) tells it, and it closes its own.
    switch (reason) {
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
    fail_waiters();
    if (opt_.trace) opt_.trace->note(e.generation, describe(e));
    return e;
  }

  proc::LadderHooks hooks{[&] { conn.close_stdin(); }, [&](Deadline d) { return conn.wait_exited(d); }};
  if ((reason == ExitReason::stdout_closed || reason == ExitReason::stdin_closed) &&
      conn.wait_exited(Deadline::after(kExitAfterEof))) {
    e.reason = reason = ExitReason::exited;  // it was simply exiting: say so, with its status
  }
  switch (reason) {
    case ExitReason::exited:
      child->reap();
      break;
    case ExitReason::stdout_closed:
    case ExitReason::stdin_closed:
    case ExitReason::hung:
      fail_waiters();  // do not hold callers while the ladder runs
      proc::stop_ladder(*child, reason == ExitReason::hung ? base::Duration(0) : opt_.grace, opt_.term_wait, hooks);
      break;
    case ExitReason::stopped: {
      base::Duration grace = opt_.grace;
      {
        std::lock_guard lock(mu_);
        if (stop_grace_) grace = *stop_grace_;
      }
      proc::stop_ladder(*child, grace, opt_.term_wait, hooks);
      break;
    }
    case ExitReason::restarted:
    case ExitReason::spawn_failed:
      proc::stop_ladder(*child, opt_.grace, opt_.term_wait, hooks);
      break;
  }
  // The dispatcher drains the pipes for at most ~100 ms after the exit; wait for it so the stderr
  // tail is complete.
  conn.wait_exited(Deadline::after(std::chrono::seconds(1)));
  e.status = child->status();
  fail_waiters();  // no-op if already done; otherwise fails them now, with the exit status
  if (opt_.trace) opt_.trace->note(e.generation, describe(e));
  child->clean_up_group(opt_.term_wait);  // grandchildren: after the waiters heard, not before
  return e;
}

BridgeExited Bridge::watch_generation(std::uint64_t gen, proc::Child* child, proc::ChildFds fds, Request& req) {
  rpc::ConnectionOptions copt;
  copt.generation = gen;
  copt.max_line = opt_.max_line;
  copt.events = events_;
  copt.trace = opt_.trace;
  copt.stderr_copy_fd = opt_.stderr_copy_fd;
  copt.thread_name = "tether-disp" + std::to_string(gen);
  copt.on_change = [this] {
    {
      std::lock_guard lock(mu_);
      conn_changed_ = true;
    }
    cv_.notify_all();
  };
  auto conn = std::make_shared<rpc::Connection>(
      rpc::ConnectionFds{std::move(fds.stdin_w), std::move(fds.stdout_r), std::move(fds.stderr_r),
                         std::move(fds.pidfd)},
      std::move(copt));
  {
    std::lock_guard lock(mu_);
    conn_ = conn;
    pid_ = child ? child->pid() : -1;
    started_at_ = Clock::now();
  }
  if (child) {
    if (opt_.trace) opt_.trace->note(gen, "spawned pid " + std::to_string(child->pid()));
    transition(State::ready, {{"pid", child->pid()}});
  } else {
    if (opt_.trace) opt_.trace->note(gen, "connected to " + opt_.connect_path);
    transition(State::ready, {{"socket", opt_.connect_path}});
  }
  conn->start();  // after "ready": none of this generation's events can precede it

  hb_last_rx_ = Clock::now();
  hb_ping_out_ = false;
  hb_armed_ = false;
  hb_misses_ = 0;
  hb_answered_ = std::make_shared<std::atomic<int>>(0);

  // Watch the generation until it dies or we are asked to end it.
  ExitReason reason = ExitReason::exited;
  req = Request::none;
  std::string detail;
  auto last_stray_reap = Clock::now();
  for (;;) {
    std::unique_lock lock(mu_);
    auto woken = [&] { return conn_changed_ || request_ != Request::none; };
    // The tick also reaps strays: a bridge's helper that left its process group (setsid) and
    // exited is our zombie (we are a subreaper) until someone waits for it.
    auto tick = opt_.heartbeat.count() > 0
                    ? std::max<base::Duration>(opt_.heartbeat / 4, std::chrono::milliseconds(20))
                    : base::Duration(kStrayReapInterval);
    cv_.wait_for(lock, tick, woken);
    if (request_ == Request::recycle && recycle_gen_ != gen) {
      request_ = Request::none;  // meant for a generation that is already gone
      continue;
    }
    if (request_ != Request::none) {
      req = request_;
      detail = req == Request::recycle ? recycle_why_ : req == Request::restart ? "manual restart" : "";
      if (req != Request::stop) request_ = Request::none;
      reason = req == Request::stop ? ExitReason::stopped : ExitReason::restarted;
      break;
    }
    if (conn_changed_) {
      conn_changed_ = false;
      lock.unlock();
      auto d = conn->death();
      if (d != rpc::DeathCause::none) {
        reason = d == rpc::DeathCause::exited       ? ExitReason::exited
                 : d == rpc::DeathCause::stdout_eof ? ExitReason::stdout_closed
                                                    : ExitReason::stdin_closed;
        break;
      }
      continue;
    }
    lock.unlock();
    if (auto now = Clock::now(); child && now - last_stray_reap >= kStrayReapInterval) {
      last_stray_reap = now;
      proc::reap_strays();
    }
    if (opt_.heartbeat.count() > 0) {
      bool hung = false;
      heartbeat_tick(*conn, hung);
      if (hung) {
        reason = ExitReason::hung;
        break;
      }
    }
  }

  if (req == Request::stop) transition(State::stopping);
  BridgeExited e = end_generation(child, *conn, reason, detail);
  // Someone may still hold this connection (a call() in progress); it must not call back into a
  // Bridge that could be gone by the time its dispatcher notices anything more.
  conn->detach_on_change();
  {
    std::lock_guard lock(mu_);
    conn_.reset();
    conn_changed_ = false;
    pid_ = -1;
    last_exit_ = e;
    last_stderr_ = e.stderr_tail;
  }
  return e;
}

void Bridge::run() {
  ::pthread_setname_np(::pthread_self(), "tether-super");
  const bool via_socket = !opt_.connect_path.empty();
  bool reset_policy = false;
  bool ever_connected = false;  // connect mode: a generation has been up
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (request_ == Request::stop) break;  // e.g. stop() during a manual restart's ladder
    }
    if (reset_policy) {
      std::lock_guard lock(mu_);
      policy_.reset();
      gave_up_ = false;
      reset_policy = false;
    }
    // The new number and "starting" in one step: nobody may see the new generation in the old
    // generation's state (a wait_ready() after restart() would settle on it).
    std::uint64_t gen;
    bool need_starting;
    {
      std::lock_guard lock(mu_);
      gen = ++generation_;
      need_starting = state_ != State::starting;
      if (need_starting) {
        assert(allowed(state_, State::starting));
        state_ = State::starting;
      }
      // Requests the ended generation was asked for are spent: a second restart() during the
      // first one's stop ladder is the same restart, and a recycle names its own generation.
      if (request_ == Request::restart) {
        // Taken here rather than by the watch or backoff wait: it still forgets the history.
        policy_.reset();
        gave_up_ = false;
        request_ = Request::none;
      } else if (request_ == Request::recycle && recycle_gen_ != gen) {
        request_ = Request::none;
      }
    }
    if (need_starting) publish(State::starting, gen);

    proc::ChildFds fds;
    std::optional<proc::Child> child;
    std::optional<BridgeExited> not_started;  // why this generation could not start
    if (via_socket) {
      // Tried again while there is no server yet, the first time only (a server started a moment
      // before may still be binding its socket: connect_patience), and while its backlog is full
      // (kConnectWaitSecs). A stop() ends the wait.
      using Outcome = ConnectAttempt::Outcome;
      const auto now = Clock::now();
      const auto absent_until = ever_connected ? now : now + opt_.connect_patience;
      const auto busy_until = now + std::chrono::seconds(kConnectWaitSecs);
      auto sock = connect_socket(opt_.connect_path);
      bool stopping = false;
      while ((sock.outcome == Outcome::absent && Clock::now() < absent_until) ||
             (sock.outcome == Outcome::busy && Clock::now() < busy_until)) {
        std::unique_lock lock(mu_);
        if (cv_.wait_for(lock, kConnectRetry, [&] { return request_ == Request::stop; })) {
          stopping = true;
          break;
        }
        lock.unlock();
        sock = connect_socket(opt_.connect_path);
      }
      if (stopping) {
        // Not a failure to report, but start() must not take the stop for a connection.
        std::lock_guard lock(mu_);
        if (!last_exit_) last_exit_ = stopped_exit();  // generation_ is still gen
        break;
      }
      if (sock.outcome != Outcome::connected) {
        not_started.emplace();
        not_started->detail = sock.why;
        not_started->connection = true;
      } else {
        fds.stdout_r = std::move(sock.fd);
        fds.stdin_w = base::UniqueFd(::fcntl(fds.stdout_r.get(), F_DUPFD_CLOEXEC, 0));
        if (!fds.stdin_w) {
          not_started.emplace();
          not_started->detail = std::string("cannot duplicate the socket: ") + ::strerror(errno);
          not_started->connection = true;
          fds.stdout_r.reset();  // the server must not keep a client that will never speak
        }
      }
    } else {
      auto spawned = proc::Child::spawn({opt_.argv, opt_.cwd, opt_.extra_env}, fds);
      if (auto* err = std::get_if<proc::SpawnError>(&spawned)) {
        not_started.emplace();
        not_started->detail = err->what;
      } else {
        child.emplace(std::move(std::get<proc::Child>(spawned)));
      }
    }

    BridgeExited e;
    Request req = Request::none;
    if (not_started) {
      e = std::move(*not_started);
      e.reason = ExitReason::spawn_failed;
      e.generation = gen;
      if (opt_.trace) opt_.trace->note(gen, describe(e));
      if (!via_socket || !ever_connected) {
        // Nothing to restart: a command that cannot be run, or no server to reconnect to, stays
        // so until someone asks again.
        {
          std::lock_guard lock(mu_);
          last_exit_ = e;
          gave_up_ = true;
          give_up_message_ = describe(e);
        }
        transition(State::failed, {{"error", e.to_json()}});
        auto r = wait_backoff(base::Duration::max());
        if (r == Request::stop) break;
        reset_policy = true;
        continue;
      }
      // The server it was connected to went away: reconnecting is what a restart is here, and the
      // policy bounds it (the server may be on its way back).
      {
        std::lock_guard lock(mu_);
        last_exit_ = e;
        last_stderr_.clear();
      }
    } else {
      ever_connected = ever_connected || via_socket;
      e = watch_generation(gen, child ? &*child : nullptr, std::move(fds), req);
      child.reset();
    }
    transition(State::exited, {{"error", e.to_json()}});
    if (req == Request::stop) break;
    if (req == Request::restart) {
      reset_policy = true;
      continue;
    }
    if (!opt_.auto_restart && req != Request::recycle) {
      auto r = wait_backoff(base::Duration::max());
      if (r == Request::stop) break;
      reset_policy = true;
      continue;
    }
    std::optional<base::Duration> delay;
    std::size_t in_window;
    {
      std::lock_guard lock(mu_);
      in_window = policy_.in_window(Clock::now());
      delay = policy_.request(Clock::now());
      if (delay) ++restarts_total_;
      else {
        gave_up_ = true;
        give_up_message_ = give_up_message(in_window, opt_.restart.window, e);
      }
    }
    if (!delay) {
      std::string msg;
      {
        std::lock_guard lock(mu_);
        msg = give_up_message_;
      }
      if (opt_.trace) opt_.trace->note(gen, msg);
      transition(State::failed, {{"message", msg}, {"error", closed_reply().value}});
      auto r = wait_backoff(base::Duration::max());
      if (r == Request::stop) break;
      reset_policy = true;
      continue;
    }
    transition(State::backoff, {{"delayMs", std::chrono::duration_cast<std::chrono::milliseconds>(*delay).count()},
                                {"error", e.to_json()}});
    auto r = wait_backoff(*delay);
    if (r == Request::stop) break;
    if (r == Request::restart) reset_policy = true;
  }
  {
    std::lock_guard lock(mu_);
    if (state_ == State::exited) {
      cv_.notify_all();
      return;
    }
  }
  transition(State::exited);
}

}  // namespace tether::supervisor
