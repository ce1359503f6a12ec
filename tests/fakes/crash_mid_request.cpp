// Fake bridge: reads one request, says so on stderr, then dies by SIGKILL without answering.
#include <signal.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    fake::write_all(2, "about to crash: boom\n");
    ::raise(SIGKILL);
  }
  return 0;
}
