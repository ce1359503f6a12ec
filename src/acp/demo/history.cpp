// The demo agent's session histories (see agent.h): each finished turn is appended to a small
// file per session, so that session/load can replay a session in a later process (another tether
// run: `prompt -c`, `--session`, talk's /load) or after the agent crashed, session/resume can
// prove a session existed, and session/list can name them. The store is bounded (kKeepSessions,
// kKeepDays: the rest is removed, oldest first). The directory is private and checked
// (base/private_dir.h) before every use.
#include "acp/demo/agent.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstdlib>
#include <variant>

#include "base/private_dir.h"
#include "rpc/message.h"

namespace tether::acp::demo {
namespace {

// Where the histories live: $TETHER_DEMO_STATE_DIR; else $XDG_STATE_HOME/tether/demo-agent or
// ~/.local/state/tether/demo-agent (parents created): state that outlives a login, since a
// conversation may be continued days later; $XDG_RUNTIME_DIR/tether-demo-agent-UID only with no
// HOME; /tmp/tether-demo-agent-UID only with neither. Never $TMPDIR or /tmp while there is a
// choice: there another user can create the name first and plant symlinks in it. Wherever it is,
// the directory is checked (base/private_dir.h) before any use.
struct StateDir {
  std::string path;
  bool make_parents = false;
};

StateDir state_dir() {
  if (const char* d = std::getenv("TETHER_DEMO_STATE_DIR"); d && *d) return {d};
  std::string uid = std::to_string(::getuid());
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && x[0] == '/') return {std::string(x) + "/tether/demo-agent", true};
  if (const char* h = std::getenv("HOME"); h && h[0] == '/') return {std::string(h) + "/.local/state/tether/demo-agent", true};
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r && r[0] == '/' && ::access(r, W_OK) == 0)
    return {std::string(r) + "/tether-demo-agent-" + uid};
  return {"/tmp/tether-demo-agent-" + uid};
}

}  // namespace

bool valid_session_id(std::string_view id) {
  if (id.substr(0, 5) != "demo-" || id.size() > 64) return false;
  for (char c : id.substr(5))
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

void DemoAgent::on_load(const json& id, const json& params, bool replay) {
  std::string cwd;
  if (!check_cwd(id, params, cwd)) return;
  std::string sid = rpc::string_of(params, "sessionId");
  if (!valid_session_id(sid)) {
    respond_error(id, -32002, "Resource not found: session " + sid);
    return;
  }
  base::UniqueFd dir = open_state_dir();
  int fd = dir ? base::open_private_file(dir.get(), sid, O_RDONLY) : -1;
  if (fd < 0) {
    // A session of this process with no finished turn yet has no history, but exists.
    auto live = sessions_.find(sid);
    if (live == sessions_.end()) {
      respond_error(id, -32002, "Resource not found: session " + sid);
      return;
    }
    json answer = json::object();
    add_settings(answer, live->second);
    respond(id, answer);
    return;
  }
  // A continued session counts as recently used: another process's pruning (by age) keeps it.
  ::futimens(fd, nullptr);
  std::string text;
  char buf[kReadChunk];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  Session s;
  s.id = sid;
  s.cwd = cwd;
  s.stored = true;
  // Replay the history before answering, as the spec asks.
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    if (nl == std::string::npos) break;  // a torn last line (crash while writing): skip it
    json entry = json::parse(std::string_view(text).substr(pos, nl - pos), nullptr, false);
    pos = nl + 1;
    if (!entry.is_object()) continue;
    // A line that is not ours (a hand-edited or planted file) is skipped, not a crash.
    if (entry.contains("u")) {
      ++s.turns;
      if (replay && entry["u"].is_string()) chunk(sid, entry["u"].get<std::string>(), "user_message_chunk");
    } else if (replay && entry.contains("a") && entry["a"].is_string()) {
      chunk(sid, entry["a"].get<std::string>(), "agent_message_chunk");
    }
  }
  json answer = json::object();
  add_settings(answer, s);
  sessions_[sid] = std::move(s);
  respond(id, answer);
  announce_commands(sid);
}

// The state directory, created if missing and checked each time (it may have been removed under
// us); invalid when it is refused, which is said once on stderr: then no history is kept.
base::UniqueFd DemoAgent::open_state_dir() {
  StateDir where = state_dir();
  auto r = base::open_private_dir(where.path, where.make_parents);
  if (auto* fd = std::get_if<base::UniqueFd>(&r)) return std::move(*fd);
  warn_once("not keeping session histories: " + std::get<std::string>(r));
  return {};
}

void DemoAgent::warn_once(const std::string& why) {
  if (warned_) return;
  warned_ = true;
  std::string msg = "tether demo-agent: " + why + "\n";
  [[maybe_unused]] auto n = ::write(2, msg.data(), msg.size());
}

// Appends a finished turn (the prompt and the answer) to the session's history, in one write.
// The file is opened for that write and closed after it: a batch may create thousands of
// sessions on one agent, and an fd kept per session would run it out of fds (the open fails,
// and those sessions silently lose their history).
// The directory is opened (created if it was removed under us) and checked for each write.
void DemoAgent::remember(Session& s, std::string_view prompt, std::string_view answer) {
  base::UniqueFd dir = open_state_dir();
  if (!dir) return;
  // A new history file: now and then, the store is brought back within its bounds.
  if (!s.stored && new_histories_++ % kPruneEvery == 0) prune_state_dir(dir.get());
  // A stored history that is gone was removed under us (another process pruned it, or a person):
  // created again it would hold only the turns from now on, a truncated conversation.
  int fd = base::open_private_file(dir.get(), s.id, O_WRONLY | O_APPEND | (s.stored ? 0 : O_CREAT));
  if (fd < 0 && s.stored && errno == ENOENT) {
    warn_once("the history of " + s.id + " was removed by another process; its new turns are not kept");
    return;
  }
  if (fd < 0) {
    warn_once("cannot keep the history of " + s.id + ": " +
              (errno == ELOOP ? std::string("a symlink is in its place") :
               errno == EPERM ? std::string("another file is in its place") : std::string(::strerror(errno))));
    return;
  }
  s.stored = true;
  // The cwd goes with every prompt: session/list reads the first line only.
  std::string lines = "{\"u\":\"";
  append_escaped(lines, prompt.substr(0, kMaxStoredAnswer));
  lines += "\",\"cwd\":\"";
  append_escaped(lines, s.cwd);
  lines += "\"}\n{\"a\":\"";
  append_escaped(lines, answer.substr(0, kMaxStoredAnswer));
  lines += "\"}\n";
  [[maybe_unused]] auto n = ::write(fd, lines.data(), lines.size());
  ::close(fd);
}

}  // namespace tether::acp::demo
