// Fake bridge: on its first request, forks a grandchild that inherits stdout and stderr and sleeps
// forever (pause), answers {"grandchild":PID}, and exits 0 at once. The grandchild stays in the
// bridge's process group; it prints "grandchild PID" on stderr too. With --ignore-term the
// grandchild ignores SIGTERM, so only SIGKILL ends it.
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "fake_util.h"

int main(int argc, char** argv) {
  const bool ignore_term = argc > 1 && strcmp(argv[1], "--ignore-term") == 0;
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      if (ignore_term) ::signal(SIGTERM, SIG_IGN);
      for (;;) ::pause();
    }
    fake::write_all(2, "grandchild " + std::to_string(pid) + "\n");
    auto id = fake::field(line, "id");
    fake::write_line(1, fake::result_line(*id, "{\"grandchild\":" + std::to_string(pid) + "}"));
    ::_exit(0);
  }
  return 0;
}
