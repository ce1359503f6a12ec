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

#include "raw_peer.h"

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
  tether::bench::RawPeer agent{in[1], out[0], {}};
  // The answer to request `id`; the agent closing its stdout first ends the run.
  auto await = [&](int id) {
    auto answer = tether::bench::await_answer(agent, id);
    if (!answer) {
      std::fprintf(stderr, "raw_acp_client: the agent closed its stdout\n");
      std::exit(1);
    }
    return *answer;
  };
  auto send = [&](const std::string& line) {
    if (!tether::bench::send_line(agent, line)) std::exit(1);
  };
  send(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})");
  await(1);
  send(R"({"jsonrpc":"2.0","id":2,"method":"session/new","params":{"cwd":"/tmp","mcpServers":[]}})");
  std::string l = await(2);
  std::string sid = tether::bench::session_id_of(l);
  if (sid.empty()) {
    std::fprintf(stderr, "raw_acp_client: no session id in %s\n", l.c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < turns; ++i) {
    int id = 3 + i;
    send(R"({"jsonrpc":"2.0","id":)" + std::to_string(id) + R"(,"method":"session/prompt","params":{"sessionId":")" + sid +
         R"(","prompt":[{"type":"text","text":"/chunks 1 hi"}]}})");
    await(id);
  }
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%.3f\n", s / turns * 1e6);
  ::close(agent.to);
  ::waitpid(pid, nullptr, 0);
  return 0;
}
