// The floor of a one-shot prompt: what `tether prompt hi` does, with nothing of tether. It spawns
// the agent (posix_spawn, as cheap a start as Linux offers), sends initialize, session/new and one
// prompt "hi" over plain pipes, each after the previous answer, then closes the agent's stdin and
// waits for it to exit. With --connect it does the same over a running `tether serve`'s socket
// (which speaks ACP) instead: what `tether prompt --connect hi` does, with nothing of tether on the
// client's side. No threads, no poll, no JSON library. scripts/bench (section wire_start) sets
// these times beside tether's, against the same agent: process start-up and page faults cost very
// different amounts on different machines, and this is what the machine itself charges for the
// work a one-shot prompt cannot avoid.
//
// Usage: cold_client AGENT RUNS
//        cold_client --connect SOCKET RUNS
// Prints one line per run: its wall time in ms ("%.3f"). The client half is raw_peer.h's, as
// raw_acp_client's is.
#include <fcntl.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "raw_peer.h"

extern char** environ;

namespace {

using tether::bench::RawPeer;

// initialize, session/new, and a prompt in the session it made; false when an answer is missing.
bool converse(RawPeer& a) {
  using tether::bench::await_answer, tether::bench::send_line;
  if (!send_line(a, R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})") ||
      !await_answer(a, 1) ||
      !send_line(a, R"({"jsonrpc":"2.0","id":2,"method":"session/new","params":{"cwd":"/tmp","mcpServers":[]}})"))
    return false;
  auto answer = await_answer(a, 2);
  std::string sid = answer ? tether::bench::session_id_of(*answer) : "";
  return !sid.empty() &&
         send_line(a, R"({"jsonrpc":"2.0","id":3,"method":"session/prompt","params":{"sessionId":")" + sid +
                          R"(","prompt":[{"type":"text","text":"hi"}]}})") &&
         await_answer(a, 3);
}

bool spawned_one_shot(const char* agent_path) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC)) return false;
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  ::posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  pid_t pid = -1;
  char* argv[] = {const_cast<char*>(agent_path), nullptr};
  int rc = ::posix_spawn(&pid, agent_path, &fa, nullptr, argv, environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) return false;
  RawPeer a{in[1], out[0], {}};
  bool ok = converse(a);
  ::close(a.to);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(a.from);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool connected_one_shot(const char* socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (std::strlen(socket_path) >= sizeof addr.sun_path) return false;
  std::strcpy(addr.sun_path, socket_path);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  RawPeer a{fd, fd, {}};
  bool ok = ::connect(a.to, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 && converse(a);
  ::close(a.to);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  const bool connect = argc == 4 && std::strcmp(argv[1], "--connect") == 0;
  if (argc != 3 + connect || std::atoi(argv[argc - 1]) < 1) {
    std::fprintf(stderr, "usage: cold_client AGENT RUNS\n       cold_client --connect SOCKET RUNS\n");
    return 64;
  }
  const char* target = argv[argc - 2];
  for (int i = 0, runs = std::atoi(argv[argc - 1]); i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    if (!(connect ? connected_one_shot(target) : spawned_one_shot(target))) {
      std::fprintf(stderr, "cold_client: no answer to one of the three requests, or the agent failed\n");
      return 1;
    }
    std::printf("%.3f\n", std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return 0;
}
