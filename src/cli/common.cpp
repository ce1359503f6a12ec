#include "cli/common.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <variant>

#include "acp/update.h"
#include "cli/common_table.h"
#include "cli/option_values.h"
#include "cli/terminal_text.h"
#include "cli/turn_log.h"
#include "cli/usage.h"
#include "proc/child.h"
#include "rpc/trace.h"
#include "serve/socket_path.h"

namespace tether::cli {

namespace detail {

std::map<const CommonOptions*, Registered>& option_registry() {
  static std::map<const CommonOptions*, Registered> registry;
  return registry;
}

}  // namespace detail

namespace {

using detail::CommonOption;
using detail::option_registry;

// Files opened for --bridge-stderr FILE live as long as the process.
std::vector<base::UniqueFd>& kept_fds() {
  static std::vector<base::UniqueFd> fds;
  return fds;
}

const char* const kBridgeGroup = "Bridge and supervision";
const char* const kAgentGroup = "Agent (ACP commands)";
const char* const kOutputGroup = "Output";

}  // namespace

const std::vector<CommonOption>& detail::common_option_table() {
  using O = CommonOptions;
  using S = CommonOptionSet;
  static const std::vector<CommonOption> table = {
      {"--cwd", "cwd", &O::cwd, [] { return dir_value(); }, kBridgeGroup,
       "Working directory of the bridge and the ACP session (default: the current directory)"},
      {"--max-restarts", "max_restarts", &O::max_restarts, [] { return count_value(0, 1000000); }, kBridgeGroup,
       "Restarts allowed within the restart window", nullptr, false, true},
      {"--restart-window", "restart_window", &O::restart_window, [] { return seconds_value(false); }, kBridgeGroup,
       "Sliding window for --max-restarts, in seconds", nullptr, false, true},
      {"--restart-delay", "restart_delay", &O::restart_delay, [] { return seconds_value(); }, kBridgeGroup,
       "Delay before a restart, doubled per restart already in the window, capped at 30 s", nullptr, false, true},
      {"--heartbeat", "heartbeat", &O::heartbeat, [] { return seconds_value(); }, kBridgeGroup,
       "Ping an idle bridge every SECS ($/ping); 3 missed answers mean it is hung; 0 turns it off", nullptr, false, true},
      {"--retries", "retries", &O::retries, [] { return count_value(0, 1000000); }, kBridgeGroup,
       "Retries of a turn interrupted by a bridge death", &S::retries, false, true},
      {"--timeout", "timeout", &O::timeout, [] { return seconds_value(); }, kBridgeGroup,
       "Per request / turn timeout in seconds; 0 waits forever", &S::timeout, false, true},
      {"--bridge-stderr", "bridge_stderr", &O::bridge_stderr,
       [] { return choice_value({"tail", "pass"}, "FILE", "a file name"); }, kBridgeGroup,
       "The bridge's stderr: tail (keep the last 4 KiB, shown on failure), pass (copy to ours), or a FILE to append to",
       nullptr, false, true},
      {"--trace", "trace", &O::trace, [] { return file_value(); }, kBridgeGroup,
       "Write every frame both ways, timestamped, to FILE"},
      {"--max-line", "max_line", &O::max_line, [] { return bytes_value(); }, kBridgeGroup,
       "Longest line accepted from the bridge, in bytes; longer lines are dropped and counted", nullptr, false, true},
      {"--permission", "permission", &O::permission,
       [] { return choice_value({"ask", "allow", "allow-always", "deny"}); }, kAgentGroup,
       "Answer to the agent's permission requests: ask, allow (once), allow-always (lets the agent keep a lasting "
       "rule) or deny",
       &S::permission},
      {"--allow-fs", "allow_fs", &O::allow_fs, {}, kAgentGroup, "Serve the agent's file reads and writes inside --cwd",
       &S::allow_fs},
      {"--allow-terminal", "allow_terminal", &O::allow_terminal, {}, kAgentGroup,
       "Run the commands the agent asks to run (ACP terminals), each in its own process group, starting inside --cwd",
       &S::allow_terminal},
      {"--auth", "auth", &O::auth, [] { return custom_value("METHOD_ID", "an authentication method id", [](std::string_view) { return true; }); },
       kAgentGroup,
       "When the agent asks for authentication, use its method METHOD_ID (default: an env_var method whose variables "
       "are set; never a browser login)",
       nullptr, true},
      {"--mode", "mode", &O::mode, [] { return custom_value("ID", "a mode id", [](std::string_view) { return true; }); },
       kAgentGroup, "Set the session's mode (session/set_mode) before the first prompt", nullptr, true},
      {"--model", "model", &O::model, [] { return custom_value("ID", "a model id", [](std::string_view) { return true; }); },
       kAgentGroup, "Set the session's model (the agent's model config option)", nullptr, true},
      {"--color", "color", &O::color, [] { return choice_value({"auto", "always", "never"}); }, kOutputGroup,
       "Colour: auto, always or never (auto: none with NO_COLOR or TERM=dumb, or when stderr is not a terminal)",
       &S::color, false, true},
      {"-q,--quiet", "quiet", &O::quiet, {}, kOutputGroup, "Print only answers and errors", &S::quiet},
  };
  return table;
}

std::optional<std::string> detail::apply_value(const CommonOption& entry, const ConfigValue& v, CommonOptions& o) {
  using Kind = ConfigValue::Kind;
  if (auto* flag = std::get_if<bool CommonOptions::*>(&entry.field)) {
    if (v.kind == Kind::boolean) {
      o.*(*flag) = v.boolean;
      return std::nullopt;
    }
    return "expected true or false, got " + config_text(v);
  }
  ValueKind kind = entry.kind();
  const bool text = std::holds_alternative<std::string CommonOptions::*>(entry.field);
  const bool number = v.kind == Kind::integer || v.kind == Kind::floating;
  // Strings take quotes, numbers do not: `timeout = "5"` is a mistake worth naming.
  if (text ? v.kind != Kind::string : !number)
    return "expected " + kind.expected + ", got " + config_text(v) +
           (text && number ? " (strings need quotes)" : v.kind == Kind::string ? " (numbers take no quotes)" : "");
  std::string value = text ? v.text : config_text(v);
  // A directory in the config file may start with ~/ (the file is not read by a shell).
  if (std::string(entry.key) == "cwd" && value.starts_with("~/"))
    if (const char* home = std::getenv("HOME"); home && *home) value = home + value.substr(1);
  if (auto err = value_error(kind, value)) return err;
  std::visit(
      [&](auto member) {
        using T = std::remove_reference_t<decltype(o.*member)>;
        if constexpr (std::is_same_v<T, std::string>) o.*member = value;
        else if constexpr (std::is_same_v<T, double>) o.*member = std::strtod(value.c_str(), nullptr);
        else if constexpr (std::is_same_v<T, bool>) o.*member = value == "true";
        else o.*member = static_cast<T>(std::strtoull(value.c_str(), nullptr, 10));
      },
      entry.field);
  return std::nullopt;
}

namespace {

using detail::common_option_table;

// Adds the table's entries for which `pick` says yes.
void add_from_table(CLI::App& app, CommonOptions& o, const std::function<bool(const CommonOption&)>& pick) {
  auto& reg = option_registry()[&o];
  reg.app = &app;
  for (const auto& entry : common_option_table()) {
    if (!pick(entry)) continue;
    CLI::Option* opt = std::visit(
        [&](auto member) -> CLI::Option* {
          if constexpr (std::is_same_v<decltype(member), bool CommonOptions::*>)
            return app.add_flag(entry.names, o.*member, entry.help);
          else
            return expects(app.add_option(entry.names, o.*member, entry.help), entry.kind());
        },
        entry.field);
    if (entry.show_default) opt->capture_default_str();
    opt->group(entry.group);
    reg.options[entry.key] = opt;
  }
}

}  // namespace

void add_common_options(CLI::App& app, CommonOptions& o, const CommonOptionSet& offered) {
  // CLI11 2.1's usage line cannot show it, so every command's help ends with it.
  app.footer(app.get_footer() + (app.get_footer().empty() ? "" : "\n") + "The bridge: tether " + app.get_name() +
             " [OPTIONS] -- BRIDGE [ARGS...]\n"
             "Everything after -- is the bridge's command line, never tether's options. Without it:\n"
             "--agent NAME, else $TETHER_AGENT or $TETHER_BRIDGE, else the config file's agent, else the\n"
             "built-in demo agent. `tether agents` lists the agents; `tether config` what is in effect.");
  add_from_table(app, o, [&](const CommonOption& e) {
    return !e.session && (e.offered_if == nullptr || offered.*(e.offered_if));
  });
  option_registry()[&o].options["max_line"]->default_str("67108864 = 64 MiB");
  if (offered.verbose)
    option_registry()[&o].verbose =
        app.add_flag("-v,--verbose", o.verbose, "More detail on stderr (repeatable)")->group(kOutputGroup);
  app.add_option("-A,--agent", o.agent,
                 "The agent to run: a built-in preset (claude, codex, gemini, qwen, opencode, demo) or an "
                 "[agents.NAME] of the config file (`tether agents` lists them)")
      ->type_name("NAME")
      ->group(kBridgeGroup);
  expects(app.add_option("--config", o.config, "Config file (default: $XDG_CONFIG_HOME/tether/config.toml)"), file_value())
      ->group(kOutputGroup);
}

std::optional<SetupError> session_settings(const CommonOptions& o, acp::SessionSettings& out) {
  out.mode = o.mode;
  out.model = o.model;
  out.set.clear();
  for (const auto& kv : o.set) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0)
      return SetupError{"--set " + kv + ": expected KEY=VALUE (an option id of the agent and its value)", kExitUsage};
    out.set.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return std::nullopt;
}

void add_session_options(CLI::App& app, CommonOptions& o) {
  add_from_table(app, o, [](const CommonOption& e) { return e.session; });
  expects(app.add_option("--set", o.set, "Set one of the agent's session config options (repeatable)"),
          custom_value("KEY=VALUE", "KEY=VALUE (an option id of the agent and its value)",
                       [](std::string_view kv) { return kv.find('=') != std::string_view::npos && kv[0] != '='; }))
      ->allow_extra_args(false)
      ->group(kAgentGroup);
  expects(app.add_option("--mcp", o.mcp_specs,
                         "Give the agent an MCP server for the session (repeatable): NAME=COMMAND [ARGS], split "
                         "into words without a shell, or NAME=URL for an HTTP server"),
          custom_value("NAME=COMMAND", "NAME=COMMAND [ARGS] (or NAME=URL)",
                       [](std::string_view v) { return v.find('=') != std::string_view::npos && v[0] != '='; }))
      ->allow_extra_args(false)
      ->group(kAgentGroup);
}

void add_connect_option(CLI::App& app, CommonOptions& o) {
  // A flag whose value comes only after '=': "--connect hello" leaves "hello" to the positionals.
  app.add_flag("--connect{default}", o.connect,
               "Use the bridge of a running `tether serve` instead of starting one: --connect (the server "
               "named default), --connect=NAME or --connect=PATH (its socket). No bridge command then")
      ->option_text("[=NAME|PATH]")
      ->group(kBridgeGroup);
}

std::optional<SetupError> make_bridge_options(const CommonOptions& o, bool auto_restart,
                                              supervisor::BridgeOptions& out) {
  out.argv = o.bridge;
  out.cwd = o.cwd;
  out.extra_env = o.bridge_env;
  if (!o.connect.empty()) {
    auto where = serve::resolve_socket(o.connect);
    if (auto* err = std::get_if<std::string>(&where)) return SetupError{"--connect: " + *err, kExitUsage};
    const auto& loc = std::get<serve::SocketLocation>(where);
    // A NAME's directory must be ours alone, for the client as for the server: a socket in a
    // directory someone else controls may be theirs, listening in on the conversation.
    if (auto err = serve::check_private_dir(loc)) return SetupError{"--connect: " + *err, kExitConfig};
    out.connect_path = loc.path;
    // `tether serve & tether prompt --connect`: the server may not have bound its socket yet. A
    // moment's patience for that, longer when a server holds the name's lock (it is starting).
    out.connect_patience = serve::server_holds_lock(loc) ? std::chrono::seconds(10) : std::chrono::seconds(1);
  }
  out.restart.max_restarts = o.max_restarts;
  out.restart.window = base::seconds(o.restart_window);
  out.restart.base_delay = base::seconds(o.restart_delay);
  out.auto_restart = auto_restart;
  out.heartbeat = base::seconds(o.heartbeat);
  out.max_line = o.max_line;
  // A streamed answer's chunks, the most common line, skip the dispatcher's scan. It says only
  // that a line is a well-formed notification, so it is right for any JSON-RPC peer.
  out.plain_notification = acp::is_common_chunk_line;
  if (!o.trace.empty()) {
    std::string err;
    out.trace = rpc::Trace::open(o.trace, err);
    if (!out.trace) return SetupError{err, kExitIoErr};
  }
  if (o.bridge_stderr == "pass") {
    // The dispatcher must never block on this copy. A terminal or pipe gets its own non-blocking
    // open file description (fd 2's stays as the shell made it), so a stalled reader costs bytes of
    // the copy, never the bridge; a regular file never blocks and keeps its shared offset.
    struct stat st;
    if (::fstat(STDERR_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
      out.stderr_copy_fd = STDERR_FILENO;
    } else {
      base::UniqueFd fd(::open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC));
      if (fd) {
        out.stderr_copy_fd = fd.get();
        kept_fds().push_back(std::move(fd));
      } else {
        out.stderr_copy_fd = STDERR_FILENO;  // no /proc: best effort
      }
    }
  } else if (o.bridge_stderr != "tail") {
    base::UniqueFd fd(::open(o.bridge_stderr.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
    if (!fd) return SetupError{"cannot open " + o.bridge_stderr + " for the bridge's stderr: " + strerror(errno), kExitIoErr};
    out.stderr_copy_fd = fd.get();
    kept_fds().push_back(std::move(fd));
  }
  return std::nullopt;
}

namespace {
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGWINCH}) sigaddset(&set, sig);
  return set;
}
}  // namespace

void block_signals() {
  sigset_t set = handled_signals();
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);  // EPIPE is how we learn that a pipe's reader is gone
}

base::UniqueFd open_signal_fd() {
  sigset_t set = handled_signals();
  return base::UniqueFd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
}

int read_signal(int signal_fd) {
  signalfd_siginfo info;
  ssize_t n = ::read(signal_fd, &info, sizeof info);
  return n == static_cast<ssize_t>(sizeof info) ? static_cast<int>(info.ssi_signo) : 0;
}

std::optional<supervisor::BridgeExited> start_bridge(supervisor::Bridge& bridge, int signal_fd, int* caught) {
  *caught = 0;
  // start() polls signal_fd while it waits and asks us about each signal: one that ends tether
  // stops the bridge (start() then returns it stopped), a SIGWINCH is read and dropped.
  return bridge.start(signal_fd, [&] {
    int sig = read_signal(signal_fd);
    if (sig != SIGINT && sig != SIGTERM && sig != SIGHUP) return false;
    *caught = sig;
    return true;
  });
}

void reraise(int sig) {
  close_turn_log();  // the turns logged so far are stored before the signal ends us
  std::fflush(stdout);
  // The agent's terminals die with us: no destructor runs past here.
  proc::kill_registered_groups(std::chrono::milliseconds(150));  // SIGTERM, SIGKILL after 150 ms
  ::signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  ::_exit(128 + sig);  // only if the signal did not end us
}

namespace {

// The last path part of `word`, without a package scope, a version or a script extension.
std::string program_name(std::string_view word) {
  // A script inside node_modules names its package: node_modules/@scope/pkg/dist/index.js -> pkg.
  if (auto nm = word.rfind("node_modules/"); nm != std::string_view::npos) {
    std::string_view rest = word.substr(nm + 13);
    if (!rest.empty() && rest[0] == '@') rest = rest.substr(std::min(rest.size(), rest.find('/') + 1));
    return std::string(rest.substr(0, rest.find('/')));
  }
  if (auto slash = word.rfind('/'); slash != std::string_view::npos) word = word.substr(slash + 1);
  if (auto at = word.find('@', 1); at != std::string_view::npos) word = word.substr(0, at);  // pkg@1.2
  for (std::string_view ext : {".js", ".mjs", ".cjs", ".py"})
    if (word.size() > ext.size() && word.ends_with(ext)) word.remove_suffix(ext.size());
  return std::string(word);
}

}  // namespace

std::string agent_label(const CommonOptions& o) {
  if (!o.agent.empty()) return o.agent;
  if (!o.connect.empty()) return "serve:" + o.connect;
  if (o.bridge.size() == 2 && o.bridge[1] == "demo-agent" && o.bridge[0] == self_exe()) return "demo";
  if (o.bridge.empty()) return "";
  // Runners name the program in their first word that is not an option: npx -y PKG, node SCRIPT.
  std::size_t i = 0;
  std::string runner = program_name(o.bridge[0]);
  if (runner == "npx" || runner == "node" || runner == "bunx" || runner == "bun" || runner == "uvx" ||
      runner == "python3" || runner == "python" || runner == "pnpx") {
    for (i = 1; i < o.bridge.size() && o.bridge[i].starts_with("-"); ++i) {
    }
    if (i == o.bridge.size()) i = 0;
  }
  return program_name(o.bridge[i]);
}

bool write_stdout(std::string_view data) { return base::write_all(STDOUT_FILENO, data); }

std::string self_exe() {
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "tether";
  return std::string(buf, static_cast<std::size_t>(n));
}

void error_line(std::string_view message) {
  // Messages quote the agent (its error message and data, its stdout, its stderr tail).
  std::string line = "tether: " + for_terminal(STDERR_FILENO, message);
  if (line.back() != '\n') line += '\n';
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, line.data(), line.size());
}

}  // namespace tether::cli
