// A command an agent runs through its client (ACP terminals, acp/terminals.h), at the process
// level: spawned in its own process group with stdin on /dev/null and stdout and stderr merged
// into one pipe, its output kept up to a byte limit (the oldest bytes go first, the kept text
// starts on a UTF-8 character boundary), its leader's exit status, and a stop that reaches the
// whole group: SIGTERM (and SIGCONT, so a stopped process sees it), then SIGKILL when the grace
// period has passed, then every member reaped. Nothing here blocks except the destructor (bounded).
//
// The leader is kept as a zombie after it exits (Child::peek_exit) until the group is gone: its
// pid, and so the group id, cannot be reused meanwhile, so signalling the group never reaches a
// stranger. The group is registered (proc::register_group) for as long as it may have members,
// so that a death by signal kills it too.
//
// It knows nothing of JSON or of the agent: ids, requests and answers are acp/terminals.h's.
//
// Thread contract: thread-bound (the session's thread spawns, reads, signals and reaps).
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "base/clock.h"
#include "base/unique_fd.h"
#include "proc/child.h"

namespace tether::proc {

class TerminalProcess {
 public:
  // `spawn`'s stdin_null and merge_stderr are set here. `output_limit` bytes are kept.
  static std::variant<std::unique_ptr<TerminalProcess>, SpawnError> start(SpawnOptions spawn, std::size_t output_limit);
  ~TerminalProcess();  // whatever still runs in the group is SIGKILLed; every member reaped
  TerminalProcess(const TerminalProcess&) = delete;
  TerminalProcess& operator=(const TerminalProcess&) = delete;

  pid_t pid() const { return pid_; }
  // Poll these for readability; -1 once done with (the output at EOF, the exit seen).
  int output_fd() const { return out_.get(); }
  int exit_fd() const { return pidfd_.get(); }

  // Reads what output is ready (at most `budget` bytes: a flood must not hold up the session) and
  // notes the leader's exit. Returns the bytes read, for display. Never blocks.
  std::string pump(std::size_t budget);

  // The kept output: at most the limit, starting on a character boundary.
  std::string_view output() const;
  bool truncated() const { return truncated_; }
  // The leader's exit, once seen (pump).
  const std::optional<ExitStatus>& exit_status() const { return status_; }

  // Starts the stop of the whole group: SIGTERM and SIGCONT now, SIGKILL `grace` later (tick()).
  // Again later: nothing more.
  void stop(base::Duration grace);
  bool stopping() const { return stopping_; }
  // Sends the SIGKILL when due, reaps what died. True once the group is gone and the leader
  // reaped (after stop(): then nothing is left of the command). Never blocks.
  bool tick();
  // When tick() wants to run next (never while nothing is being stopped).
  base::Deadline next_deadline() const;

 private:
  TerminalProcess(Child child, base::UniqueFd out, base::UniqueFd pidfd, std::size_t limit)
      : pid_(child.pid()), child_(std::move(child)), out_(std::move(out)), pidfd_(std::move(pidfd)), limit_(limit) {}
  void keep(std::string_view bytes);
  void note_exit();
  void finish();

  const pid_t pid_;            // the leader's pid, which is also the group's id
  // Dropped once the group is gone and the leader reaped (finish): from then on its ids may be
  // reused, and Child would still wait on its group id when destroyed.
  std::optional<Child> child_;
  base::UniqueFd out_;    // the merged stdout/stderr pipe; closed at EOF
  base::UniqueFd pidfd_;  // closed once the exit was seen
  std::size_t limit_;
  std::string buf_;       // the output; only its last limit_ bytes count (see output())
  bool truncated_ = false;
  std::optional<ExitStatus> status_;
  bool stopping_ = false;
  bool killed_ = false;
  bool done_ = false;     // the group is gone and the leader reaped; unregistered
  base::TimePoint kill_at_{};
  base::TimePoint give_up_at_{};
};

}  // namespace tether::proc
