// The few things every fake bridge needs: reading newline-delimited messages from stdin, pulling a
// top-level member out of one with plain string scanning (no JSON library: a fake must stay small
// and obviously correct), and writing a whole line with one write(). Header-only; each fake is one
// small program with one behaviour.
#pragma once

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

namespace fake {

// Writes all of `data` to `fd`. A line up to the pipe's atomic size goes out in one write(); a
// bigger one may need several, which is what a real bridge's runtime does too.
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

inline bool write_line(int fd, std::string line) {
  line.push_back('\n');
  return write_all(fd, line);
}

// Buffered line reader over a file descriptor (stdin by default).
class LineReader {
 public:
  explicit LineReader(int fd = 0) : fd_(fd) {}

  // A complete line already buffered (without its '\n'), or nothing.
  std::optional<std::string> take() {
    auto nl = buf_.find('\n', start_);
    if (nl == std::string::npos) return std::nullopt;
    std::string line = buf_.substr(start_, nl - start_);
    start_ = nl + 1;
    if (start_ == buf_.size()) {
      buf_.clear();
      start_ = 0;
    }
    return line;
  }

  // One read(); false at EOF or error.
  bool fill() {
    char chunk[65536];
    for (;;) {
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      buf_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
  }

  // The next line, blocking; false at EOF (a last line without '\n' is dropped: requests end in one).
  bool next(std::string& line) {
    for (;;) {
      if (auto l = take()) {
        line = std::move(*l);
        return true;
      }
      if (!fill()) return false;
    }
  }

 private:
  int fd_;
  std::string buf_;
  std::size_t start_ = 0;
};

// One past the end of the JSON value that starts at s[i]: strings and nesting are honoured, nothing
// else is checked.
inline std::size_t value_end(std::string_view s, std::size_t i) {
  int depth = 0;
  bool in_str = false;
  for (; i < s.size(); ++i) {
    char c = s[i];
    if (in_str) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_str = false;
        if (depth == 0) return i + 1;
      }
      continue;
    }
    if (c == '"') {
      in_str = true;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return i;
      if (--depth == 0) return i + 1;
    } else if (c == ',' && depth == 0) {
      return i;
    }
  }
  return i;
}

inline std::size_t skip_space(std::string_view s, std::size_t i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  return i;
}

// The raw text of the top-level member `key` of the object in `msg` ("7", "\"ping\"", "{...}").
inline std::optional<std::string> field(std::string_view msg, std::string_view key) {
  std::size_t i = skip_space(msg, 0);
  if (i >= msg.size() || msg[i] != '{') return std::nullopt;
  ++i;
  for (;;) {
    i = skip_space(msg, i);
    if (i < msg.size() && msg[i] == ',') i = skip_space(msg, i + 1);
    if (i >= msg.size() || msg[i] != '"') return std::nullopt;
    std::size_t kend = value_end(msg, i);
    std::string_view k = msg.substr(i + 1, kend - i - 2);
    i = skip_space(msg, kend);
    if (i >= msg.size() || msg[i] != ':') return std::nullopt;
    i = skip_space(msg, i + 1);
    std::size_t vend = value_end(msg, i);
    if (k == key) {
      std::string_view v = msg.substr(i, vend - i);
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
      return std::string(v);
    }
    i = vend;
  }
}

// The method name without quotes (no escapes expected in method names), or nothing.
inline std::optional<std::string> method(std::string_view msg) {
  auto m = field(msg, "method");
  if (!m || m->size() < 2 || m->front() != '"') return std::nullopt;
  return m->substr(1, m->size() - 2);
}

// A request has a method and an id; notifications and responses are not requests.
inline bool is_request(std::string_view msg) { return method(msg) && field(msg, "id"); }

inline long long int_field(std::string_view msg, std::string_view key, long long fallback) {
  auto v = field(msg, key);
  if (!v || v->empty()) return fallback;
  return std::strtoll(v->c_str(), nullptr, 10);
}

inline std::string result_line(const std::string& id, const std::string& result) {
  return "{\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"result\":" + result + "}";
}

inline std::string error_line(const std::string& id, int code, const std::string& message) {
  return "{\"jsonrpc\":\"2.0\",\"id\":" + id + ",\"error\":{\"code\":" + std::to_string(code) +
         ",\"message\":\"" + message + "\"}}";
}

// Answers `request` with its params (or {}) as the result.
inline bool echo(std::string_view request) {
  auto id = field(request, "id");
  auto params = field(request, "params");
  return write_line(1, result_line(*id, params ? *params : "{}"));
}

// Appends one line to $FAKE_COUNT_FILE, when set, so a test can count the spawns of a fake.
inline void count_spawn() {
  const char* path = std::getenv("FAKE_COUNT_FILE");
  if (!path || !*path) return;
  int fd = ::open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string line = std::to_string(::getpid()) + "\n";
  [[maybe_unused]] bool ok = write_all(fd, line);
  ::close(fd);
}

}  // namespace fake
