// The floor for tether's per-turn latency: a raw ACP client that drives the demo agent
// (`TETHER demo-agent`) over plain pipes, one prompt at a time, no threads, no poll, no tether. It
// sends initialize and session/new, then TURNS prompts "/chunks 1 hi" (one chunk each), each after
// the previous answer arrived, and prints the mean wall time per turn. scripts/bench sets it beside
// `tether prompt --repeat` against the same agent (section prompt_turns).
//
// Usage: raw_acp_client TETHER TURNS
// Prints one line: the mean µs per turn ("%.3f").
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

int to_agent = -1;
int from_agent = -1;
std::string buf;

std::string read_line() {
  for (;;) {
    auto nl = buf.find('\n');
    if (nl != std::string::npos) {
      std::string l = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return l;
    }
    char b[65536];
    ssize_t n = ::read(from_agent, b, sizeof b);
    if (n <= 0) {
      std::fprintf(stderr, "raw_acp_client: the agent closed its stdout\n");
      std::exit(1);
    }
    buf.append(b, static_cast<std::size_t>(n));
  }
}

void send(const std::string& s) {
  std::string l = s + "\n";
  if (::write(to_agent, l.data(), l.size()) != static_cast<ssize_t>(l.size())) std::exit(1);
}

// The response to our request `id` (not a request or notification of the agent's).
std::string await(int id) {
  std::string key = "\"id\":" + std::to_string(id) + ",";
  for (;;) {
    std::string l = read_line();
    if (l.find(key) != std::string::npos && l.find("\"method\"") == std::string::npos) return l;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: raw_acp_client TETHER TURNS\n");
    return 64;
  }
  int turns = std::atoi(argv[2]);
  if (turns < 1) {
    std::fprintf(stderr, "raw_acp_client: TURNS must be a positive number\n");
    return 64;
  }
  int in[2], out[2];
  if (::pipe(in) || ::pipe(out)) return 1;
  pid_t pid = ::fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::close(in[1]);
    ::close(out[0]);
    ::execl(argv[1], argv[1], "demo-agent", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  to_agent = in[1];
  from_agent = out[0];
  send(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})");
  await(1);
  send(R"({"jsonrpc":"2.0","id":2,"method":"session/new","params":{"cwd":"/tmp","mcpServers":[]}})");
  std::string l = await(2);
  auto p = l.find("\"sessionId\":\"");
  if (p == std::string::npos) {
    std::fprintf(stderr, "raw_acp_client: no session id in %s\n", l.c_str());
    return 1;
  }
  std::string sid = l.substr(p + 13, l.find('"', p + 13) - p - 13);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < turns; ++i) {
    int id = 3 + i;
    send(R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":"session/prompt","params":{"sessionId":")" + sid +
         R"(","prompt":[{"type":"text","text":"/chunks 1 hi"}]}})");
    await(id);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%.3f\n", s / turns * 1e6);
  ::close(to_agent);
  ::waitpid(pid, nullptr, 0);
  return 0;
}
