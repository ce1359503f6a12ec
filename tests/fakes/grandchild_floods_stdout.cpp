// Fake bridge: on its first request, forks a grandchild that writes "tick" notifications to the
// inherited stdout as fast as the pipe takes them, forever; the bridge then answers and exits 0.
// Whatever the grandchild writes after the bridge's exit is not the bridge's output.
#include <unistd.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    auto id = *fake::field(line, "id");
    pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid == 0) {
      std::string batch;
      for (long seq = 0;; ) {
        batch.clear();
        for (int i = 0; i < 512; ++i, ++seq)
          batch += "{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{\"seq\":" + std::to_string(seq) + "}}\n";
        if (!fake::write_all(1, batch)) ::_exit(0);
      }
    }
    fake::write_line(1, fake::result_line(id, "{\"grandchild\":" + std::to_string(pid) + "}"));
    ::_exit(0);
  }
  return 0;
}
