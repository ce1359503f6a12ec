// Fake bridge: answers every request with its params (or {}) as the result, ignores everything
// else, and exits 0 at stdin EOF.
#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line))
    if (fake::is_request(line)) fake::echo(line);
  return 0;
}
