#include "supervisor/bridge.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>

#include <cassert>

#include "base/byte_ring.h"
#include "base/signals.h"
#include "rpc/trace.h"
#include "supervisor/generation_source.h"

namespace tether::supervisor {
namespace {

using base::Clock;
using base::Deadline;

// A stderr line quoted in a one-line message is cut here (the whole tail is in stderrTail).
constexpr std::size_t kMaxQuotedLine = 200;
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
      source_(make_generation_source(opt_)),
      policy_(opt_.restart),
      heartbeat_(opt_.heartbeat) {}

Bridge::~Bridge() { stop(); }

BridgeExited Bridge::stopped_exit() const {
  BridgeExited e;
  e.reason = ExitReason::stopped;
  e.generation = generation_;
  e.connection = source_->connection();
  return e;
}

std::optional<std::optional<BridgeExited>> Bridge::start_result() const {
  if (state_ != State::ready && state_ != State::failed && state_ != State::exited) return std::nullopt;
  // A stop() accepted meanwhile is what start() reports, even when the generation it ends got as
  // far as ready first; so is one before the first generation began (no last exit yet).
  if (request_ == Request::stop) return last_exit_ ? last_exit_ : stopped_exit();
  if (state_ == State::ready) return std::optional<BridgeExited>();
  if (last_exit_) return last_exit_;
  return stopped_exit();
}

std::optional<BridgeExited> Bridge::start(int interrupt_fd, const std::function<bool()>& interrupted) {
  {
    base::MutexLock lock(mu_);
    if (started_) return std::nullopt;
    started_ = true;
    // A stop() that came first is for good (a Ctrl-C can be that quick): nothing starts, and the
    // state says so (exited, announced like any other end) rather than staying `starting`.
    if (request_ == Request::stop) {
      state_ = State::exited;
      auto exit = stopped_exit();
      lock.unlock();
      publish(State::exited, 0);
      return exit;
    }
    // Made in the same critical section that sets started_: a stop() from another thread that sees
    // started_ then sees the handle too (run() waits for mu_ before it touches anything).
    thread_ = std::thread([this] { run(); });
  }
  for (;;) {
    // Cleared before the state is read: a change after the read makes settled_ readable again.
    settled_.clear();
    {
      base::MutexLock lock(mu_);
      if (auto result = start_result()) return *result;
    }
    pollfd p[2] = {{settled_.fd(), POLLIN, 0}, {interrupt_fd, POLLIN, 0}};
    const nfds_t n = interrupt_fd >= 0 ? 2 : 1;
    if (::poll(p, n, -1) < 0) {
      if (errno == EINTR) continue;
      // Cannot poll at all (ENOMEM): wait for the bridge alone, as if there were no interrupt fd.
      base::MutexLock lock(mu_);
      std::optional<std::optional<BridgeExited>> result;
      lock.wait(cv_, [&]() REQUIRES(mu_) { return (result = start_result()).has_value(); });
      return *result;
    }
    if (n < 2 || p[1].revents == 0) continue;
    if (!(p[1].revents & POLLIN)) interrupt_fd = -1;  // hung up or invalid: it has nothing to say
    else if (!interrupted || interrupted()) stop();  // then the state settles as exited
  }
}

void Bridge::transition(State to, json extra) {
  std::uint64_t gen;
  {
    base::MutexLock lock(mu_);
    assert(allowed(state_, to));
    (void)allowed;
    state_ = to;
    gen = generation_;
  }
  publish(to, gen, std::move(extra));
}

void Bridge::publish(State to, std::uint64_t gen, json extra) {
  cv_.notify_all();
  settled_.notify();
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
  base::MutexLock lock(mu_);
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
    base::MutexLock lock(mu_);
    c = conn_;
  }
  if (!c) return closed_reply();
  return c->call(method, std::move(params), deadline);
}

std::int64_t Bridge::call_queued(std::string_view method, json params, std::uint64_t* generation) {
  return call_queued_raw(method, rpc::raw_params(params), generation);
}

std::int64_t Bridge::call_queued_to(std::uint64_t only, std::string_view method, json params,
                                    std::uint64_t* generation) {
  return call_queued_raw(method, rpc::raw_params(params), generation, only);
}

std::int64_t Bridge::call_queued_raw(std::string_view method, const rpc::RawParams& params, std::uint64_t* generation,
                                     std::uint64_t only) {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
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
  return c->call_queued_raw(method, params);
}

bool Bridge::cancel(std::uint64_t generation, std::int64_t id) {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
    c = conn_;
  }
  return c && c->generation() == generation && c->cancel(id);
}

void Bridge::notify(std::string_view method, json params, std::uint64_t only) {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
    c = conn_;
  }
  if (c && (only == 0 || c->generation() == only)) c->notify(method, std::move(params));
}

void Bridge::respond(std::uint64_t generation, const json& id, json result) {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
    c = conn_;
  }
  if (c && c->generation() == generation) c->respond(id, std::move(result));
}

void Bridge::respond_error(std::uint64_t generation, const json& id, int code, std::string_view message) {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
    c = conn_;
  }
  if (c && c->generation() == generation) c->respond_error(id, code, message);
}

State Bridge::state() const {
  base::MutexLock lock(mu_);
  return state_;
}

rpc::Counters Bridge::counters() const {
  std::shared_ptr<rpc::Connection> c;
  {
    base::MutexLock lock(mu_);
    c = conn_;
  }
  return c ? c->counters() : rpc::Counters{};
}

BridgeStatus Bridge::status() const {
  std::shared_ptr<rpc::Connection> c;
  BridgeStatus s;
  {
    base::MutexLock lock(mu_);
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
    base::MutexLock lock(mu_);
    if (request_ != Request::stop) {
      request_ = Request::restart;
    }
  }
  cv_.notify_all();
}

void Bridge::recycle(std::string why) {
  std::uint64_t gen;
  {
    base::MutexLock lock(mu_);
    gen = conn_ ? generation_ : 0;
  }
  recycle(gen, std::move(why));
}

void Bridge::recycle(std::uint64_t generation, std::string why) {
  {
    base::MutexLock lock(mu_);
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
    base::MutexLock lock(mu_);
    stop_grace_ = std::min(grace, opt_.grace);
  }
  stop();
}

void Bridge::stop() {
  {
    base::MutexLock lock(mu_);
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
  base::MutexLock lock(mu_);
  for (;;) {
    if (request_ == Request::recycle) request_ = Request::none;  // nothing runs to recycle
    if (request_ != Request::none) {
      Request r = request_;
      if (r != Request::stop) request_ = Request::none;
      return r;
    }
    if (!forever && Clock::now() >= until) return std::nullopt;
    if (forever) lock.wait(cv_);
    else lock.wait_until(cv_, until);
  }
}

BridgeExited Bridge::end_generation(rpc::Connection& conn, ExitReason reason, std::string detail) {
  BridgeExited e;
  e.reason = reason;
  e.generation = conn.generation();
  e.detail = std::move(detail);
  e.connection = source_->connection();
  base::Duration stop_grace = opt_.grace;
  {
    base::MutexLock lock(mu_);
    if (stop_grace_) stop_grace = *stop_grace_;
  }
  source_->end(conn, e, stop_grace);
  return e;
}

ExitReason Bridge::wait_for_end(std::uint64_t gen, rpc::Connection& conn, Request& req, std::string& detail) {
  req = Request::none;
  // The tick also lets the source reap strays (see GenerationSource::tick).
  const auto tick = opt_.heartbeat.count() > 0
                        ? std::max<base::Duration>(opt_.heartbeat / 4, std::chrono::milliseconds(20))
                        : base::Duration(kStrayReapInterval);
  for (;;) {
    base::MutexLock lock(mu_);
    lock.wait_for(cv_, tick, [&]() REQUIRES(mu_) { return conn_changed_ || request_ != Request::none; });
    if (request_ == Request::recycle && recycle_gen_ != gen) {
      request_ = Request::none;  // meant for a generation that is already gone
      continue;
    }
    if (request_ != Request::none) {
      req = request_;
      detail = req == Request::recycle ? recycle_why_ : req == Request::restart ? "manual restart" : "";
      if (req != Request::stop) request_ = Request::none;
      return req == Request::stop ? ExitReason::stopped : ExitReason::restarted;
    }
    if (conn_changed_) {
      conn_changed_ = false;
      lock.unlock();
      switch (conn.death()) {
        case rpc::DeathCause::none: continue;
        case rpc::DeathCause::exited: return ExitReason::exited;
        case rpc::DeathCause::stdout_eof: return ExitReason::stdout_closed;
        case rpc::DeathCause::stdin_closed: return ExitReason::stdin_closed;
      }
      continue;
    }
    lock.unlock();
    source_->tick();
    if (opt_.heartbeat.count() > 0 && heartbeat_.tick(conn)) return ExitReason::hung;
  }
}

BridgeExited Bridge::watch_generation(std::uint64_t gen, rpc::ConnectionFds fds, Request& req) {
  rpc::ConnectionOptions copt;
  copt.generation = gen;
  copt.max_line = opt_.max_line;
  copt.events = events_;
  copt.trace = opt_.trace;
  copt.stderr_copy_fd = opt_.stderr_copy_fd;
  copt.plain_notification = opt_.plain_notification;
  copt.thread_name = "tether-disp" + std::to_string(gen);
  copt.on_change = [this] {
    {
      base::MutexLock lock(mu_);
      conn_changed_ = true;
    }
    cv_.notify_all();
  };
  auto conn = std::make_shared<rpc::Connection>(std::move(fds), std::move(copt));
  {
    base::MutexLock lock(mu_);
    conn_ = conn;
    pid_ = source_->pid();
    started_at_ = Clock::now();
  }
  if (opt_.trace) opt_.trace->note(gen, source_->ready_note());
  transition(State::ready, source_->ready_payload());
  conn->start();  // after "ready": none of this generation's events can precede it
  heartbeat_.reset();

  std::string detail;
  ExitReason reason = wait_for_end(gen, *conn, req, detail);
  if (req == Request::stop) transition(State::stopping);
  BridgeExited e = end_generation(*conn, reason, detail);
  // Someone may still hold this connection (a call() in progress); it must not call back into a
  // Bridge that could be gone by the time its dispatcher notices anything more.
  conn->detach_on_change();
  {
    base::MutexLock lock(mu_);
    conn_.reset();
    conn_changed_ = false;
    pid_ = -1;
    last_exit_ = e;
    last_stderr_ = e.stderr_tail;
  }
  return e;
}

std::uint64_t Bridge::begin_generation() {
  // The new number and "starting" in one step: nobody may see the new generation in the old
  // generation's state (a status() after restart() would show it).
  std::uint64_t gen;
  bool need_starting;
  {
    base::MutexLock lock(mu_);
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
  return gen;
}

BridgeExited Bridge::not_started(std::uint64_t gen, std::string why) const {
  BridgeExited e;
  e.reason = ExitReason::spawn_failed;
  e.generation = gen;
  e.detail = std::move(why);
  e.connection = source_->connection();
  if (opt_.trace) opt_.trace->note(gen, describe(e));
  return e;
}

Bridge::Next Bridge::park() {
  auto r = wait_backoff(base::Duration::max());
  return r == Request::stop ? Next::stop : Next::fresh;
}

Bridge::Next Bridge::after_exit(const BridgeExited& e, Request req) {
  if (req == Request::stop) return Next::stop;
  if (req == Request::restart) return Next::fresh;
  if (!opt_.auto_restart && req != Request::recycle) return park();
  std::optional<base::Duration> delay;
  std::string msg;
  {
    base::MutexLock lock(mu_);
    std::size_t in_window = policy_.in_window(Clock::now());
    delay = policy_.request(Clock::now());
    if (delay) {
      ++restarts_total_;
    } else {
      gave_up_ = true;
      give_up_message_ = msg = give_up_message(in_window, opt_.restart.window, e);
    }
  }
  if (!delay) {
    if (opt_.trace) opt_.trace->note(e.generation, msg);
    transition(State::failed, {{"message", msg}, {"error", closed_reply().value}});
    return park();
  }
  transition(State::backoff, {{"delayMs", std::chrono::duration_cast<std::chrono::milliseconds>(*delay).count()},
                              {"error", e.to_json()}});
  auto r = wait_backoff(*delay);
  if (r == Request::stop) return Next::stop;
  return r == Request::restart ? Next::fresh : Next::again;
}

void Bridge::run() {
  ::pthread_setname_np(::pthread_self(), "tether-super");
  const WaitForStop wait_for_stop = [this](base::Duration d) {
    base::MutexLock lock(mu_);
    return lock.wait_for(cv_, d, [&]() REQUIRES(mu_) { return request_ == Request::stop; });
  };
  Next next = Next::again;
  for (;;) {
    {
      base::MutexLock lock(mu_);
      if (request_ == Request::stop) break;  // e.g. stop() during a manual restart's ladder
      if (next == Next::fresh) {
        policy_.reset();
        gave_up_ = false;
      }
    }
    const std::uint64_t gen = begin_generation();
    Opened opened = source_->open(wait_for_stop);
    if (opened.outcome == Opened::Outcome::stopped) {
      // Not a failure to report, but start() must not take the stop for a connection.
      base::MutexLock lock(mu_);
      if (!last_exit_) last_exit_ = stopped_exit();  // generation_ is still gen
      break;
    }
    BridgeExited e;
    Request req = Request::none;
    if (opened.outcome == Opened::Outcome::failed) {
      e = not_started(gen, std::move(opened.why));
      const bool final = source_->open_failure_is_final();
      {
        base::MutexLock lock(mu_);
        last_exit_ = e;
        if (final) {
          gave_up_ = true;
          give_up_message_ = describe(e);
        } else {
          last_stderr_.clear();
        }
      }
      if (final) {
        // Nothing to restart: a command that cannot be run, or no server to reconnect to, stays
        // so until someone asks again.
        transition(State::failed, {{"error", e.to_json()}});
        if ((next = park()) == Next::stop) break;
        continue;
      }
      // The server it was connected to went away: reconnecting is what a restart is here, and the
      // policy bounds it (the server may be on its way back).
    } else {
      e = watch_generation(gen, std::move(opened.fds), req);
    }
    transition(State::exited, {{"error", e.to_json()}});
    if ((next = after_exit(e, req)) == Next::stop) break;
  }
  {
    base::MutexLock lock(mu_);
    if (state_ == State::exited) {
      cv_.notify_all();
      settled_.notify();
      return;
    }
  }
  transition(State::exited);
}

}  // namespace tether::supervisor
