// How a front-end gets from its options to a running bridge and an ACP session: the one launch
// path of `prompt`, `talk` and `batch` (DESIGN §7), in three named steps:
//
//   plan_launch()   options -> LaunchPlan: the config file and bridge command (finish_options),
//                   the permission policy and the colour (the two rules below, for every
//                   command), the session settings, the bridge and ACP client options;
//   launch_bridge() plan -> a started supervised Bridge (a signal cuts the start short);
//   make_session()  bridge + plan -> the AcpSession on it (not opened: opening is where each
//                   front-end shows its own waiting notice and reports failure its own way).
//
// launch() runs the last two for the commands with one bridge (prompt, talk); batch, which starts
// one bridge per --jobs lazily and its sessions at each worker's first item, calls the steps.
// Nothing here prints except the permission rule's fallback warning; each command reports a
// SetupError or a failed start itself (their sentences are part of each command's contract).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "acp/permission.h"
#include "acp/session.h"
#include "cli/common.h"
#include "supervisor/bridge.h"

namespace tether::cli {

// The colour rule, for every command: `--color always` or `never` decides; with `auto`, no colour
// when NO_COLOR is set to anything non-empty or TERM is "dumb", else colour when the output is a
// terminal. Pure: `no_color` and `term` are the environment's values (null when unset).
bool color_rule(std::string_view option, const char* no_color, const char* term, bool is_terminal);
// The rule applied to this process: its environment, and whether `fd` is a terminal.
bool use_color(std::string_view option, int fd);

// Who can answer a permission question in a command.
enum class Asker {
  nobody,             // prompt, batch: they run unattended; `ask` is a mistake in the command line
  person_at_terminal, // talk: the person, when stdin and stdout are terminals
};

struct PermissionChoice {
  acp::PermissionPolicy policy = acp::PermissionPolicy::deny;
  std::string warning;  // non-empty: `ask` was asked for but nobody is there (shown unless -q)
};

// The --permission rule, for every command. No word given: `ask` when a person can answer
// (`asker` is person_at_terminal and `at_terminal`), else `deny`. `ask` given: kept when a person
// can answer; a command whose asker is nobody refuses it (a SetupError, exit 64: nobody will ever
// be there); talk without a terminal falls back to `deny` with a warning (the same script runs
// at a terminal and from a pipe). Any other word is the policy it names. An `ask` from the config
// file (which serves every command) never refuses: where nobody can answer it is `deny`, silently.
enum class Source { command_line, config_file };
std::variant<PermissionChoice, SetupError> permission_rule(std::string_view option, std::string_view command,
                                                           Asker asker, bool at_terminal,
                                                           Source source = Source::command_line);

// What differs between the commands that launch a bridge.
struct LaunchSpec {
  std::string_view command;  // "prompt", "talk", "batch": named in messages
  Asker asker = Asker::nobody;
  bool at_terminal = false;  // a person is at stdin and stdout (talk's interactive mode)
  bool auto_restart = true;  // the supervisor restarts a dead bridge
};

struct LaunchPlan {
  supervisor::BridgeOptions bridge;
  // cwd, permission, allow_fs, retries, client version, via_server, auth and settings from the
  // options; the command adjusts what is its own (batch's retries, prompt's setup timeout, talk's
  // attach_main and ask_auth) before make_session().
  acp::ClientOptions client;
  bool color = false;  // the colour rule for stderr, where every command's dim and coloured lines go
};

// options -> plan. Finishes `options` (finish_options) on the way. Prints the permission rule's
// warning (unless -q); any other problem is a SetupError for the command to report.
std::variant<LaunchPlan, SetupError> plan_launch(CommonOptions& options, const LaunchSpec& spec);

struct StartedBridge {
  std::unique_ptr<supervisor::Bridge> bridge;  // always set; stopped when `failed` or `caught`
  std::optional<supervisor::BridgeExited> failed;  // the first generation did not start
  int caught = 0;  // SIGINT, SIGTERM or SIGHUP on the signal fd cut the start short (check first)
};

// Starts a bridge from the plan's options (start_bridge: a signal on `signal_fd` stops it).
StartedBridge launch_bridge(const LaunchPlan& plan, int signal_fd);

// The ACP session on `bridge` with the plan's client options; it sends nothing until opened.
std::unique_ptr<acp::AcpSession> make_session(supervisor::Bridge& bridge, const LaunchPlan& plan);

// Bridge and session together. Destroyed in the right order: the session first, then the bridge
// (stopped by its destructor).
struct Launched {
  StartedBridge started;
  std::unique_ptr<acp::AcpSession> session;  // set when the bridge started
};

// launch_bridge(), then make_session() when it started.
Launched launch(const LaunchPlan& plan, int signal_fd);

}  // namespace tether::cli
