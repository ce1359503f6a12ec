#include "acp/demo_agent.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/private_dir.h"
#include "tether_config.h"

namespace tether::acp {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kFlushAt = 256 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxStoredAnswer = 64 * 1024;
constexpr int kFloodCheckEvery = 4096;  // chunks between looks at stdin for a session/cancel

// Appends `s` as the inside of a JSON string.
void append_escaped(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<long long> number(std::string_view word) {
  long long v = 0;
  auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (ec != std::errc() || p != word.data() + word.size() || v < 0) return std::nullopt;
  return v;
}

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

// What the trigger words of one prompt ask for.
struct Triggers {
  std::optional<long long> chunks, flood, big, sleep_ms, exit_code;
  bool crash = false, hang = false, error = false;
  std::string stop = "end_turn";
  std::string read_path, write_path;
  bool edit = false;
  std::string echo;  // the prompt without its trigger words
};

Triggers parse_triggers(std::string_view text) {
  Triggers t;
  auto words = words_of(text);
  std::string echo;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    auto arg = [&]() -> std::optional<std::string> {
      if (i + 1 < words.size()) return words[++i];
      return std::nullopt;
    };
    auto num_arg = [&]() -> std::optional<long long> {
      if (i + 1 < words.size())
        if (auto n = number(words[i + 1])) {
          ++i;
          return n;
        }
      return std::nullopt;
    };
    if (w == "/chunks") t.chunks = num_arg().value_or(1);
    else if (w == "/flood") t.flood = num_arg().value_or(1000);
    else if (w == "/big") t.big = num_arg().value_or(1 << 20);
    else if (w == "/sleep") t.sleep_ms = num_arg().value_or(1000);
    else if (w == "/exit") t.exit_code = num_arg().value_or(1);
    else if (w == "/crash") t.crash = true;
    else if (w == "/hang") t.hang = true;
    else if (w == "/error") t.error = true;
    else if (w == "/stop") t.stop = arg().value_or("end_turn");
    else if (w == "/read") t.read_path = arg().value_or("");
    else if (w == "/write") {
      t.write_path = arg().value_or("");
      t.edit = true;
    } else {
      if (!echo.empty()) echo += ' ';
      echo += w;
      std::string l = lower(w);
      if (l.find("edit") != std::string::npos || l.find("write") != std::string::npos) t.edit = true;
    }
  }
  t.echo = std::move(echo);
  return t;
}

// Where the histories live: $TETHER_DEMO_STATE_DIR; else $XDG_RUNTIME_DIR/tether-demo-agent-UID
// (a per-user directory the system keeps private); else $XDG_STATE_HOME/tether/demo-agent or
// ~/.local/state/tether/demo-agent (parents created); /tmp/tether-demo-agent-UID only with no HOME
// either. Never $TMPDIR or /tmp by default: there another user can create the name first and plant
// symlinks in it. Wherever it is, the directory is checked (base/private_dir.h) before any use.
struct StateDir {
  std::string path;
  bool make_parents = false;
};

StateDir state_dir() {
  if (const char* d = std::getenv("TETHER_DEMO_STATE_DIR"); d && *d) return {d};
  std::string uid = std::to_string(::getuid());
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r && r[0] == '/' && ::access(r, W_OK) == 0)
    return {std::string(r) + "/tether-demo-agent-" + uid};
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && x[0] == '/') return {std::string(x) + "/tether/demo-agent", true};
  if (const char* h = std::getenv("HOME"); h && h[0] == '/') return {std::string(h) + "/.local/state/tether/demo-agent", true};
  return {"/tmp/tether-demo-agent-" + uid};
}

bool valid_session_id(std::string_view id) {
  if (id.substr(0, 5) != "demo-" || id.size() > 64) return false;
  for (char c : id.substr(5))
    if (!(std::isdigit(static_cast<unsigned char>(c)) || c == '-')) return false;
  return true;
}

class DemoAgent {
 public:
  DemoAgent(int in, int out) : in_(in), out_fd_(out) { out_.reserve(kFlushAt + 4096); }

  int run() {
    for (;;) {
      json msg;
      if (!deferred_.empty()) {
        msg = std::move(deferred_.front());
        deferred_.pop_front();
      } else {
        auto m = next_message(-1);
        if (!m) break;
        msg = std::move(*m);
      }
      handle(std::move(msg));
      if (exit_code_) break;
    }
    flush();
    return exit_code_.value_or(0);
  }

 private:
  struct Session {
    std::string id;
    std::string cwd;
    std::string mode = "ask";    // ask: an edit asks permission first; read-only: edits are refused
    std::string model = "echo";  // echo, or shout: the echo in capitals
    int turns = 0;
    bool cancelled = false;
    std::string prompt;  // of the turn in progress
  };

  // --- output -----------------------------------------------------------------------------------

  void flush() {
    std::size_t off = 0;
    while (off < out_.size()) {
      ssize_t n = ::write(out_fd_, out_.data() + off, out_.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        // The client is gone: nothing more to do.
        ::_exit(0);
      }
      off += static_cast<std::size_t>(n);
    }
    out_.clear();
  }

  void send(const json& msg) {
    out_ += dump(msg);
    out_ += '\n';
    if (out_.size() >= kFlushAt) flush();
  }

  void respond(const json& id, json result) { send({{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}}); }

  void respond_error(const json& id, int code, const std::string& message) {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}});
  }

  void update(const std::string& sid, json u) {
    send({{"jsonrpc", "2.0"}, {"method", "session/update"}, {"params", {{"sessionId", sid}, {"update", std::move(u)}}}});
  }

  // The hot path: a text chunk formatted by hand.
  void chunk(const std::string& sid, std::string_view text, std::string_view kind = "agent_message_chunk") {
    out_ += R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
    append_escaped(out_, sid);
    out_ += R"(","update":{"sessionUpdate":")";
    out_ += kind;
    out_ += R"(","content":{"type":"text","text":")";
    append_escaped(out_, text);
    out_ += "\"}}}}\n";
    if (out_.size() >= kFlushAt) flush();
  }

  // --- input ------------------------------------------------------------------------------------

  // Reads more input, waiting up to timeout_ms (-1: forever). False at EOF or on timeout.
  bool fill(int timeout_ms) {
    if (eof_) return false;
    // Whatever we said must be out before we wait. A mere look (timeout 0) does not flush: what a
    // turn says then leaves in one write, and the client wakes once for it.
    if (timeout_ms != 0) flush();
    pollfd p{in_, POLLIN, 0};
    for (;;) {
      int r = ::poll(&p, 1, timeout_ms);
      if (r < 0 && errno == EINTR) continue;
      if (r == 0) return false;
      break;
    }
    char buf[kReadChunk];
    for (;;) {
      ssize_t n = ::read(in_, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        eof_ = true;
        return false;
      }
      in_buf_.append(buf, static_cast<std::size_t>(n));
      return true;
    }
  }

  // The next parsed message from what is buffered; nothing if no complete line is buffered.
  std::optional<json> buffered_message() {
    for (;;) {
      auto nl = in_buf_.find('\n', in_pos_);
      if (nl == std::string::npos) {
        in_buf_.erase(0, in_pos_);
        in_pos_ = 0;
        return std::nullopt;
      }
      std::string_view line(in_buf_.data() + in_pos_, nl - in_pos_);
      in_pos_ = nl + 1;
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
      json msg = json::parse(line, nullptr, false);
      if (msg.is_discarded() || !msg.is_object()) {
        send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32700}, {"message", "Parse error"}}}});
        continue;
      }
      return msg;
    }
  }

  std::optional<json> next_message(int timeout_ms) {
    for (;;) {
      if (auto m = buffered_message()) return m;
      if (!fill(timeout_ms)) return std::nullopt;
    }
  }

  // During a turn: takes every complete message that has arrived, acting on cancels and responses
  // at once and keeping everything else for after the turn. Waits (up to timeout_ms; -1: forever)
  // only while nothing at all has been taken, and returns as soon as something was, so that the
  // caller can check whether what it waits for (a response, a cancel) is among it. Invariant: it
  // never blocks once it has taken a message; a caller whose response was in the batch just read
  // would otherwise wait for input the client will not send before the turn goes on.
  void poll_input(int timeout_ms) {
    bool took = false, waited = false;
    for (;;) {
      if (auto m = buffered_message()) {
        triage(std::move(*m));
        took = true;
        continue;
      }
      // A bounded wait happens once (a torn line must not restart the caller's clock); an
      // unbounded one goes on until a whole message is in.
      bool may_wait = !took && timeout_ms != 0 && !(waited && timeout_ms > 0);
      if (!fill(may_wait ? timeout_ms : 0)) return;
      waited = waited || may_wait;
    }
  }

  void triage(json msg) {
    auto method = msg.find("method");
    if (method == msg.end()) {
      if (msg.contains("id")) {
        std::string key = dump(msg["id"]);  // before the move: json's operator= takes its argument by value
        responses_[key] = std::move(msg);
      }
      return;
    }
    if (*method == "session/cancel" && !msg.contains("id")) {
      std::string sid = msg["params"].value("sessionId", "");
      if (auto it = sessions_.find(sid); it != sessions_.end()) it->second.cancelled = true;
      return;
    }
    deferred_.push_back(std::move(msg));
  }

  // Sends a request to the client and waits for its answer; nothing at EOF. Whatever else arrives
  // meanwhile is triaged (a session/cancel marks the turn; the client still answers this request
  // `cancelled`, as the spec requires, so the wait ends on the answer, never on the cancel).
  std::optional<json> request(const std::string& method, json params) {
    json id = next_id_++;
    send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}});
    std::string key = dump(id);
    for (;;) {
      if (auto it = responses_.find(key); it != responses_.end()) {
        json r = std::move(it->second);
        responses_.erase(it);
        return r;
      }
      if (eof_) return std::nullopt;
      poll_input(-1);
    }
  }

  // --- requests ---------------------------------------------------------------------------------

  void handle(json msg) {
    auto method_it = msg.find("method");
    if (method_it == msg.end() || !method_it->is_string()) return;  // a stray response
    std::string method = method_it->get<std::string>();
    bool is_request = msg.contains("id");
    json params = msg.contains("params") ? msg["params"] : json::object();
    if (!is_request) return;  // session/cancel outside a turn, and other notifications
    const json& id = msg["id"];
    if (method == "initialize") on_initialize(id, params);
    else if (method == "session/new") on_new(id, params);
    else if (method == "session/load") on_load(id, params);
    else if (method == "session/resume") on_resume(id, params);
    else if (method == "session/close") on_close(id, params);
    else if (method == "session/set_mode") on_set_mode(id, params);
    else if (method == "session/set_config_option") on_set_option(id, params);
    else if (method == "session/prompt") on_prompt(id, params);
    else if (method == "authenticate") respond(id, json::object());
    else respond_error(id, -32601, "Method not found: " + method);
  }

  void on_initialize(const json& id, const json& params) {
    const json& caps = params.value("clientCapabilities", json::object());
    if (caps.is_object() && caps.contains("fs") && caps["fs"].is_object()) {
      fs_read_ = caps["fs"].value("readTextFile", false);
      fs_write_ = caps["fs"].value("writeTextFile", false);
    }
    respond(id, {{"protocolVersion", 1},
                 {"agentCapabilities",
                  {{"loadSession", true},
                   {"promptCapabilities", {{"image", false}, {"audio", false}, {"embeddedContext", true}}},
                   {"sessionCapabilities", {{"close", json::object()}, {"resume", json::object()}}}}},
                 {"agentInfo", {{"name", "tether-demo-agent"}, {"title", "tether demo agent"}, {"version", TETHER_VERSION}}},
                 {"authMethods", json::array()}});
  }

  bool check_cwd(const json& id, const json& params, std::string& cwd) {
    cwd = params.value("cwd", "");
    if (cwd.empty() || cwd[0] != '/') {
      respond_error(id, -32602, "Invalid params: cwd must be an absolute path");
      return false;
    }
    return true;
  }

  void on_new(const json& id, const json& params) {
    std::string cwd;
    if (!check_cwd(id, params, cwd)) return;
    Session s;
    s.id = "demo-" + std::to_string(::getppid()) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++created_);
    s.cwd = cwd;
    std::string sid = s.id;
    json answer = {{"sessionId", sid}};
    add_settings(answer, s);
    sessions_[sid] = std::move(s);
    respond(id, answer);
    announce_commands(sid);
  }

  // The session's modes and its one config option, as session/new (load, resume) answers them.
  static void add_settings(json& answer, const Session& s) {
    answer["modes"] = {{"currentModeId", s.mode},
                       {"availableModes",
                        {{{"id", "ask"}, {"name", "Ask"}, {"description", "Ask permission before editing"}},
                         {{"id", "read-only"}, {"name", "Read-only"}, {"description", "Never edit files"}}}}};
    answer["configOptions"] = json::array({config_option(s)});
  }

  static json config_option(const Session& s) {
    return {{"id", "model"},
            {"name", "Model"},
            {"category", "model"},
            {"type", "select"},
            {"currentValue", s.model},
            {"options",
             {{{"value", "echo"}, {"name", "Echo"}, {"description", "Echo the prompt as typed"}},
              {{"value", "shout"}, {"name", "Shout"}, {"description", "Echo the prompt in capitals"}}}}};
  }

  Session* find_session(const json& id, const json& params) {
    auto it = sessions_.find(params.value("sessionId", ""));
    if (it != sessions_.end()) return &it->second;
    respond_error(id, -32002, "Resource not found: session " + params.value("sessionId", ""));
    return nullptr;
  }

  void on_set_mode(const json& id, const json& params) {
    Session* s = find_session(id, params);
    if (!s) return;
    std::string mode = params.value("modeId", "");
    if (mode != "ask" && mode != "read-only") {
      respond_error(id, -32602, "Invalid params: no mode " + mode);
      return;
    }
    s->mode = mode;
    respond(id, json::object());
    update(s->id, {{"sessionUpdate", "current_mode_update"}, {"currentModeId", mode}});
  }

  void on_set_option(const json& id, const json& params) {
    Session* s = find_session(id, params);
    if (!s) return;
    std::string value = params.contains("value") && params["value"].is_string() ? params["value"].get<std::string>() : "";
    if (params.value("configId", "") != "model" || (value != "echo" && value != "shout")) {
      respond_error(id, -32602, "Invalid params: no such option or value");
      return;
    }
    s->model = value;
    respond(id, {{"configOptions", json::array({config_option(*s)})}});
  }

  void on_close(const json& id, const json& params) {
    if (!find_session(id, params)) return;
    sessions_.erase(params.value("sessionId", ""));
    respond(id, json::object());
  }

  // session/resume: the session back on this process without a replay. Its history file is the
  // proof that it existed (and the turn count comes from it).
  void on_resume(const json& id, const json& params) { on_load(id, params, /*replay=*/false); }

  // Sent after session/new's answer: an update outside any turn, as real agents do.
  void announce_commands(const std::string& sid) {
    json cmds = json::array();
    for (auto [name, desc, hint] : std::initializer_list<std::tuple<const char*, const char*, const char*>>{
             {"chunks", "Answer in exactly N chunks", "N"},
             {"flood", "Stream N one-word chunks as fast as possible", "N"},
             {"big", "Answer with one chunk of BYTES bytes", "BYTES"},
             {"sleep", "Wait MS milliseconds before answering", "MS"},
             {"crash", "Crash after the first chunk", ""},
             {"hang", "Stop answering after the first chunk", ""},
             {"exit", "Exit at once with status CODE", "CODE"},
             {"stop", "Answer with stop reason REASON", "REASON"},
             {"error", "Answer the prompt with an error", ""},
             {"read", "Read PATH through the client", "PATH"},
             {"write", "Write the echo to PATH through the client", "PATH"}}) {
      json c = {{"name", name}, {"description", desc}};
      if (*hint) c["input"] = {{"hint", hint}};
      cmds.push_back(std::move(c));
    }
    update(sid, {{"sessionUpdate", "available_commands_update"}, {"availableCommands", std::move(cmds)}});
  }

  void on_load(const json& id, const json& params, bool replay = true) {
    std::string cwd;
    if (!check_cwd(id, params, cwd)) return;
    std::string sid = params.value("sessionId", "");
    if (!valid_session_id(sid)) {
      respond_error(id, -32002, "Resource not found: session " + sid);
      return;
    }
    base::UniqueFd dir = open_state_dir();
    int fd = dir ? base::open_private_file(dir.get(), sid, O_RDONLY) : -1;
    if (fd < 0) {
      respond_error(id, -32002, "Resource not found: session " + sid);
      return;
    }
    std::string text;
    char buf[kReadChunk];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) text.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    Session s;
    s.id = sid;
    s.cwd = cwd;
    // Replay the history before answering, as the spec asks.
    std::size_t pos = 0;
    while (pos < text.size()) {
      auto nl = text.find('\n', pos);
      if (nl == std::string::npos) break;  // a torn last line (crash while writing): skip it
      json entry = json::parse(std::string_view(text).substr(pos, nl - pos), nullptr, false);
      pos = nl + 1;
      if (!entry.is_object()) continue;
      if (entry.contains("u")) {
        ++s.turns;
        if (replay) chunk(sid, entry["u"].get<std::string>(), "user_message_chunk");
      } else if (entry.contains("a") && replay) {
        chunk(sid, entry["a"].get<std::string>(), "agent_message_chunk");
      }
    }
    json answer = json::object();
    add_settings(answer, s);
    sessions_[sid] = std::move(s);
    respond(id, answer);
    announce_commands(sid);
  }

  // Appends a finished turn (the prompt and the answer) to the session's history, in one write.
  // The file is opened for that write and closed after it: a batch may create thousands of
  // sessions on one agent, and an fd kept per session would run it out of fds (the open fails,
  // and those sessions silently lose their history).
  // The state directory, created if missing and checked each time (it may have been removed under
  // us); invalid when it is refused, which is said once on stderr: then no history is kept.
  base::UniqueFd open_state_dir() {
    StateDir where = state_dir();
    auto r = base::open_private_dir(where.path, where.make_parents);
    if (auto* fd = std::get_if<base::UniqueFd>(&r)) return std::move(*fd);
    warn_once("not keeping session histories: " + std::get<std::string>(r));
    return {};
  }

  void warn_once(const std::string& why) {
    if (warned_) return;
    warned_ = true;
    std::string msg = "tether demo-agent: " + why + "\n";
    [[maybe_unused]] auto n = ::write(2, msg.data(), msg.size());
  }

  // The directory is opened (created if it was removed under us) and checked for each write.
  void remember(Session& s, std::string_view prompt, std::string_view answer) {
    base::UniqueFd dir = open_state_dir();
    if (!dir) return;
    if (!cleaned_) clean_state_dir(dir.get());
    int fd = base::open_private_file(dir.get(), s.id, O_WRONLY | O_CREAT | O_APPEND);
    if (fd < 0) {
      warn_once("cannot keep the history of " + s.id + ": " +
                (errno == ELOOP ? std::string("a symlink is in its place") :
                 errno == EPERM ? std::string("another file is in its place") : std::string(::strerror(errno))));
      return;
    }
    std::string lines = "{\"u\":\"";
    append_escaped(lines, prompt.substr(0, kMaxStoredAnswer));
    lines += "\"}\n{\"a\":\"";
    append_escaped(lines, answer.substr(0, kMaxStoredAnswer));
    lines += "\"}\n";
    [[maybe_unused]] auto n = ::write(fd, lines.data(), lines.size());
    ::close(fd);
  }

  // Removes the histories of sessions whose tether (the parent named in the id) has exited.
  void clean_state_dir(int dirfd) {
    cleaned_ = true;
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    DIR* d = dup >= 0 ? ::fdopendir(dup) : nullptr;
    if (!d) {
      if (dup >= 0) ::close(dup);
      return;
    }
    while (auto* e = ::readdir(d)) {
      std::string_view name(e->d_name);
      if (!valid_session_id(name)) continue;
      auto dash = name.find('-', 5);
      auto parent = number(name.substr(5, dash - 5));
      if (!parent || *parent == ::getppid()) continue;
      if (::kill(static_cast<pid_t>(*parent), 0) != 0 && errno == ESRCH)
        ::unlinkat(dirfd, std::string(name).c_str(), 0);
    }
    ::closedir(d);
  }

  static std::string prompt_text(const json& prompt) {
    std::string text;
    if (!prompt.is_array()) return text;
    for (const auto& block : prompt) {
      if (!block.is_object()) continue;
      std::string type = block.value("type", "");
      std::string part;
      if (type == "text") part = block.value("text", "");
      else if (type == "resource_link") part = block.value("uri", "");
      else if (type == "resource" && block.contains("resource")) part = block["resource"].value("text", "");
      if (part.empty()) continue;
      if (!text.empty()) text += ' ';
      text += part;
    }
    return text;
  }

  // True once the client cancelled the turn or closed our stdin (it will not read the rest).
  bool cancelled(Session& s) {
    poll_input(0);
    if (eof_) s.cancelled = true;
    return s.cancelled;
  }

  void finish(const json& id, Session& s, const std::string& answer, std::string stop) {
    if (s.cancelled) stop = "cancelled";
    remember(s, s.prompt, answer);
    respond(id, {{"stopReason", stop}});
  }

  void on_prompt(const json& id, const json& params) {
    std::string sid = params.value("sessionId", "");
    auto it = sessions_.find(sid);
    if (it == sessions_.end()) {
      respond_error(id, -32002, "Resource not found: session " + sid);
      return;
    }
    Session& s = it->second;
    s.cancelled = false;
    std::string text = prompt_text(params.value("prompt", json::array()));
    Triggers t = parse_triggers(text);
    ++s.turns;
    s.prompt = text;

    if (t.exit_code) {
      std::string msg = "demo-agent: exiting with status " + std::to_string(*t.exit_code) + " as asked (/exit)\n";
      [[maybe_unused]] auto n = ::write(2, msg.data(), msg.size());
      flush();
      ::_exit(static_cast<int>(*t.exit_code & 255));
    }
    if (t.error) {
      respond_error(id, -32603, "Internal error: the prompt asked for one (/error)");
      return;
    }

    std::string answer;
    if (t.flood) {
      flood(id, s, *t.flood);
      return;
    }
    if (t.big) {
      answer.reserve(static_cast<std::size_t>(*t.big));
      for (long long i = 0; i < *t.big; ++i) answer += static_cast<char>('0' + i % 10);
      chunk(sid, answer);
      finish(id, s, answer, t.stop);
      return;
    }

    auto words = words_of(t.echo);
    const std::size_t chars = utf8_length(t.echo);
    std::string echo = t.echo;
    if (s.model == "shout")
      for (char& c : echo) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    answer = "Echo: " + echo + "\nSummary: " + std::to_string(words.size()) + " word" +
             (words.size() == 1 ? "" : "s") + ", " + std::to_string(chars) + " character" + (chars == 1 ? "" : "s") + "; turn " +
             std::to_string(s.turns) + " of this session.";
    bool quiet = t.chunks.has_value();
    std::string notes;  // what the tools did, told at the end of the answer

    if (!quiet) {
      chunk(sid, "Reading the prompt and counting its words.", "agent_thought_chunk");
      update(sid, {{"sessionUpdate", "plan"},
                   {"entries", {{{"content", "Read the prompt"}, {"priority", "high"}, {"status", "completed"}},
                                {{"content", "Count its words"}, {"priority", "medium"}, {"status", "in_progress"}},
                                {{"content", "Answer"}, {"priority", "medium"}, {"status", "pending"}}}}});
      std::string call = "count-" + std::to_string(s.turns);
      update(sid, {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", "Count words"}, {"kind", "think"},
                   {"status", "in_progress"}});
      update(sid, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", "completed"},
                   {"content", {{{"type", "content"}, {"content", {{"type", "text"}, {"text", std::to_string(words.size()) + " words"}}}}}}});
    }
    if (t.edit && !cancelled(s)) {
      if (s.mode == "read-only") notes += "Read-only mode: no file was edited.";
      else notes += edit(s, t);
    }
    if (!t.read_path.empty() && !cancelled(s)) notes += read(s, t.read_path);
    if (t.sleep_ms && !cancelled(s)) {
      auto until = Clock::now() + std::chrono::milliseconds(*t.sleep_ms);
      while (!s.cancelled && !eof_) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
        if (left <= 0) break;
        poll_input(static_cast<int>(left));
      }
    }
    if (s.cancelled || cancelled(s)) {
      finish(id, s, "", "cancelled");
      return;
    }
    if (!notes.empty()) answer += "\n" + notes;
    if (!quiet) {
      update(sid, {{"sessionUpdate", "plan"},
                   {"entries", {{{"content", "Read the prompt"}, {"priority", "high"}, {"status", "completed"}},
                                {{"content", "Count its words"}, {"priority", "medium"}, {"status", "completed"}},
                                {{"content", "Answer"}, {"priority", "medium"}, {"status", "in_progress"}}}}});
    }

    // The answer, streamed: word by word, or in exactly N pieces with /chunks N.
    std::vector<std::string_view> pieces;
    std::string_view rest(answer);
    if (t.chunks) {
      std::size_t n = static_cast<std::size_t>(std::max<long long>(1, *t.chunks));
      std::size_t pos = 0;
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t end = i + 1 == n ? rest.size() : std::min(rest.size(), (rest.size() * (i + 1)) / n);
        while (end < rest.size() && (static_cast<unsigned char>(rest[end]) & 0xC0) == 0x80) ++end;  // whole characters
        if (end < pos) end = pos;
        pieces.push_back(rest.substr(pos, end - pos));
        pos = end;
      }
    } else {
      std::size_t pos = 0;
      while (pos < rest.size()) {
        std::size_t end = rest.find_first_of(" \n", pos);
        end = end == std::string_view::npos ? rest.size() : end + 1;
        pieces.push_back(rest.substr(pos, end - pos));
        pos = end;
      }
    }
    for (std::size_t i = 0; i < pieces.size(); ++i) {
      chunk(sid, pieces[i]);
      if (i == 0 && t.crash) crash();
      if (i == 0 && t.hang) hang();
      bool look = !quiet || i % kFloodCheckEvery == kFloodCheckEvery - 1;
      if (look && cancelled(s)) break;
    }
    if (!quiet && !s.cancelled) {
      update(sid, {{"sessionUpdate", "usage_update"}, {"used", 1000 + 4 * s.turns}, {"size", 200000}});
    }
    finish(id, s, answer, t.stop);
  }

  void flood(const json& id, Session& s, long long n) {
    std::string line;
    line += R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
    append_escaped(line, s.id);
    line += R"(","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"w "}}}})";
    line += '\n';
    long long sent = 0;
    for (; sent < n; ++sent) {
      out_ += line;
      if (out_.size() >= kFlushAt) flush();
      if (sent % kFloodCheckEvery == kFloodCheckEvery - 1 && cancelled(s)) break;
    }
    finish(id, s, "(" + std::to_string(sent) + " flood chunks)", "end_turn");
  }

  std::string edit(Session& s, const Triggers& t) {
    std::string call = "edit-" + std::to_string(s.turns);
    std::string title = t.write_path.empty() ? "Edit a file" : "Write " + t.write_path;
    json tool = {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", title}, {"kind", "edit"}, {"status", "pending"}};
    if (!t.write_path.empty()) tool["locations"] = {{{"path", t.write_path}}};
    update(s.id, tool);
    auto r = request("session/request_permission",
                     {{"sessionId", s.id},
                      {"toolCall", {{"toolCallId", call}, {"title", title}, {"kind", "edit"}}},
                      {"options", {{{"optionId", "allow-once"}, {"name", "Allow"}, {"kind", "allow_once"}},
                                   {{"optionId", "allow-always"}, {"name", "Always allow"}, {"kind", "allow_always"}},
                                   {{"optionId", "reject-once"}, {"name", "Reject"}, {"kind", "reject_once"}},
                                   {{"optionId", "reject-always"}, {"name", "Always reject"}, {"kind", "reject_always"}}}}});
    std::string chosen;
    if (r && r->contains("result")) {
      const json& outcome = (*r)["result"].value("outcome", json::object());
      if (outcome.value("outcome", "") == "selected") chosen = outcome.value("optionId", "");
    }
    bool allowed = chosen == "allow-once" || chosen == "allow-always";
    std::string note;
    if (allowed && !t.write_path.empty()) {
      if (!fs_write_) {
        note = "Permission granted, but the client does not offer file writes (try --allow-fs).";
        allowed = false;
      } else {
        auto w = request("fs/write_text_file", {{"sessionId", s.id}, {"path", t.write_path}, {"content", t.echo + "\n"}});
        if (w && w->contains("result")) {
          note = "Permission granted: wrote " + t.write_path + ".";
        } else {
          allowed = false;
          note = "Permission granted, but writing " + t.write_path + " failed: " +
                 (w && w->contains("error") ? (*w)["error"].value("message", "error") : std::string("no answer"));
        }
      }
    } else if (allowed) {
      note = "Permission granted: the edit was applied (nothing was written: this is a demo).";
    } else {
      note = chosen.empty() ? "Permission was not given: the edit was skipped." : "Permission denied: the edit was skipped.";
    }
    update(s.id, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", allowed ? "completed" : "failed"}});
    return note;
  }

  std::string read(Session& s, const std::string& path) {
    if (!fs_read_) return "Cannot read " + path + ": the client does not offer file reads (try --allow-fs).";
    std::string call = "read-" + std::to_string(s.turns);
    update(s.id, {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", "Read " + path}, {"kind", "read"},
                  {"status", "in_progress"}, {"locations", {{{"path", path}}}}});
    auto r = request("fs/read_text_file", {{"sessionId", s.id}, {"path", path}});
    bool ok = r && r->contains("result");
    update(s.id, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", ok ? "completed" : "failed"}});
    if (ok) return "Read " + path + ": " + (*r)["result"].value("content", "");
    return "Could not read " + path + ": " + (r && r->contains("error") ? (*r)["error"].value("message", "error") : "no answer");
  }

  [[noreturn]] void crash() {
    flush();
    static const char msg[] = "demo-agent: crashing on purpose (/crash)\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    ::prctl(PR_SET_DUMPABLE, 0);  // no core file for a crash on purpose
    ::signal(SIGSEGV, SIG_DFL);
    ::raise(SIGSEGV);
    ::_exit(139);
  }

  [[noreturn]] void hang() {
    flush();
    static const char msg[] = "demo-agent: hanging on purpose (/hang)\n";
    [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
    char buf[kReadChunk];
    for (;;) {
      ssize_t r = ::read(in_, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) ::_exit(0);
    }
  }

  int in_;
  int out_fd_;
  std::string out_;
  std::string in_buf_;
  std::size_t in_pos_ = 0;
  bool eof_ = false;
  std::deque<json> deferred_;
  std::map<std::string, json> responses_;  // answers to our requests, by dumped id
  std::map<std::string, Session> sessions_;
  bool fs_read_ = false, fs_write_ = false;
  bool cleaned_ = false;
  bool warned_ = false;  // the state directory's trouble has been said on stderr
  long long next_id_ = 0;
  int created_ = 0;
  std::optional<int> exit_code_;
};

}  // namespace

int run_demo_agent(int in_fd, int out_fd) {
  // A closed stdout must end us quietly, not by SIGPIPE's default in the middle of a write.
  ::signal(SIGPIPE, SIG_IGN);
  DemoAgent agent(in_fd, out_fd);
  return agent.run();
}

}  // namespace tether::acp
