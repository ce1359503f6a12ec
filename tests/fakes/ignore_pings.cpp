// Fake bridge: answers every request like echo except "$/ping", which it never answers (a bridge
// that does not know the heartbeat). Exits 0 at stdin EOF.
#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    if (fake::method(line) == "$/ping") continue;
    fake::echo(line);
  }
  return 0;
}
