// Where a bridge's generations come from, and how each one ends: a spawned process, or a
// connection to a `tether serve` socket (BridgeOptions::connect_path). Bridge keeps the lifecycle
// (states, requests, the restart policy, the heartbeat); a source only opens the fds of the next
// generation, says what to tell about it, and ends it. It is not a state machine and holds no lock.
//
// The two differ in what ending means: a process gets the stop ladder and is reaped (its exit
// status is part of what waiters hear); a server's connection is closed from our side, or read to
// its end when the server went first, and there is nothing to signal or reap.
//
// Thread contract: thread-bound to the bridge's supervisor thread (a process source must spawn,
// signal and reap on the thread that outlives the child, as PR_SET_PDEATHSIG requires), except
// connection(), which never changes and may be asked from any thread.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "base/clock.h"
#include "rpc/connection.h"
#include "supervisor/bridge.h"

namespace tether::supervisor {

// Waits at most the given time for a stop(); true when one was requested.
using WaitForStop = std::function<bool(base::Duration)>;

// What open() got: the fds of a running generation, the sentence why there is none, or a stop.
struct Opened {
  enum class Outcome { running, failed, stopped };
  Outcome outcome = Outcome::failed;
  rpc::ConnectionFds fds;  // running
  std::string why;         // failed: BridgeExited::detail
};

class GenerationSource {
 public:
  virtual ~GenerationSource() = default;

  // True when generations are connections to a tether server (BridgeExited::connection).
  virtual bool connection() const = 0;
  // Starts the next generation. A source that may wait (for a server that is still starting) waits
  // through `wait_for_stop`, so a stop() ends the wait.
  virtual Opened open(const WaitForStop& wait_for_stop) = 0;
  // After a failed open(): true when the bridge fails until someone asks again (a command that
  // cannot run, no server to connect to), false when the restart policy applies as for a crash
  // (the server it was connected to went away and may come back).
  virtual bool open_failure_is_final() const = 0;

  // The running generation: its pid (-1 when it has none), its "ready" status payload
  // ({"pid":…} or {"socket":…}) and the trace line for it.
  virtual pid_t pid() const = 0;
  virtual json ready_payload() const = 0;
  virtual std::string ready_note() const = 0;
  // Upkeep while the generation runs; called at least every kStrayReapInterval.
  virtual void tick() {}
  // Ends the running generation for e.reason (e.reason may become `exited` when a process that
  // closed a pipe was simply exiting). Fills e.status and e.stderr_tail, fails every waiter of
  // `conn` with e (before a long stop ladder, so they are not held), notes it in the trace.
  // `stop_grace`: the ladder's grace when the reason is `stopped` (stop(grace)).
  virtual void end(rpc::Connection& conn, BridgeExited& e, base::Duration stop_grace) = 0;
};

// How often a running bridge's exited strays are reaped (see GenerationSource::tick).
inline constexpr auto kStrayReapInterval = std::chrono::seconds(5);

// The source BridgeOptions ask for: a server connection when connect_path is set, else a process.
std::unique_ptr<GenerationSource> make_generation_source(const BridgeOptions& options);

}  // namespace tether::supervisor
