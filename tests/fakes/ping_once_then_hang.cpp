// Fake bridge: answers requests like echo until the first "$/ping", answers that ping (with a
// result, or with a -32601 error given --error), then hangs: it keeps reading stdin (so writes to
// it never block) but answers nothing, sends nothing, and never exits on its own, not even at
// stdin EOF. SIGTERM ends it. It says on stderr when it answered the ping, on CLOCK_MONOTONIC
// (std::chrono::steady_clock's clock), so a test can time what follows from that moment exactly.
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "fake_util.h"

int main(int argc, char** argv) {
  const bool answer_error = argc > 1 && strcmp(argv[1], "--error") == 0;
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  bool hung = false;
  while (in.next(line)) {
    if (hung || !fake::is_request(line)) continue;
    if (fake::method(line) == "$/ping") {
      auto id = fake::field(line, "id");
      if (answer_error) fake::write_line(1, fake::error_line(*id, -32601, "Method not found"));
      else fake::write_line(1, fake::result_line(*id, "{}"));
      timespec now{};
      ::clock_gettime(CLOCK_MONOTONIC, &now);
      long long ns = static_cast<long long>(now.tv_sec) * 1000000000LL + now.tv_nsec;
      fake::write_all(2, "answered one ping at " + std::to_string(ns) + " ns, now hanging\n");
      hung = true;
      continue;
    }
    fake::echo(line);
  }
  for (;;) ::pause();
}
