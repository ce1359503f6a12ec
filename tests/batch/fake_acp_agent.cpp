// A small ACP v1 agent for the batch tests, with behaviours chosen by words in the prompt (so one
// batch can mix them). It answers "echo: <prompt>" in two chunks unless a word says otherwise:
//   sleep:MS         wait MS milliseconds first (a session/cancel ends the wait: stopReason cancelled)
//   crash            die by SIGKILL before answering (every time)
//   crash-once:KEY   die by SIGKILL the first time KEY is seen ($FAKE_STATE_DIR/KEY marks it)
//   hang-once:KEY    the first time KEY is seen, never answer (until session/cancel)
//   error            answer the prompt with a JSON-RPC error
//   refuse           answer with stopReason refusal
//   oversize:N       send one more chunk of N bytes ('y') between the two halves of the answer
// Each session/prompt appends "<pid> <prompt>" to $FAKE_LOG when set, so tests can count runs.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>

using nlohmann::json;

namespace {

std::string inbuf;
std::deque<json> backlog;  // messages read while waiting, handled afterwards
bool eof = false;

void send(const json& msg) {
  std::string line = msg.dump() + "\n";
  const char* p = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(1, p, left);
    if (n <= 0) std::_Exit(0);
    p += n;
    left -= static_cast<std::size_t>(n);
  }
}

// Reads what is available within `timeout_ms` (-1: until something arrives) into complete messages.
void read_input(int timeout_ms) {
  pollfd p{0, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return;
  char buf[65536];
  ssize_t n = ::read(0, buf, sizeof buf);
  if (n <= 0) {
    eof = true;
    return;
  }
  inbuf.append(buf, static_cast<std::size_t>(n));
  std::size_t nl;
  while ((nl = inbuf.find('\n')) != std::string::npos) {
    json msg = json::parse(inbuf.substr(0, nl), nullptr, false);
    inbuf.erase(0, nl + 1);
    if (msg.is_object()) backlog.push_back(std::move(msg));
  }
}

std::optional<std::string> word_arg(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w.rfind(word, 0) == 0) return w.substr(word.size());
  return std::nullopt;
}

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

// True the first time `key` is seen by any agent process of this test.
bool first_time(const std::string& key) {
  const char* dir = std::getenv("FAKE_STATE_DIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/" + key;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return false;
  ::fsync(fd);
  ::close(fd);
  return true;
}

void update(const std::string& sid, const std::string& text) {
  send({{"jsonrpc", "2.0"},
        {"method", "session/update"},
        {"params",
         {{"sessionId", sid},
          {"update", {{"sessionUpdate", "agent_message_chunk"}, {"content", {{"type", "text"}, {"text", text}}}}}}}});
}

// Waits up to `ms` (forever when negative) for a session/cancel; other messages stay queued.
bool wait_for_cancel(long ms) {
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms < 0 ? 0 : ms);
  for (;;) {
    for (auto it = backlog.begin(); it != backlog.end(); ++it) {
      if (it->value("method", "") == "session/cancel") {
        backlog.erase(it);
        return true;
      }
    }
    if (eof) std::_Exit(0);
    int left = -1;
    if (ms >= 0) {
      auto d = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()).count();
      if (d <= 0) return false;
      left = static_cast<int>(d);
    }
    read_input(left);
  }
}

int sessions = 0;

void handle(const json& msg) {
  if (!msg.contains("id") || !msg.contains("method")) return;  // notifications, stray responses
  const json& id = msg["id"];
  std::string method = msg["method"];
  json params = msg.value("params", json::object());
  if (method == "initialize") {
    send({{"jsonrpc", "2.0"}, {"id", id},
          {"result", {{"protocolVersion", 1}, {"agentCapabilities", {{"loadSession", false}}},
                      {"agentInfo", {{"name", "batch-fake"}, {"version", "1"}}}, {"authMethods", json::array()}}}});
  } else if (method == "session/new") {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"result", {{"sessionId", "s" + std::to_string(++sessions)}}}});
  } else if (method == "session/prompt") {
    std::string sid = params.value("sessionId", "");
    std::string text;
    for (const auto& block : params.value("prompt", json::array()))
      if (block.value("type", "") == "text") text += block.value("text", "");
    if (const char* log = std::getenv("FAKE_LOG")) {
      if (FILE* f = std::fopen(log, "a")) {
        std::fprintf(f, "%d %s\n", static_cast<int>(::getpid()), text.c_str());
        std::fclose(f);
      }
    }
    if (has_word(text, "crash")) ::kill(::getpid(), SIGKILL);
    if (auto key = word_arg(text, "crash-once:"); key && first_time("crash-" + *key)) ::kill(::getpid(), SIGKILL);
    bool cancelled = false;
    if (auto key = word_arg(text, "hang-once:"); key && first_time("hang-" + *key)) cancelled = wait_for_cancel(-1);
    if (auto ms = word_arg(text, "sleep:"); ms && !cancelled) cancelled = wait_for_cancel(std::stol(*ms));
    if (cancelled) {
      send({{"jsonrpc", "2.0"}, {"id", id}, {"result", {{"stopReason", "cancelled"}}}});
      return;
    }
    if (has_word(text, "error")) {
      send({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", -32603}, {"message", "asked to fail"}}}});
      return;
    }
    std::string answer = "echo: " + text;
    std::size_t half = answer.size() / 2;
    while (half > 0 && (static_cast<unsigned char>(answer[half]) & 0xC0) == 0x80) --half;  // not inside a character
    update(sid, answer.substr(0, half));
    if (auto n = word_arg(text, "oversize:")) update(sid, std::string(std::stoul(*n), 'y'));
    update(sid, answer.substr(half));
    send({{"jsonrpc", "2.0"}, {"id", id}, {"result", {{"stopReason", has_word(text, "refuse") ? "refusal" : "end_turn"}}}});
  } else {
    send({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", -32601}, {"message", "Method not found"}}}});
  }
}

}  // namespace

int main() {
  ::signal(SIGPIPE, SIG_DFL);
  for (;;) {
    while (!backlog.empty()) {
      json msg = std::move(backlog.front());
      backlog.pop_front();
      handle(msg);
    }
    if (eof) return 0;
    read_input(-1);
  }
}
