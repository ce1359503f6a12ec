// What every front-end shares: the common options (parsed once, for every subcommand), exit
// codes, signal handling, the bridge command lookup, and the config file.
#pragma once

#include <chrono>
#include <csignal>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "acp/outcome.h"
#include "acp/setup.h"
#include "base/unique_fd.h"
#include "cli/config.h"
#include "supervisor/bridge.h"

namespace CLI {
class App;
}

namespace tether::cli {

// Exit statuses (DESIGN §7): acp/outcome.h holds the one table; the front-ends name it here.
using acp::kExitConfig;
using acp::kExitDataErr;
using acp::kExitIoErr;
using acp::kExitNotClean;
using acp::kExitOk;
using acp::kExitProtocol;
using acp::kExitSoftware;
using acp::kExitTimeout;
using acp::kExitUnavailable;
using acp::kExitUsage;

// Closing sessions at the end (DESIGN §6): how long the agent gets to answer session/close, and
// how long a bridge whose sessions are all closed gets to exit on stdin EOF before it is
// signalled (it has nothing left to finish; Codex never exits on EOF, Claude does in ~50 ms).
inline constexpr std::chrono::milliseconds kCloseWait{2000};
inline constexpr std::chrono::milliseconds kClosedGrace{250};

struct CommonOptions {
  std::string cwd;                        // --cwd (default: the current directory)
  std::size_t max_restarts = 3;           // --max-restarts
  double restart_window = 60;             // --restart-window SECS
  double restart_delay = 0.5;             // --restart-delay SECS
  double heartbeat = 0;                   // --heartbeat SECS (0 = off)
  int retries = 1;                        // --retries
  double timeout = 0;                     // --timeout SECS (0 = none)
  std::string bridge_stderr = "tail";     // --bridge-stderr tail|pass|FILE
  std::string trace;                      // --trace FILE
  std::string permission;                 // --permission ask|allow|allow-always|deny ("" = the front-end's default)
  bool permission_from_config = false;    // `permission` came from the config file, not the command line
  bool allow_fs = false;                  // --allow-fs
  bool allow_terminal = false;            // --allow-terminal
  std::string color = "auto";             // --color auto|always|never
  bool quiet = false;                     // -q
  int verbose = 0;                        // -v (repeatable)
  std::string config;                     // --config FILE
  std::size_t max_line = std::size_t{64} << 20;  // --max-line BYTES
  // --connect[=NAME|PATH] (talk, prompt, batch): the `tether serve` socket to use instead of a
  // bridge of our own; "" when not given, "default" when given without a value.
  std::string connect;
  // The turn log (cli/turn_log.h): --log FILE, --no-log, and the config's `log` ("" for
  // `log = false`, a path for `log = "PATH"`, nothing for `log = true` or no key).
  std::string log;
  bool no_log = false;
  std::optional<std::string> config_log;

  std::vector<std::string> bridge;        // words after `--`
  // --agent/-A NAME: a preset or a config-file agent, resolved by finish_options into `bridge`
  // (and its env, cwd, settings); "" when the bridge was given as a command.
  std::string agent;
  std::vector<std::string> mcp_specs;     // --mcp NAME=COMMAND [ARGS] (repeatable; session commands)

  // Filled by finish_options.
  std::vector<std::string> bridge_env;    // NAME=VALUE: the agent's `env`, added to the bridge's environment
  std::vector<acp::McpServer> mcp;        // --mcp, then the agent's `mcp`, then the top-level `mcp` (a name once)
  std::string config_path;                // the config file read; "" when none
  // Where each value came from, by config key (and "agent", "bridge", "mcp.NAME", "env.NAME"):
  // "command line", "env TETHER_AGENT", "PATH:LINE:COLUMN", "agent NAME (built-in)"; absent: the default.
  std::map<std::string, std::string> sources;

  // The ACP session (talk, prompt, batch, serve; add_session_options): applied after every session
  // setup, before the first prompt.
  std::string auth;                       // --auth METHOD_ID
  std::string mode;                       // --mode ID
  std::string model;                      // --model ID
  std::vector<std::string> set;           // --set KEY=VALUE (repeatable)
};

// Which of the common options a command offers: only those it reads, so that none is accepted
// and then ignored. The bridge's options (--cwd, --max-restarts, --restart-window,
// --restart-delay, --heartbeat, --bridge-stderr, --trace, --max-line), --agent and --config are
// offered by every command that has a bridge. Config-file keys of options a command does not
// offer are checked and ignored for it: one config file serves every command.
struct CommonOptionSet {
  bool timeout = true;     // --timeout
  bool retries = true;     // --retries
  bool permission = true;  // --permission
  bool allow_fs = true;    // --allow-fs
  bool allow_terminal = true;  // --allow-terminal
  bool color = true;       // --color
  bool quiet = true;       // -q, --quiet
  bool verbose = true;     // -v, --verbose
};

// Adds the common options in `offered` to a subcommand. Each subcommand gets its own copy of the
// struct.
void add_common_options(CLI::App& app, CommonOptions& options, const CommonOptionSet& offered = {});
// Adds --auth, --mode, --model, --set and --mcp (the commands that open ACP sessions).
void add_session_options(CLI::App& app, CommonOptions& options);
// Adds --connect[=NAME|PATH]. It takes a value only after '=' (`tether prompt --connect hello`
// sends "hello" to the default server).
void add_connect_option(CLI::App& app, CommonOptions& options);

// Fills in what the command line left unset from the config file, then resolves the bridge
// (man tether, CONFIGURATION and AGENTS). The agent: the words after `--`, or --agent NAME (both:
// a usage error); else TETHER_AGENT, else TETHER_BRIDGE (split into words, no shell); else the
// command's section's `agent`, else `default_agent`, else the top-level `bridge`; else the built-in
// demo agent. A named agent is an [agents.NAME] table, else a built-in preset. Each option's value:
// the command line, else the agent's table, else the command's section, else the top level, else
// the built-in default. With --connect there is no bridge command (the words after `--` or
// --agent are a usage error).
// On error (bad config file, unknown agent, unreadable cwd, bad option value), a sentence and
// the exit code (64 for the command line's mistakes, 78 for the config file's).
struct SetupError {
  std::string message;
  int exit_code = kExitConfig;
};
std::optional<SetupError> finish_options(CommonOptions& options);

// The config file: `explicit_path` (--config; must exist), else the default one (may be absent:
// an empty ConfigFile). Keys are checked against every command's options (config_keys()).
std::variant<ConfigFile, SetupError> load_config(const std::string& explicit_path);
// The keys each place of the config file takes: the common options' at the top level, and per
// command that has a bridge, the keys of the options it offers.
ConfigKeys config_keys();
// The options struct of a command set up with add_common_options ("prompt"), or null.
CommonOptions* registered_options(const std::string& command);
// Where config_keys() and registered_options() find every command. By default: every options
// struct registered so far (a test's commands). main names the App holding all the commands; or,
// when it set up only the command it runs (main.cpp says why), a function that builds such an App
// on first use (only a config file or `tether config` needs it) and keeps it for the process's life.
void set_command_catalog(const CLI::App* all_commands);
void set_command_catalog_builder(std::function<const CLI::App*()> build);
// Forgets the options that add_common_options registered for the commands of `root`: called
// before `root` and those options are destroyed.
void forget_registered_options(const CLI::App& root);
// The common options a command offers, with their resolved values and sources (after
// finish_options), in the table's order: for `tether config`.
struct ResolvedValue {
  std::string key;
  std::string value;       // "30", "deny", "true"
  bool is_string = false;  // a config file writes it in quotes
  std::string source;      // "default" when nothing set it
};
std::vector<ResolvedValue> resolved_values(const CommonOptions& options);

// The name an agent goes by in the log and in named/continued sessions (issue 15): the --agent
// name when one was given; "demo" for the built-in demo agent; else the program's name
// (`claude-agent-acp` for `npx -y @zed-industries/claude-agent-acp`, `qwen` for
// `node …/qwen/cli.js`: the last path part, without a scope or a version). Only meaningful after
// finish_options. With --connect: "serve:" and the socket as given ("serve:default").
std::string agent_label(const CommonOptions& options);

// The session settings --mode, --model and --set ask for; a --set word that is not KEY=VALUE is a
// SetupError (exit 64).
std::optional<SetupError> session_settings(const CommonOptions& options, acp::SessionSettings& out);

// Bridge options from common options. `auto_restart` is the front-end's choice. With --connect,
// the server's socket (connect_path) instead of a command.
// On error (cannot open --trace or the --bridge-stderr file, a --connect name that is not
// usable) a SetupError.
std::optional<SetupError> make_bridge_options(const CommonOptions& options, bool auto_restart,
                                              supervisor::BridgeOptions& out);

// Blocks SIGINT, SIGTERM, SIGHUP, SIGWINCH (read them from signal_fd()) and ignores SIGPIPE.
// Call in main() before any thread starts.
void block_signals();
// A signalfd for the blocked signals; each front-end polls it in its loop.
base::UniqueFd open_signal_fd();
// Reads one pending signal from the signalfd; 0 if none.
int read_signal(int signal_fd);
// Bridge::start() that a SIGINT, SIGTERM or SIGHUP on `signal_fd` cuts short. start() blocks until
// the first generation runs or fails, which with --connect can be a wait of up to 10 s for a
// server that is still starting; Ctrl-C must end that at once, as it does everywhere else. A
// caught signal stops the bridge and lands in *caught (0 when none came): check it first (the
// BridgeExited then only says "stopped"); a SIGWINCH meanwhile is read and dropped.
std::optional<supervisor::BridgeExited> start_bridge(supervisor::Bridge& bridge, int signal_fd, int* caught);
// Ends the process with `sig` after cleanup (default disposition, unblocked, raised), so the
// parent sees the signal: SIGINT -> 130, SIGPIPE -> 141, SIGTERM -> 143.
[[noreturn]] void reraise(int sig);

// Writes all of `data` to fd 1; false on EPIPE or another error (errno set).
bool write_stdout(std::string_view data);

// Path of the running tether binary (/proc/self/exe).
std::string self_exe();

// "tether: <message>" on stderr; on a terminal the message passes through cli::terminal_text.
void error_line(std::string_view message);

}  // namespace tether::cli
