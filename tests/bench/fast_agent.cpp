// A fast ACP agent for the benchmarks: the same agent behind every client that scripts/bench
// compares (tether, the official SDK's client, a raw pipe), so that the figures measure the client
// and the transport, not the agent. No JSON library and no threads: a small scanner finds the
// top-level "id" and "method" and the first prompt text, and each answer goes out in one write(2).
//
//   initialize      protocol version 1, no capabilities beyond the defaults
//   session/new     {"sessionId":"fast-K"}, K = 1, 2, ... (distinct: `tether serve` opens its main
//                   session and one per client that asks, and keeps them apart by id)
//   session/prompt  "flood N": N one-word agent_message_chunk notifications, written in 64 KiB
//                   writes, then the answer; any other text: one chunk "ok" and the answer, in
//                   one write (a turn costs one read and one write here)
//   a notification  ignored (session/cancel included: a turn here never waits)
//   any other request: -32601
//
// It trusts its input to be JSON from a well-behaved client; a line it cannot scan is ignored.
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <string>
#include <string_view>

#include "scan_json.h"

namespace {

using bench_json::skip_string;
using bench_json::skip_value;
using bench_json::skip_ws;

// The raw text of the top-level "id" and "method" values of one JSON object line.
bool scan(std::string_view line, std::string_view& id, std::string_view& method) {
  std::size_t i = skip_ws(line, 0);
  if (i >= line.size() || line[i] != '{') return false;
  i = skip_ws(line, i + 1);
  while (i < line.size() && line[i] == '"') {
    std::size_t key_end = skip_string(line, i);
    if (key_end == std::string_view::npos) return false;
    std::string_view key = line.substr(i + 1, key_end - i - 2);
    i = skip_ws(line, key_end);
    if (i >= line.size() || line[i] != ':') return false;
    i = skip_ws(line, i + 1);
    std::size_t end = skip_value(line, i);
    if (end == std::string_view::npos) return false;
    if (key == "id") id = line.substr(i, end - i);
    else if (key == "method" && end - i >= 2) method = line.substr(i + 1, end - i - 2);
    i = skip_ws(line, end);
    if (i < line.size() && line[i] == ',') i = skip_ws(line, i + 1);
  }
  return true;
}

// The first string value of KEY anywhere in the line (its raw text, not unescaped: enough for
// the prompt text and the session id the benchmarks send).
std::string_view string_field(std::string_view line, std::string_view key) {
  std::string pattern = "\"";
  pattern.append(key).append("\":\"");
  auto k = line.find(pattern);
  if (k == std::string_view::npos) return {};
  std::size_t start = k + pattern.size();
  std::size_t end = skip_string(line, start - 1);
  if (end == std::string_view::npos) return {};
  return line.substr(start, end - 1 - start);
}

long sessions = 0;

std::string out;

void flush() {
  const char* p = out.data();
  std::size_t n = out.size();
  while (n > 0) {
    ssize_t w = ::write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) std::exit(0);  // the client went away
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  out.clear();
}

void answer(std::string_view id, std::string_view result) {
  out.append("{\"jsonrpc\":\"2.0\",\"id\":").append(id).append(",\"result\":").append(result).append("}\n");
}

void chunk(std::string_view session, std::string_view text) {
  out.append("{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"")
      .append(session)
      .append("\",\"update\":{\"sessionUpdate\":\"agent_message_chunk\",\"content\":{\"type\":\"text\",\"text\":\"")
      .append(text)
      .append("\"}}}}\n");
}

void prompt(std::string_view id, std::string_view session, std::string_view text) {
  if (text.starts_with("flood ")) {
    long n = std::atol(std::string(text.substr(6)).c_str());
    for (long i = 0; i < n; ++i) {
      chunk(session, i + 1 < n ? "word " : "word");
      if (out.size() >= (std::size_t{64} << 10)) flush();
    }
  } else {
    chunk(session, "ok");
  }
  answer(id, R"({"stopReason":"end_turn"})");
  flush();
}

void handle(std::string_view line) {
  std::string_view id, method;
  if (!scan(line, id, method) || id.empty() || method.empty()) return;  // a notification or a response
  if (method == "initialize") {
    answer(id, R"({"protocolVersion":1,"agentCapabilities":{"loadSession":false,"promptCapabilities":{}},"authMethods":[]})");
  } else if (method == "session/new") {
    answer(id, "{\"sessionId\":\"fast-" + std::to_string(++sessions) + "\"}");
  } else if (method == "session/prompt") {
    prompt(id, string_field(line, "sessionId"), string_field(line, "text"));
    return;
  } else {
    out.append("{\"jsonrpc\":\"2.0\",\"id\":").append(id).append(
        R"(,"error":{"code":-32601,"message":"method not found"}})"
        "\n");
  }
  flush();
}

}  // namespace

int main() {
  std::string buf;
  static char chunk_buf[1 << 16];
  std::size_t start = 0;
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, chunk_buf, sizeof chunk_buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    buf.append(chunk_buf, static_cast<std::size_t>(n));
    for (;;) {
      std::size_t nl = buf.find('\n', start);
      if (nl == std::string::npos) break;
      handle(std::string_view(buf.data() + start, nl - start));
      start = nl + 1;
    }
    buf.erase(0, start);
    start = 0;
  }
}
