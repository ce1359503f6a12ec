#include "supervisor/bridge.h"

#include <pthread.h>
#include <signal.h>

#include <cassert>

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

std::string last_lines(const std::string& tail, std::size_t n) {
  base::ByteRing ring(tail.size() + 1);
  ring.append(tail);
  return ring.tail_lines(n);
}

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
  std::string last = last_lines(e.stderr_tail, 1);
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

std::optional<BridgeExited> Bridge::start() {
  {
    std::lock_guard lock(mu_);
    if (started_) return std::nullopt;
    started_ = true;
  }
  thread_ = std::thread([this] { run(); });
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return state_ == State::ready || state_ == State::failed || state_ == State::exited; });
  if (state_ == State::ready) return std::nullopt;
  return last_exit_;
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
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (!c) {
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

void Bridge::notify(std::string_view method, json params) {
  std::shared_ptr<rpc::Connection> c;
  {
    std::lock_guard lock(mu_);
    c = conn_;
  }
  if (c) c->notify(method, std::move(params));
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

void Bridge::stop() {
  {
    std::lock_guard lock(mu_);
    if (!started_) return;
    request_ = Request::stop;
  }
  cv_.notify_all();
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

BridgeExited Bridge::end_generation(proc::Child& child, rpc::Connection& conn, ExitReason reason,
                                    std::string detail) {
  BridgeExited e;
  e.reason = reason;
  e.generation = conn.generation();
  e.detail = std::move(detail);
  proc::LadderHooks hooks{[&] { conn.close_stdin(); }, [&](Deadline d) { return conn.wait_exited(d); }};

  auto fail_waiters = [&] {
    e.stderr_tail = conn.stderr_tail();
    rpc::Reply r;
    r.status = rpc::Reply::Status::closed;
    r.value = e.to_json();
    conn.fail_pending(r);
  };

  if ((reason == ExitReason::stdout_closed || reason == ExitReason::stdin_closed) &&
      conn.wait_exited(Deadline::after(kExitAfterEof))) {
    e.reason = reason = ExitReason::exited;  // it was simply exiting: say so, with its status
  }
  switch (reason) {
    case ExitReason::exited:
      child.reap();
      break;
    case ExitReason::stdout_closed:
    case ExitReason::stdin_closed:
    case ExitReason::hung:
      fail_waiters();  // do not hold callers while the ladder runs
      proc::stop_ladder(child, reason == ExitReason::hung ? base::Duration(0) : opt_.grace, opt_.term_wait, hooks);
      break;
    case ExitReason::stopped:
    case ExitReason::restarted:
    case ExitReason::spawn_failed:
      proc::stop_ladder(child, opt_.grace, opt_.term_wait, hooks);
      break;
  }
  // The dispatcher drains the pipes for at most ~100 ms after the exit; wait for it so the stderr
  // tail is complete.
  conn.wait_exited(Deadline::after(std::chrono::seconds(1)));
  e.status = child.status();
  fail_waiters();  // no-op if already done; otherwise fails them now, with the exit status
  if (opt_.trace) opt_.trace->note(e.generation, describe(e));
  child.clean_up_group(opt_.term_wait);  // grandchildren: after the waiters heard, not before
  return e;
}

void Bridge::run() {
  ::pthread_setname_np(::pthread_self(), "tether-super");
  bool reset_policy = false;
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
    auto spawned = proc::Child::spawn({opt_.argv, opt_.cwd, opt_.extra_env}, fds);
    if (auto* err = std::get_if<proc::SpawnError>(&spawned)) {
      BridgeExited e;
      e.reason = ExitReason::spawn_failed;
      e.generation = gen;
      e.detail = err->what;
      {
        std::lock_guard lock(mu_);
        last_exit_ = e;
        gave_up_ = true;
        give_up_message_ = describe(e);
      }
      if (opt_.trace) opt_.trace->note(gen, describe(e));
      transition(State::failed, {{"error", e.to_json()}});
      auto r = wait_backoff(base::Duration::max());
      if (r == Request::stop) break;
      reset_policy = true;
      continue;
    }
    proc::Child child = std::move(std::get<proc::Child>(spawned));

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
      pid_ = child.pid();
      started_at_ = Clock::now();
    }
    if (opt_.trace) opt_.trace->note(gen, "spawned pid " + std::to_string(child.pid()));
    transition(State::ready, {{"pid", child.pid()}});
    conn->start();  // after "ready": none of this generation's events can precede it

    hb_last_rx_ = Clock::now();
    hb_ping_out_ = false;
    hb_armed_ = false;
    hb_misses_ = 0;
    hb_answered_ = std::make_shared<std::atomic<int>>(0);

    // Watch the generation until it dies or we are asked to end it.
    ExitReason reason = ExitReason::exited;
    Request req = Request::none;
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
      if (auto now = Clock::now(); now - last_stray_reap >= kStrayReapInterval) {
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
    conn.reset();
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
