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
#include <map>
#include <sstream>

#include "cli/config_file.h"
#include "cli/terminal_text.h"
#include "rpc/trace.h"
#include "serve/socket_path.h"

namespace tether::cli {
namespace {

// Which command-line option carries each config key, per options struct: a key from the config
// file applies only when its option was not given on the command line.
std::map<const CommonOptions*, std::map<std::string, CLI::Option*>>& option_registry() {
  static std::map<const CommonOptions*, std::map<std::string, CLI::Option*>> registry;
  return registry;
}

// Files opened for --bridge-stderr FILE live as long as the process.
std::vector<base::UniqueFd>& kept_fds() {
  static std::vector<base::UniqueFd> fds;
  return fds;
}

std::vector<std::string> split_words(const std::string& s) {
  // Words separated by blanks; '…' and "…" group words; no other shell syntax.
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char ch : s) {
    if (quote) {
      if (ch == quote) quote = 0;
      else cur += ch;
      continue;
    }
    if (ch == '"' || ch == '\'') {
      quote = ch;
      in_word = true;
    } else if (ch == ' ' || ch == '\t' || ch == '\n') {
      if (in_word) words.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += ch;
      in_word = true;
    }
  }
  if (in_word) words.push_back(cur);
  return words;
}

std::string default_config_path() {
  if (const char* x = std::getenv("XDG_CONFIG_HOME"); x && *x) return std::string(x) + "/tether/config.toml";
  if (const char* h = std::getenv("HOME"); h && *h) return std::string(h) + "/.config/tether/config.toml";
  return {};
}

template <typename T>
std::optional<std::string> apply_number(const ConfigValue& v, T& out, const std::string& key) {
  auto* d = std::get_if<double>(&v);
  if (!d || *d < 0 || !std::isfinite(*d)) return key + " must be a non-negative number";
  if constexpr (std::is_integral_v<T>) {
    if (*d != std::floor(*d)) return key + " must be a whole number";
  }
  out = static_cast<T>(*d);
  return std::nullopt;
}

std::optional<std::string> apply_string(const ConfigValue& v, std::string& out, const std::string& key,
                                        std::initializer_list<const char*> allowed = {}) {
  auto* s = std::get_if<std::string>(&v);
  if (!s) return key + " must be a string";
  if (allowed.size()) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || *s == a;
    if (!ok) return key + " has an unknown value '" + *s + "'";
  }
  out = *s;
  return std::nullopt;
}

std::optional<std::string> apply_config(CommonOptions& o, const ConfigMap& map, std::vector<std::string>& config_bridge) {
  auto& given = option_registry()[&o];
  for (const auto& [key, value] : map) {
    if (key == "bridge") {
      if (auto* words = std::get_if<std::vector<std::string>>(&value)) config_bridge = *words;
      else if (auto* s = std::get_if<std::string>(&value)) config_bridge = split_words(*s);
      else return std::string("bridge must be an array of strings");
      continue;
    }
    auto it = given.find(key);
    if (it == given.end()) return "unknown key '" + key + "'";
    if (it->second->count() > 0) continue;  // the command line wins
    std::optional<std::string> err;
    if (key == "cwd") err = apply_string(value, o.cwd, key);
    else if (key == "max_restarts") err = apply_number(value, o.max_restarts, key);
    else if (key == "restart_window") err = apply_number(value, o.restart_window, key);
    else if (key == "restart_delay") err = apply_number(value, o.restart_delay, key);
    else if (key == "heartbeat") err = apply_number(value, o.heartbeat, key);
    else if (key == "retries") err = apply_number(value, o.retries, key);
    else if (key == "timeout") err = apply_number(value, o.timeout, key);
    else if (key == "max_line") err = apply_number(value, o.max_line, key);
    else if (key == "bridge_stderr") err = apply_string(value, o.bridge_stderr, key);
    else if (key == "trace") err = apply_string(value, o.trace, key);
    else if (key == "permission") err = apply_string(value, o.permission, key, {"ask", "allow", "allow-always", "deny"});
    else if (key == "auth") err = apply_string(value, o.auth, key);
    else if (key == "mode") err = apply_string(value, o.mode, key);
    else if (key == "model") err = apply_string(value, o.model, key);
    else if (key == "color") err = apply_string(value, o.color, key, {"auto", "always", "never"});
    else if (key == "allow_fs") {
      if (auto* b = std::get_if<bool>(&value)) o.allow_fs = *b;
      else err = "allow_fs must be true or false";
    } else if (key == "quiet") {
      if (auto* b = std::get_if<bool>(&value)) o.quiet = *b;
      else err = "quiet must be true or false";
    } else {
      err = "key '" + key + "' cannot be set in the config file";
    }
    if (err) return err;
  }
  return std::nullopt;
}

}  // namespace

void add_common_options(CLI::App& app, CommonOptions& o) {
  // CLI11 2.1's usage line cannot show it, so every command's help ends with it.
  app.footer(app.get_footer() + (app.get_footer().empty() ? "" : "\n") + "The bridge: tether " + app.get_name() +
             " [OPTIONS] -- BRIDGE [ARGS...]\n"
             "Everything after -- is the bridge's command line, never tether's options. Without it:\n"
             "$TETHER_BRIDGE, else the config file's bridge, else the built-in demo agent.");
  auto& reg = option_registry()[&o];
  const std::string group = "Bridge and supervision";
  reg["cwd"] = app.add_option("--cwd", o.cwd, "Working directory of the bridge and the ACP session (default: the current directory)")->group(group);
  reg["max_restarts"] = app.add_option("--max-restarts", o.max_restarts, "Restarts allowed within the restart window")->capture_default_str()->group(group);
  reg["restart_window"] = app.add_option("--restart-window", o.restart_window, "Sliding window for --max-restarts, in seconds")->capture_default_str()->check(CLI::PositiveNumber)->group(group);
  reg["restart_delay"] = app.add_option("--restart-delay", o.restart_delay, "Delay before a restart, doubled per restart already in the window (capped at 30 s)")->capture_default_str()->check(CLI::NonNegativeNumber)->group(group);
  reg["heartbeat"] = app.add_option("--heartbeat", o.heartbeat, "Ping an idle bridge every SECS ($/ping); 3 missed answers mean it is hung (0 = off)")->capture_default_str()->check(CLI::NonNegativeNumber)->group(group);
  reg["retries"] = app.add_option("--retries", o.retries, "Retries of a turn interrupted by a bridge death")->capture_default_str()->check(CLI::NonNegativeNumber)->group(group);
  reg["timeout"] = app.add_option("--timeout", o.timeout, "Per request / turn timeout in seconds (0 = none)")->capture_default_str()->check(CLI::NonNegativeNumber)->group(group);
  reg["bridge_stderr"] = app.add_option("--bridge-stderr", o.bridge_stderr, "The bridge's stderr: tail (keep the last 4 KiB, shown on failure), pass (copy to ours), or a FILE to append to")->capture_default_str()->group(group);
  reg["trace"] = app.add_option("--trace", o.trace, "Write every frame both ways, timestamped, to FILE")->group(group);
  reg["max_line"] = app.add_option("--max-line", o.max_line, "Longest line accepted from the bridge, in bytes; longer lines are dropped and counted")->capture_default_str()->check(CLI::PositiveNumber)->group(group);
  reg["permission"] = app.add_option("--permission", o.permission, "Answer to the agent's permission requests: ask, allow (once), allow-always (lets the agent keep a lasting rule) or deny")->check(CLI::IsMember({"ask", "allow", "allow-always", "deny"}))->group("Agent (ACP commands)");
  reg["allow_fs"] = app.add_flag("--allow-fs", o.allow_fs, "Serve the agent's file reads and writes inside --cwd")->group("Agent (ACP commands)");
  reg["color"] = app.add_option("--color", o.color, "Colour: auto, always or never (auto: none with NO_COLOR or TERM=dumb, or when stderr is not a terminal)")->capture_default_str()->check(CLI::IsMember({"auto", "always", "never"}))->group("Output");
  reg["quiet"] = app.add_flag("-q,--quiet", o.quiet, "Print only answers and errors")->group("Output");
  app.add_flag("-v,--verbose", o.verbose, "More detail on stderr (repeatable)")->group("Output");
  app.add_option("--config", o.config, "Config file (default: $XDG_CONFIG_HOME/tether/config.toml)")->group("Output");
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
  auto& reg = option_registry()[&o];
  const std::string group = "Agent (ACP commands)";
  reg["auth"] = app.add_option("--auth", o.auth, "When the agent asks for authentication, use its method METHOD_ID (default: an env_var method whose variables are set; never a browser login)")->option_text("METHOD_ID")->group(group);
  reg["mode"] = app.add_option("--mode", o.mode, "Set the session's mode (session/set_mode) before the first prompt")->option_text("ID")->group(group);
  reg["model"] = app.add_option("--model", o.model, "Set the session's model (the agent's model config option)")->option_text("ID")->group(group);
  app.add_option("--set", o.set, "Set one of the agent's session config options (repeatable)")->option_text("KEY=VALUE")->allow_extra_args(false)->group(group);
}

namespace {

// Shows --connect as itself in the help: CLI11 would print its default value in braces
// ("--connect{default}"), which reads as if the braces were to be typed.
class ConnectFormatter : public CLI::Formatter {
 public:
  explicit ConnectFormatter(const CLI::Formatter& base) : CLI::Formatter(base) {}
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    if (!is_positional && opt->get_name() == "--connect") return "--connect";
    return CLI::Formatter::make_option_name(opt, is_positional);
  }
};

}  // namespace

void add_connect_option(CLI::App& app, CommonOptions& o) {
  // A flag whose value comes only after '=': "--connect hello" leaves "hello" to the positionals.
  app.add_flag("--connect{default}", o.connect,
               "Use the bridge of a running `tether serve` instead of starting one: --connect (the server "
               "named default), --connect=NAME or --connect=PATH (its socket). No bridge command then")
      ->option_text("[=NAME|PATH]")
      ->group("Bridge and supervision");
  if (auto base = std::dynamic_pointer_cast<CLI::Formatter>(app.get_formatter()))
    app.formatter(std::make_shared<ConnectFormatter>(*base));
}

std::optional<SetupError> finish_options(CommonOptions& o) {
  // Config file: an explicit --config must exist; the default one may be absent.
  std::vector<std::string> config_bridge;
  std::string path = o.config.empty() ? default_config_path() : o.config;
  if (!path.empty()) {
    std::ifstream in(path);
    if (!in) {
      if (!o.config.empty()) return SetupError{"cannot read config file " + path + ": " + strerror(errno), kExitConfig};
    } else {
      std::stringstream text;
      text << in.rdbuf();
      auto parsed = parse_config(text.str());
      if (auto* err = std::get_if<std::string>(&parsed)) return SetupError{path + ": " + *err, kExitConfig};
      if (auto err = apply_config(o, std::get<ConfigMap>(parsed), config_bridge))
        return SetupError{path + ": " + *err, kExitConfig};
    }
  }

  if (o.bridge_stderr.empty()) return SetupError{"--bridge-stderr needs tail, pass or a file name", kExitUsage};

  // The session cwd must be an absolute, existing directory.
  std::string dir = o.cwd.empty() ? "." : o.cwd;
  char resolved[PATH_MAX];
  struct stat st;
  if (!::realpath(dir.c_str(), resolved) || ::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode))
    return SetupError{"--cwd " + dir + ": not a directory we can use" + (errno ? std::string(" (") + strerror(errno) + ")" : ""), kExitUsage};
  o.cwd = resolved;

  if (!o.connect.empty()) {
    // The bridge runs in the server; TETHER_BRIDGE and the config file's bridge do not apply.
    if (!o.bridge.empty())
      return SetupError{"the server runs the bridge; --connect takes no bridge command (nothing after --)", kExitUsage};
    return std::nullopt;
  }
  if (o.bridge.empty()) {
    if (const char* env = std::getenv("TETHER_BRIDGE"); env && *env) o.bridge = split_words(env);
  }
  if (o.bridge.empty()) o.bridge = config_bridge;
  if (o.bridge.empty()) o.bridge = {self_exe(), "demo-agent"};
  return std::nullopt;
}

std::optional<SetupError> make_bridge_options(const CommonOptions& o, bool auto_restart,
                                              supervisor::BridgeOptions& out) {
  out.argv = o.bridge;
  out.cwd = o.cwd;
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
  std::fflush(stdout);
  ::signal(sig, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, sig);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
  ::raise(sig);
  ::_exit(128 + sig);  // only if the signal did not end us
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
