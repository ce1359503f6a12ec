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
// Prints one line per run: its wall time in ms ("%.3f").
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

extern char** environ;

namespace {

struct Agent {
  pid_t pid = -1;
  int to = -1;
  int from = -1;
  std::string buf;
  std::string last;  // the last line await() found (and what came before it)
};

bool send(Agent& a, const char* line) {
  std::size_t n = std::strlen(line);
  return ::write(a.to, line, n) == static_cast<ssize_t>(n);
}

// Reads until a whole line holding `key` ("\"id\":N,") has arrived, and keeps it in `last`;
// false at end of file.
bool await(Agent& a, const char* key) {
  for (;;) {
    if (auto k = a.buf.find(key); k != std::string::npos) {
      if (auto nl = a.buf.find('\n', k); nl != std::string::npos) {
        a.last = a.buf.substr(0, nl);
        a.buf.erase(0, nl + 1);
        return true;
      }
    }
    char b[65536];
    ssize_t n = ::read(a.from, b, sizeof b);
    if (n <= 0) return false;
    a.buf.append(b, static_cast<std::size_t>(n));
  }
}

// initialize, session/new, and a prompt in the session it made; false when an answer is missing.
bool converse(Agent& a) {
  if (!send(a, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"initialize\",\"params\":{\"protocolVersion\":1,"
               "\"clientCapabilities\":{}}}\n") ||
      !await(a, "\"id\":1,") ||
      !send(a, "{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"session/new\",\"params\":{\"cwd\":\"/tmp\",\"mcpServers\":[]}}\n") ||
      !await(a, "\"id\":2,"))
    return false;
  const std::string& answer = a.last;
  auto at = answer.find("\"sessionId\":\"");
  if (at == std::string::npos) return false;
  at += 13;
  std::string prompt = "{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"session/prompt\",\"params\":{\"sessionId\":\"" +
                       answer.substr(at, answer.find('"', at) - at) + "\",\"prompt\":[{\"type\":\"text\",\"text\":\"hi\"}]}}\n";
  return send(a, prompt.c_str()) && await(a, "\"id\":3,");
}

bool spawned_one_shot(const char* agent_path) {
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC)) return false;
  posix_spawn_file_actions_t fa;
  ::posix_spawn_file_actions_init(&fa);
  ::posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  ::posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  Agent a;
  char* argv[] = {const_cast<char*>(agent_path), nullptr};
  int rc = ::posix_spawn(&a.pid, agent_path, &fa, nullptr, argv, environ);
  ::posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  if (rc != 0) return false;
  a.to = in[1];
  a.from = out[0];
  bool ok = converse(a);
  ::close(a.to);
  int status = 0;
  ::waitpid(a.pid, &status, 0);
  ::close(a.from);
  return ok && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool connected_one_shot(const char* socket_path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (std::strlen(socket_path) >= sizeof addr.sun_path) return false;
  std::strcpy(addr.sun_path, socket_path);
  Agent a;
  a.to = a.from = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (a.to < 0) return false;
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
