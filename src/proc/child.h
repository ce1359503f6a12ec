// A bridge process: spawned with pipes for stdin, stdout and stderr, in its own process group,
// with default signal state, and killed by the kernel if the spawning thread dies. This layer moves
// bytes and processes only: it knows nothing of JSON.
//
// Thread contract: thread-bound. One thread (the bridge's supervisor thread, which outlives the
// child: PR_SET_PDEATHSIG fires when the *spawning thread* exits) spawns, signals and reaps.
#pragma once

#include <sys/types.h>

#include <functional>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/unique_fd.h"

namespace tether::proc {

struct SpawnOptions {
  std::vector<std::string> argv;             // argv[0] is looked up in PATH unless it has a '/'
  std::string cwd;                           // empty: inherit
  std::vector<std::string> extra_env;        // "NAME=value" entries added to (or replacing) environ
  bool stdin_null = false;    // stdin is /dev/null: no stdin pipe (ChildFds::stdin_w stays empty)
  bool merge_stderr = false;  // stderr is the stdout pipe: one stream (ChildFds::stderr_r stays empty)
  // A new session (setsid) rather than only a new process group: no controlling terminal, so
  // /dev/tty cannot be opened (ENXIO) and nothing can write escapes to ours or stop on SIGTTIN.
  // The session id equals the group id, so group signalling is the same. For the agent's terminals.
  bool new_session = false;
};

struct SpawnError {
  int err = 0;           // errno of the failing step
  std::string what;      // e.g. "exec ./bridge.py: Permission denied"
};

// How a process ended. Exactly one of `code` (normal exit) or `signal` is meaningful.
struct ExitStatus {
  bool signaled = false;
  int code = 0;
  int signal = 0;
  bool core_dumped = false;

  static ExitStatus from_wait_status(int status);
  // "status 3", "killed by SIGSEGV (core dumped)".
  std::string describe() const;
};

// The pipe ends tether keeps; all are O_CLOEXEC and O_NONBLOCK.
struct ChildFds {
  base::UniqueFd stdin_w;
  base::UniqueFd stdout_r;
  base::UniqueFd stderr_r;
  base::UniqueFd pidfd;  // readable once the child has exited (it is not reaped by that)
};

class Child {
 public:
  static std::variant<Child, SpawnError> spawn(const SpawnOptions& options, ChildFds& fds);

  Child(Child&&) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();  // a child that was never reaped is killed (group) and reaped here: no zombies, ever.

  pid_t pid() const { return pid_; }
  pid_t pgid() const { return pgid_; }
  bool reaped() const { return status_.has_value(); }
  const std::optional<ExitStatus>& status() const { return status_; }

  // Sends sig to the whole process group (harmless once it is empty).
  void signal_group(int sig) const;
  // Reaps the leader without blocking; returns its status once it has exited.
  std::optional<ExitStatus> try_reap();
  // Reaps the leader, blocking until it exits. Call after the exit was seen or after SIGKILL.
  ExitStatus reap();
  // The leader's exit status once it has exited, without reaping it (waitid WNOWAIT): while the
  // zombie stands, its pid, and with it the group id, cannot be reused, so what is left of the
  // group can still be signalled safely. reap() or the destructor reaps it later.
  std::optional<ExitStatus> peek_exit() const;
  // Terminates what is left of the process group after the leader has gone (grandchildren that
  // kept running): SIGTERM, up to `term_wait` for the group to empty, then SIGKILL. Reaps those
  // that became our children (tether is a child subreaper).
  void clean_up_group(base::Duration term_wait);

 private:
  Child(pid_t pid) : pid_(pid), pgid_(pid) {}
  bool group_alive() const;
  void reap_group_members();

  pid_t pid_ = -1;   // -1 once moved from
  pid_t pgid_ = -1;
  std::optional<ExitStatus> status_;  // set once reaped; pid_ must not be signalled after that
};

// The stop ladder: close stdin, wait `grace` for the exit, SIGTERM the group, wait `term_wait`,
// SIGKILL the group, then reap. `close_stdin` and `wait_exit` are the caller's (whoever owns the
// fds): wait_exit(deadline) returns true once the child has exited.
struct LadderHooks {
  std::function<void()> close_stdin;
  std::function<bool(base::Deadline)> wait_exit;
};
enum class LadderStep { exited_on_eof, terminated, killed };
LadderStep stop_ladder(Child& child, base::Duration grace, base::Duration term_wait,
                       const LadderHooks& hooks);

// Reaps exited orphans that a bridge left behind outside its process group (they were
// re-parented to us as the subreaper). Runs on every bridge's death path.
void reap_strays();

// Scans /proc for the processes of group `pgid`: reaps those that are zombies and our children
// (grandchildren re-parented to us, the subreaper), except `keep` (a leader kept as a zombie on
// purpose, see peek_exit; waitpid(-pgid) would take it), and returns how many still run. A group
// whose leader is a zombie is never empty for kill(-pgid, 0): this is how to tell.
std::size_t sweep_group(pid_t pgid, pid_t keep);

// Process groups that must not outlive tether (the agent's terminals, acp/terminals.h): a death
// by signal (cli::reraise) stops those still registered, where no destructor runs: SIGTERM and
// SIGCONT, then SIGKILL to what is left after `grace` (so commands may clean up). Thread-safe.
void register_group(pid_t pgid);
void unregister_group(pid_t pgid);
void kill_registered_groups(std::chrono::milliseconds grace = std::chrono::milliseconds(0));

// Makes this process the reaper of its orphaned descendants (PR_SET_CHILD_SUBREAPER), so that a
// bridge's grandchildren can be reaped after it dies. Call once at start-up.
void become_subreaper();

}  // namespace tether::proc
