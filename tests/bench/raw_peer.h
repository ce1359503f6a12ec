// A raw ACP client's half of a conversation, shared by the bench's floor programs
// (raw_acp_client, cold_client): lines out, and the answers to our requests in, over a pair of
// descriptors (pipes to an agent, or one socket). No JSON library: a line is found by its id.
#pragma once

#include <unistd.h>

#include <optional>
#include <string>
#include <string_view>

namespace tether::bench {

struct RawPeer {
  int to = -1;    // what we write to (the agent's stdin, or a socket)
  int from = -1;  // what we read from (the agent's stdout, or the same socket)
  std::string buf;
};

// Writes `line` and a newline in one write; false when it could not.
inline bool send_line(RawPeer& p, std::string_view line) {
  std::string l(line);
  l += '\n';
  return ::write(p.to, l.data(), l.size()) == static_cast<ssize_t>(l.size());
}

// Reads until the response to our request `id` (a line with `"id":ID,` and no "method", so not a
// request or notification of the agent's), and returns it; nothing at end of file.
inline std::optional<std::string> await_answer(RawPeer& p, long id) {
  const std::string key = "\"id\":" + std::to_string(id) + ",";
  for (;;) {
    for (std::size_t nl; (nl = p.buf.find('\n')) != std::string::npos;) {
      std::string l = p.buf.substr(0, nl);
      p.buf.erase(0, nl + 1);
      if (l.find(key) != std::string::npos && l.find("\"method\"") == std::string::npos) return l;
    }
    char b[65536];
    ssize_t n = ::read(p.from, b, sizeof b);
    if (n <= 0) return std::nullopt;
    p.buf.append(b, static_cast<std::size_t>(n));
  }
}

// The "sessionId" string of a session/new answer (empty when it has none).
inline std::string session_id_of(const std::string& answer) {
  auto at = answer.find("\"sessionId\":\"");
  if (at == std::string::npos) return {};
  at += 13;
  return answer.substr(at, answer.find('"', at) - at);
}

}  // namespace tether::bench
