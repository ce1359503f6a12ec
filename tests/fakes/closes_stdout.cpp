// Fake bridge: reads one request, then closes its stdout without answering and keeps running (it
// ignores stdin EOF) until a signal ends it.
#include <unistd.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line))
    if (fake::is_request(line)) break;
  fake::write_all(2, "closing my stdout\n");
  ::close(1);
  for (;;) ::pause();
}
