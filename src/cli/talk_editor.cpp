// Talk (talk_private.h) and the terminal: its modes during a turn, /edit (compose a prompt in
// $VISUAL or $EDITOR), and the sign-in question asked before the line editor starts.
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "cli/talk_private.h"

extern char** environ;

namespace tether::cli {
namespace {

// $VISUAL, else $EDITOR, else vi; split into words at blanks (no quoting).
std::vector<std::string> editor_words() {
  const char* ed = ::getenv("VISUAL");
  if (!ed || !*ed) ed = ::getenv("EDITOR");
  std::string editor_cmd = ed && *ed ? ed : "vi";
  std::vector<std::string> words;
  std::string w;
  for (char c : editor_cmd) {
    if (c == ' ' || c == '\t') {
      if (!w.empty()) words.push_back(std::move(w));
      w.clear();
    } else {
      w += c;
    }
  }
  if (!w.empty()) words.push_back(std::move(w));
  return words;
}

// The editor runs with every signal at its default and none blocked (ours are blocked for the
// signalfd). The posix_spawnp error, 0 when it runs.
int spawn_editor(std::vector<std::string>& words, pid_t& pid) {
  std::vector<char*> av;
  for (auto& w : words) av.push_back(w.data());
  av.push_back(nullptr);
  posix_spawnattr_t attr;
  ::posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGPIPE, SIGQUIT}) sigaddset(&defaults, s);
  ::posix_spawnattr_setsigmask(&attr, &none);
  ::posix_spawnattr_setsigdefault(&attr, &defaults);
  ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  int rc = ::posix_spawnp(&pid, av[0], nullptr, &attr, av.data(), environ);
  ::posix_spawnattr_destroy(&attr);
  return rc;
}

std::string read_file(const std::string& path) {
  std::string text;
  int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  char buf[65536];
  ssize_t n;
  while (in >= 0 && (n = ::read(in, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
  if (in >= 0) ::close(in);
  return text;
}

}  // namespace

using namespace talk_detail;

// --- terminal modes -------------------------------------------------------------------------------

void Talk::save_terminal() {
  if (::tcgetattr(STDIN_FILENO, &orig_termios_) == 0) have_termios_ = true;
}

// While a turn streams: keys are not echoed (they would tear the answer) and not read (they
// wait as type-ahead), but Ctrl-C still raises SIGINT and a permission key needs no Enter.
void Talk::turn_terminal_mode() {
  if (!have_termios_) return;
  termios t = orig_termios_;
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  t.c_lflag |= ISIG;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  ::tcsetattr(STDIN_FILENO, TCSANOW, &t);
}

void Talk::restore_terminal() {
  if (have_termios_) ::tcsetattr(STDIN_FILENO, TCSANOW, &orig_termios_);
}

// --- /edit ---------------------------------------------------------------------------------------

// /edit: compose in $VISUAL or $EDITOR (else vi) in a temporary file; what is saved is sent.
void Talk::edit(const std::string& initial) {
  if (!interactive_) {
    renderer_.error("/edit needs a terminal");
    last_status_ = acp::worse_exit(last_status_, kExitDataErr);
    return;
  }
  const char* tmpdir = ::getenv("TMPDIR");
  std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/tether-prompt-XXXXXX.md";
  int fd = ::mkstemps(path.data(), 3);
  if (fd < 0) {
    renderer_.error("cannot create a file to edit in: " + std::string(strerror(errno)));
    return;
  }
  if (!initial.empty()) base::write_all(fd, initial + "\n");
  ::close(fd);
  std::optional<std::string> saved = run_editor(editor_words(), path);
  ::unlink(path.c_str());
  if (!saved) return;
  std::string text = std::move(*saved);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
  if (text.find_first_not_of(" \t\n") == std::string::npos) {
    renderer_.dim("(empty: nothing sent)");
    return;
  }
  renderer_.dim(text);
  flush();
  start_turn(std::move(text));
}

// Runs the editor on `path` and waits for it: what it saved, or nothing (said why) when it could
// not run or did not exit cleanly. A SIGTERM or SIGHUP meanwhile ends tether.
std::optional<std::string> Talk::run_editor(std::vector<std::string> words, const std::string& path) {
  words.push_back(path);
  pid_t pid = -1;
  restore_terminal();  // the editor gets the terminal as the person's shell left it
  if (int rc = spawn_editor(words, pid); rc != 0) {
    renderer_.error("cannot run the editor " + words[0] + ": " + strerror(rc) + " (set VISUAL or EDITOR)");
    return std::nullopt;
  }
#ifdef TETHER_HAVE_LIBEDIT
  base::write_all(STDOUT_FILENO, "\x1b[?2004l");
#endif
  int st = 0;
  pid_t waited;
  while ((waited = ::waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
  }
  if (waited != pid) st = W_EXITCODE(1, 0);  // status unknown (not ours to read): not clean
#ifdef TETHER_HAVE_LIBEDIT
  base::write_all(STDOUT_FILENO, "\x1b[?2004h");
#endif
  // Ctrl-C and resizes inside the editor were the editor's; termination requests are ours.
  while (int sig = read_signal(sig_.get())) {
    if (sig == SIGTERM || sig == SIGHUP) {
      ::unlink(path.c_str());
      shutdown_now();
      reraise(sig);
    }
  }
  if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return read_file(path);
  renderer_.note("the editor did not exit cleanly: nothing was sent");
  return std::nullopt;
}

// --- the locale and the sign-in question (before the line editor starts) ---------------------------

namespace talk_detail {

void use_utf8_ctype() {
  ::setlocale(LC_CTYPE, "");
  const char* cs = ::nl_langinfo(CODESET);
  if (!cs || std::string_view(cs) != "UTF-8") ::setlocale(LC_CTYPE, "C.UTF-8");
}

// Lists the agent's sign-in methods on the terminal and reads the person's choice (a number or an
// id; empty: none). Runs before the line editor starts, in the terminal's own line mode.
std::string ask_auth_method(const nlohmann::json& methods, const nlohmann::json& agent_error) {
  std::vector<std::string> ids;
  std::string text = "tether: the agent requires authentication";
  if (auto m = agent_error.value("message", ""); !m.empty()) text += " (" + talk::sanitize_text(m) + ")";
  text += ". Its sign-in methods:\n";
  std::string listing = talk::sanitize_text(acp::describe_auth_methods(methods));
  std::size_t n = 0;
  for (std::size_t pos = 0; pos < listing.size();) {
    std::size_t nl = listing.find('\n', pos);
    std::string line = listing.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    text += "  [" + std::to_string(++n) + "]" + line + "\n";
    pos = nl == std::string::npos ? listing.size() : nl + 1;
  }
  for (const auto& m : methods)
    if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
  text += "Pick one (number or id; Enter for none): ";
  base::write_all(STDERR_FILENO, text);
  std::string answer;
  char c;
  // The whole line is read (a long one is cut to 200 bytes), so nothing of it is left for the prompt.
  while (::read(STDIN_FILENO, &c, 1) == 1 && c != '\n' && c != '\r')
    if (answer.size() < 200) answer += c;
  while (!answer.empty() && (answer.back() == ' ' || answer.back() == '\r')) answer.pop_back();
  while (!answer.empty() && answer.front() == ' ') answer.erase(0, 1);
  if (answer.empty()) return "";
  if (answer.size() < 6 && std::all_of(answer.begin(), answer.end(), [](char d) { return d >= '0' && d <= '9'; })) {
    std::size_t k = std::stoul(answer);
    return k >= 1 && k <= ids.size() ? ids[k - 1] : "";
  }
  return answer;
}

}  // namespace talk_detail

}  // namespace tether::cli
