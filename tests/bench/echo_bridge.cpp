// A fast echo bridge for the benchmarks: reads newline-delimited JSON-RPC requests on stdin and
// answers each with {"jsonrpc":"2.0","id":<same id>,"result":<params>} in one write(2).
// Notifications (no id) get no answer. No JSON library: a small scanner walks the top-level object
// to find the raw text of "id" and "params", so the bridge costs as little as possible and the
// figures measure the transport, not this program. It trusts its input to be JSON; a line it
// cannot scan is ignored.
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "scan_json.h"

namespace {

using bench_json::skip_string;
using bench_json::skip_value;
using bench_json::skip_ws;

// Finds the raw text of the top-level "id" and "params" values of one JSON object line.
bool scan(std::string_view line, std::string_view& id, std::string_view& params) {
  std::size_t i = skip_ws(line, 0);
  if (i >= line.size() || line[i] != '{') return false;
  i = skip_ws(line, i + 1);
  if (i < line.size() && line[i] == '}') return true;
  while (i < line.size()) {
    if (line[i] != '"') return false;
    std::size_t key_end = skip_string(line, i);
    if (key_end == std::string_view::npos) return false;
    std::string_view key = line.substr(i + 1, key_end - i - 2);
    i = skip_ws(line, key_end);
    if (i >= line.size() || line[i] != ':') return false;
    i = skip_ws(line, i + 1);
    std::size_t end = skip_value(line, i);
    if (end == std::string_view::npos) return false;
    if (key == "id") id = line.substr(i, end - i);
    else if (key == "params") params = line.substr(i, end - i);
    i = skip_ws(line, end);
    if (i >= line.size()) return false;
    if (line[i] == '}') return true;
    if (line[i] != ',') return false;
    i = skip_ws(line, i + 1);
  }
  return false;
}

bool write_all(const char* p, std::size_t n) {
  while (n > 0) {
    ssize_t w = ::write(STDOUT_FILENO, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

int main() {
  std::string buf;
  buf.reserve(1 << 20);
  std::string out;
  out.reserve(1 << 12);
  static char chunk[1 << 16];
  std::size_t start = 0;  // first byte of buf not yet framed
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (n < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (n == 0) return 0;
    buf.append(chunk, static_cast<std::size_t>(n));
    for (;;) {
      std::size_t nl = buf.find('\n', start);
      if (nl == std::string::npos) break;
      std::string_view line(buf.data() + start, nl - start);
      start = nl + 1;
      std::string_view id, params;
      if (!scan(line, id, params) || id.empty()) continue;  // notification or not an object
      out.assign("{\"jsonrpc\":\"2.0\",\"id\":");
      out.append(id);
      out.append(",\"result\":");
      if (params.empty()) out.append("null");
      else out.append(params);
      out.append("}\n");
      if (!write_all(out.data(), out.size())) return 0;  // the reader went away
    }
    if (start == buf.size()) {
      buf.clear();
      start = 0;
    } else if (start > (1 << 16)) {
      buf.erase(0, start);
      start = 0;
    }
  }
}
