// Fake bridge: answers the first request and exits 0 immediately, without waiting for stdin EOF.
// The response and the exit race each other at the reader: it must not be lost.
#include <unistd.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    fake::echo(line);
    ::_exit(0);
  }
  return 0;
}
