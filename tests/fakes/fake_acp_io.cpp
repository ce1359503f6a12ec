// The fake ACP agent's plumbing: newline-delimited JSON-RPC on stdin and stdout, the message
// builders and small file helpers its modes share. No behaviour of any mode lives here.
#include <errno.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <fstream>

#include "fake_acp_agent.h"

namespace fake_acp {

std::string mode, arg;
std::string session_id = "fake-session-1";
std::string session_cwd;
long next_id = 0;
json client_capabilities = json::object();

const std::string kHostile =
    "\x1b]52;c;SG9zdGlsZQ==\x07"   // OSC 52: write the clipboard
    "\x1b]0;pwned-title\x1b\\"     // OSC 0: the window title, ST-terminated
    "\x1b[2J\x1b[1;1H"              // CSI: clear the screen, cursor home
    "\xc2\x9b" "31m"               // C1 CSI, UTF-8 encoded
    "\xc2\x9d" "0;c1-title\x07"    // C1 OSC, UTF-8 encoded
    "\x1bP1$q\x1b\\"               // DCS
    "\x07\x08\x7f";                 // BEL, BS, DEL
const std::string kHostileRaw = kHostile + "\x9b" "2J" "\x9d" "0;raw-title\x07";

std::string evil(const std::string& word) { return word + kHostile + " " + word; }

namespace {

std::string in_buf;          // bytes read, not yet split into lines
std::deque<json> backlog;    // messages read while waiting for something else, next() returns them first
bool eof = false;

// The next complete line of in_buf that is a JSON object; other lines are dropped.
std::optional<json> take() {
  for (;;) {
    auto nl = in_buf.find('\n');
    if (nl == std::string::npos) return std::nullopt;
    std::string l = in_buf.substr(0, nl);
    in_buf.erase(0, nl + 1);
    json j = json::parse(l, nullptr, false);
    if (j.is_object()) return j;
  }
}

// One read of what arrives within `timeout_ms` (negative: until something does); sets eof.
void fill(int timeout_ms) {
  if (timeout_ms >= 0) {
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return;
  }
  char buf[65536];
  ssize_t n = ::read(0, buf, sizeof buf);
  if (n < 0 && errno == EINTR) return;
  if (n <= 0) {
    eof = true;
    return;
  }
  in_buf.append(buf, static_cast<std::size_t>(n));
}

}  // namespace

void write_all(const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(1, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(0);
    off += static_cast<std::size_t>(n);
  }
}

std::string line(const json& j) { return j.dump() + "\n"; }
void send(const json& j) { write_all(line(j)); }

json result(const json& id, json r) { return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(r)}}; }
json error(const json& id, int code, const std::string& msg) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", msg}}}};
}
json notification(const std::string& method, json params) {
  return {{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
}
json update(json u) { return notification("session/update", {{"sessionId", session_id}, {"update", std::move(u)}}); }
json chunk(const std::string& text) {
  return update({{"sessionUpdate", "agent_message_chunk"}, {"content", {{"type", "text"}, {"text", text}}}});
}

std::optional<json> next() {
  for (;;) {
    if (!backlog.empty()) {
      json j = std::move(backlog.front());
      backlog.pop_front();
      return j;
    }
    if (auto j = take()) return j;
    if (eof) return std::nullopt;
    fill(-1);
  }
}

bool input_ready() {
  if (!backlog.empty() || in_buf.find('\n') != std::string::npos) return true;
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

json await_response(long id, std::vector<json>& others) {
  for (;;) {
    auto m = next();
    if (!m) ::_exit(0);
    if (!m->contains("method") && m->contains("id") && (*m)["id"] == id) return *m;
    others.push_back(*m);
  }
}

bool wait_for_cancel(long ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
  for (;;) {
    while (auto m = take()) backlog.push_back(std::move(*m));
    for (auto it = backlog.begin(); it != backlog.end(); ++it) {
      if (it->value("method", "") == "session/cancel") {
        backlog.erase(it);
        return true;
      }
    }
    if (eof) ::_exit(0);
    int left = -1;
    if (ms >= 0) {
      auto d = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (d <= 0) return false;
      left = static_cast<int>(d);
    }
    fill(left);
  }
}

void append_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app) << text << '\n' << std::flush;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

std::string prompt_text(const json& params) {
  if (params.contains("prompt") && params["prompt"].is_array() && !params["prompt"].empty())
    return params["prompt"][0].value("text", "");
  return "";
}

}  // namespace fake_acp
