// The supervised bridge: spawns the bridge process, hands its fds to one rpc::Connection per
// generation, notices its death (exit, stdout EOF, EPIPE, missed heartbeats), fails every waiter
// with a typed BridgeExited, and restarts it within the restart budget. This is the only layer that
// sees both processes (proc/) and messages (rpc/).
//
// Connect mode (BridgeOptions::connect_path): each generation is a connection to a `tether serve`
// socket instead of a process. The server's end of the connection is its death, a reconnect is its
// restart (the same restart policy), and there is nothing to signal or reap. What differs between
// the two modes lives in a GenerationSource (generation_source.h); Bridge is the lifecycle.
//
// Thread contract: thread-safe. Each Bridge owns one supervisor thread, which spawns, signals and
// reaps (it outlives every child, as PR_SET_PDEATHSIG requires); the dispatcher thread of the
// current generation owns the fds.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/event_fd.h"
#include "base/mutex.h"
#include "base/restart_policy.h"
#include "proc/child.h"
#include "rpc/connection.h"
#include "supervisor/heartbeat.h"

namespace tether::supervisor {

using rpc::json;

class GenerationSource;

// Lifecycle states; transitions happen in one place (Bridge::transition).
enum class State { starting, ready, backoff, stopping, exited, failed };
const char* to_string(State s);

// Why a generation ended.
enum class ExitReason {
  exited,          // the process exited (status known)
  stdout_closed,   // it closed stdout but kept running
  stdin_closed,    // EPIPE writing its stdin
  hung,            // missed heartbeats
  spawn_failed,    // could not be started at all
  stopped,         // we stopped it (tether is done with it)
  restarted,       // we stopped it to restart it (manual restart, cancel escalation)
};

// The typed error every waiter of a dead generation receives.
struct BridgeExited {
  ExitReason reason = ExitReason::exited;
  std::optional<proc::ExitStatus> status;
  std::string stderr_tail;
  std::uint64_t generation = 0;
  std::string detail;  // spawn error text (connect mode: the whole sentence), or why we stopped it
  bool connection = false;  // the generation was a connection to a tether server, not a process

  // {"code":"bridge_exited"|"bridge_hung","message":…,"exitStatus":…,"signal":…,"stderrTail":…,
  //  "generation":…}
  json to_json() const;
};

// The one function that writes the sentence users see about why a bridge stopped.
std::string describe(const BridgeExited& e);

struct BridgeOptions {
  std::vector<std::string> argv;
  // Non-empty: connect to the tether server listening on this Unix socket instead of spawning
  // argv (argv, extra_env and the stop ladder's timings other than `grace` are then unused).
  std::string connect_path;
  // Connect mode, first connection only: how long to keep trying while there is no server yet
  // (no socket, or nobody listening): a server started a moment before may still be binding it.
  base::Duration connect_patience{0};
  std::string cwd;
  base::RestartPolicyConfig restart;
  bool auto_restart = true;            // false: a dead bridge stays dead until restart()
  base::Duration heartbeat{0};         // 0: off
  base::Duration grace = std::chrono::seconds(2);
  base::Duration term_wait = std::chrono::seconds(2);
  std::size_t max_line = std::size_t{64} << 20;
  std::size_t queue_capacity = 1024;
  std::shared_ptr<rpc::Trace> trace;
  int stderr_copy_fd = -1;
  std::vector<std::string> extra_env;
  bool (*plain_notification)(std::string_view line) = nullptr;  // see rpc::ConnectionOptions
};

struct BridgeStatus {
  State state = State::starting;
  std::uint64_t generation = 0;
  pid_t pid = -1;  // always -1 in connect mode
  std::size_t restarts_in_window = 0;
  std::size_t restarts_total = 0;
  base::Duration uptime{0};
  std::string stderr_tail;
  rpc::Counters counters;
  std::optional<BridgeExited> last_exit;
};

class Bridge {
 public:
  explicit Bridge(BridgeOptions options);
  ~Bridge();  // stop()
  Bridge(const Bridge&) = delete;
  Bridge& operator=(const Bridge&) = delete;

  // Starts the supervisor thread and waits for the first generation to be running. On failure
  // (cannot spawn, no server), the BridgeExited that says why. While it waits, each time
  // `interrupt_fd` (when >= 0) is readable it asks `interrupted()` (which reads the fd): when that
  // says true, start() stops the bridge and returns it stopped. So a caller waiting for a server
  // that is still starting can let a signalfd cut the wait short without a thread of its own.
  std::optional<BridgeExited> start(int interrupt_fd = -1, const std::function<bool()>& interrupted = {});

  // Requests to the current generation. While no generation runs, they fail at once with the
  // last exit (code "restart_limit" once the budget is spent).
  //
  // call() blocks and its reply does not pass through events(): only the integration tests use it
  // (they send from the thread that also reads the status events, and assert on those in order);
  // front-ends use call_queued(). Never use it on the thread that drains events() while something
  // else fills it (see rpc::Connection::call).
  rpc::Reply call(std::string_view method, json params, base::Deadline deadline);
  // The reply arrives as an rpc::Event::response in events(); `generation` receives the
  // generation it was sent to (0 when none was running: then the failure is in the queue too).
  std::int64_t call_queued(std::string_view method, json params, std::uint64_t* generation);
  // The same, but only to generation `only` (0: whichever runs): while another one runs, the reply
  // is a closed one at once, as when none runs. For a caller that must not reach a generation
  // before it has set it up (tether serve: nothing before initialize).
  std::int64_t call_queued_to(std::uint64_t only, std::string_view method, json params,
                              std::uint64_t* generation);
  // Either of the above with its params written already (rpc::RawParams).
  std::int64_t call_queued_raw(std::string_view method, const rpc::RawParams& params, std::uint64_t* generation,
                               std::uint64_t only = 0);
  bool cancel(std::uint64_t generation, std::int64_t id);
  // `only`: send it only if that generation runs (0: whichever runs).
  void notify(std::string_view method, json params, std::uint64_t only = 0);
  // Answers a request of `generation`; dropped when that generation is gone.
  void respond(std::uint64_t generation, const json& id, json result);
  void respond_error(std::uint64_t generation, const json& id, int code, std::string_view message);

  // Every event of every generation in wire order, and status events
  // ({"state":…,"generation":…,"pid"?,"error"?,"message"?}) from the supervisor.
  const std::shared_ptr<rpc::EventQueue>& events() const { return events_; }
  BridgeStatus status() const;
  // status().state and status().counters, without the rest (a copy of the stderr tail): for a
  // caller that asks every turn.
  State state() const;
  rpc::Counters counters() const;

  // Manual restart: forgets the restart history, stops the current generation, starts a new one.
  void restart();
  // Ends generation `generation` through the stop ladder as if it had died (`why` is told to
  // waiters); the restart policy then applies as for a crash. Ignored when that generation is no
  // longer the running one (a late recycle never ends its successor).
  void recycle(std::uint64_t generation, std::string why);
  // The same for whatever generation runs now.
  void recycle(std::string why);
  // Stops for good: the stop ladder, no restart. Idempotent. Safe from another thread while
  // start() runs (start() then returns a stopped BridgeExited); before start(), start() will not
  // start at all.
  void stop();
  // The same, but after closing the bridge's stdin it waits at most `grace` (not
  // BridgeOptions::grace) for the process to exit before the rest of the stop ladder: for a caller
  // that closed every session it opened, so the agent has nothing left to finish (some agents,
  // Codex among them, never exit on stdin EOF).
  void stop(base::Duration grace);

 private:
  enum class Request { none, restart, recycle, stop };

  // What the supervisor does once a generation has exited: stop, start the next one, or start it
  // with the restart history forgotten (a manual restart, or after a wait for one).
  enum class Next { stop, again, fresh };

  void run();
  // The next generation's number and "starting", in one step; spends the requests the previous
  // generation was asked for.
  std::uint64_t begin_generation();
  // A generation that could not start: the BridgeExited that says why.
  BridgeExited not_started(std::uint64_t gen, std::string why) const;
  void transition(State to, json extra = json::object());
  // The status event for a state already set (and the wake-up of whoever waits on it).
  void publish(State to, std::uint64_t generation, json extra = json::object());
  // Runs one started generation until it dies or is asked to end; `req` receives the request that
  // ended it (none: it died).
  BridgeExited watch_generation(std::uint64_t gen, rpc::ConnectionFds fds, Request& req);
  // Waits until the generation dies or a request ends it, ticking the heartbeat and the source.
  ExitReason wait_for_end(std::uint64_t gen, rpc::Connection& conn, Request& req, std::string& detail);
  BridgeExited end_generation(rpc::Connection& conn, ExitReason reason, std::string detail);
  // After an exit: the restart policy (backoff, or giving up).
  Next after_exit(const BridgeExited& e, Request req);
  // Failed or waiting to be asked: waits for restart() (fresh) or stop().
  Next park();
  std::optional<Request> wait_backoff(base::Duration delay);
  rpc::Reply closed_reply() const;
  // What start() returns when a stop() ended it before any generation ran. Needs mu_.
  BridgeExited stopped_exit() const REQUIRES(mu_);
  // start()'s answer once the first generation settled; nothing while it has not.
  std::optional<std::optional<BridgeExited>> start_result() const REQUIRES(mu_);

  const BridgeOptions opt_;
  const std::shared_ptr<rpc::EventQueue> events_;
  // Where generations come from. Supervisor thread only (after construction).
  const std::unique_ptr<GenerationSource> source_;
  // Readable after each status change: start() polls it together with its interrupt fd.
  base::EventFd settled_;

  mutable base::Mutex mu_;
  std::condition_variable cv_;
  State state_ GUARDED_BY(mu_) = State::starting;
  Request request_ GUARDED_BY(mu_) = Request::none;
  std::string recycle_why_ GUARDED_BY(mu_);
  std::uint64_t recycle_gen_ GUARDED_BY(mu_) = 0;
  bool started_ GUARDED_BY(mu_) = false;
  bool conn_changed_ GUARDED_BY(mu_) = false;  // the dispatcher reported a death or exit
  std::shared_ptr<rpc::Connection> conn_ GUARDED_BY(mu_);
  std::uint64_t generation_ GUARDED_BY(mu_) = 0;
  pid_t pid_ GUARDED_BY(mu_) = -1;
  base::TimePoint started_at_ GUARDED_BY(mu_);
  base::RestartPolicy policy_ GUARDED_BY(mu_);
  std::size_t restarts_total_ GUARDED_BY(mu_) = 0;
  std::optional<BridgeExited> last_exit_ GUARDED_BY(mu_);
  std::string last_stderr_ GUARDED_BY(mu_);
  bool gave_up_ GUARDED_BY(mu_) = false;
  std::string give_up_message_ GUARDED_BY(mu_);
  std::optional<base::Duration> stop_grace_ GUARDED_BY(mu_);  // stop(grace): the grace to use

  Heartbeat heartbeat_;  // supervisor thread only

  std::mutex join_mu_;    // serializes joining thread_
  std::thread thread_;    // written once by start() under mu_; joined by stop() under join_mu_
};

// The sentence for giving up: names the count, the window, the last cause and the stderr tail.
std::string give_up_message(std::size_t restarts, base::Duration window, const BridgeExited& last);

}  // namespace tether::supervisor
