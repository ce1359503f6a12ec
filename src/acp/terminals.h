// The terminal capability (`--allow-terminal`): the agent's terminal/create, terminal/output,
// terminal/wait_for_exit, terminal/kill and terminal/release, on proc::TerminalProcess.
//
// What the spec (ACP v1, client terminals; schema CreateTerminalRequest, TerminalOutputResponse,
// WaitForTerminalExitResponse, KillTerminalCommandRequest, ReleaseTerminalRequest) asks, and what
// tether decides where it is silent:
//   terminal/create {sessionId, command, args?, env?: [{name, value}], cwd?, outputByteLimit?}
//       -> {terminalId}, at once, while the command runs. With `args` the command is executed
//       directly (looked up in PATH); without (or with none), `command` is a shell command line,
//       run by /bin/sh -c, since agents send whole lines there. `cwd` (absolute, or relative to
//       the session's cwd) must resolve (realpath) to the session's cwd or below it: anything
//       else is refused (-32602). This confines where commands start, not what they do (a
//       command can cd anywhere): the agent's command is the user's to allow. `env` entries are
//       added to tether's environment. stdin is /dev/null; stdout and stderr are one stream.
//       outputByteLimit: the bytes kept (default kDefaultOutputLimit, at most kMaxOutputLimit).
//       At most kMaxTerminals terminals at once (released ones count until they are gone, ones
//       whose command exited do not):
//       beyond, -32603 and nothing runs.
//   terminal/output {sessionId, terminalId} -> {output, truncated, exitStatus?}: the output so
//       far (-32603 "busy" past kOutputAnswerBudget, see there); past the limit the oldest bytes are dropped and the kept text starts on a character
//       boundary (the spec: truncate from the beginning, at a character boundary); `truncated`
//       says bytes were dropped; exitStatus {exitCode, signal} once the command has exited.
//   terminal/wait_for_exit {sessionId, terminalId} -> {exitCode, signal}: answered when the
//       command exits (the request stays pending until then). exitCode is null when a signal
//       ended it; signal is its name ("SIGTERM") or null.
//   terminal/kill {sessionId, terminalId} -> {}: stops the command's whole process group
//       (SIGTERM, then SIGKILL after kKillGrace); the terminal stays valid for output and
//       wait_for_exit.
//   terminal/release {sessionId, terminalId} -> {}: stops it as kill does if anything still
//       runs, and forgets the id (a wait_for_exit still pending is answered when it exits).
// "The command" is the process tether started; its exit status is that process's. Processes it
// left behind in its group are stopped with it by kill and release, and at the end: when the
// session ends (close, a new session) every terminal is released; when the agent's process dies
// its terminals are released and their pending requests dropped (they cannot be answered); when
// tether exits they are stopped, and a death by signal stops them (SIGTERM, SIGKILL after 150 ms:
// proc::kill_registered_groups).
// Unknown ids, or another session's, are -32602.
//
// Thread contract: thread-bound (the session's thread; SessionCore owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.h"
#include "base/unique_fd.h"
#include "proc/child.h"

namespace tether::proc {
class TerminalProcess;
}

namespace tether::acp {

inline constexpr std::size_t kMaxTerminals = 16;
inline constexpr std::size_t kDefaultOutputLimit = std::size_t{1} << 20;  // 1 MiB
// 4 MiB: an answer carries the whole kept output, and a control byte takes 6 bytes of JSON.
inline constexpr std::size_t kMaxOutputLimit = std::size_t{4} << 20;
// At most this many bytes (as JSON) of terminal/output answers per pump(), and none while more
// than rpc::kOutboundLimit bytes wait for the agent's stdin: an agent that asks without reading
// its answers gets -32603 ("busy") instead of tether's memory. One answer always fits.
inline constexpr std::size_t kOutputAnswerBudget = std::size_t{8} << 20;
// Pending terminal/wait_for_exit requests per terminal; beyond, -32603.
inline constexpr std::size_t kMaxWaits = 64;
inline constexpr auto kKillGrace = std::chrono::milliseconds(500);

// What a front-end may show of the agent's terminals (cli/terminal_view.h), told as it happens,
// on the session's thread. Everything in it is the agent's (or its command's) text: hostile.
struct TerminalActivity {
  enum class Kind { started, output, exited, refused };
  Kind kind = Kind::started;
  std::string terminal_id;
  std::string command;  // started, refused: the command as the agent gave it, args joined by spaces
  std::string text;     // output: bytes as they came; refused: why
  std::optional<proc::ExitStatus> status;  // exited
};
using TerminalObserver = std::function<void(const TerminalActivity&)>;

// An answer to one of the agent's terminal requests, for the session to send.
struct TerminalAnswer {
  std::uint64_t generation = 0;
  nlohmann::json id;
  nlohmann::json result;  // when error_code is 0
  int error_code = 0;
  std::string error_message;
};

class Terminals {
 public:
  // `root`: the session's cwd. `wake_fd`: an fd that fd() should also report (the bridge's event
  // queue), so that one fd tells the session's caller that something is to be done.
  // `refuse_create`: the permission policy is deny (terminal/create is refused).
  Terminals(const std::string& root, int wake_fd, bool refuse_create, TerminalObserver observer);
  ~Terminals();  // every terminal stopped (SIGTERM, SIGKILL after kKillGrace) and reaped: blocks that long at most
  Terminals(const Terminals&) = delete;
  Terminals& operator=(const Terminals&) = delete;

  // Readable while wake_fd is, or a terminal has output or has exited.
  int fd() const { return epoll_.get(); }
  // When pump() must run even if fd() stays quiet (a stop under way).
  base::Deadline next_deadline() const;

  // A terminal/* request of `session_id` (the session's current id), from bridge generation `gen`.
  void request(std::uint64_t gen, const nlohmann::json& id, const std::string& method,
               const nlohmann::json& params, const std::string& session_id);
  // Reads output, notes exits, answers waits, carries stops on. Never blocks.
  void pump();
  // A new round of the session's event pump: `backlog` bytes still wait for the agent's stdin
  // (rpc::Counters::outbound_backlog). Resets the kOutputAnswerBudget count.
  void new_round(std::size_t backlog) {
    backlog_ = backlog;
    answered_bytes_ = 0;
  }
  std::vector<TerminalAnswer> take_answers() { return std::exchange(answers_, {}); }

  // The session ended: every terminal released (stopped). Pending waits are answered as their
  // commands exit.
  void release_all();
  // Bridge generation `gen` died: its terminals released, their pending requests dropped.
  void drop_generation(std::uint64_t gen);

  // The output kept for a live terminal of the session (for a renderer of `terminal` content),
  // or nothing.
  std::optional<std::string> output_of(const std::string& terminal_id) const;

 private:
  struct Entry;
  Entry* find(const nlohmann::json& params, const std::string& session_id, const nlohmann::json& id, std::uint64_t gen);
  void create(std::uint64_t gen, const nlohmann::json& id, const nlohmann::json& params, const std::string& session_id);
  void answer(std::uint64_t gen, const nlohmann::json& id, nlohmann::json result);
  void fail(std::uint64_t gen, const nlohmann::json& id, int code, std::string message);
  void watch(Entry& e);
  void pump_one(Entry& e);
  void release(std::map<std::string, std::unique_ptr<Entry>>::iterator it);
  std::size_t live_count() const;

  std::string root_;  // realpath of the session's cwd ("" when it has none: every create refused)
  bool refuse_create_;
  TerminalObserver observer_;
  base::UniqueFd epoll_;
  std::uint64_t next_id_ = 0;
  std::map<std::string, std::unique_ptr<Entry>> live_;  // by terminal id
  std::vector<std::unique_ptr<Entry>> released_;        // being stopped; gone once their group is
  std::vector<TerminalAnswer> answers_;
  std::size_t backlog_ = 0;         // see new_round
  std::size_t answered_bytes_ = 0;  // JSON bytes of terminal/output answers this round
};

}  // namespace tether::acp
