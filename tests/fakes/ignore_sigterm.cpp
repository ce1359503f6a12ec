// Fake bridge: answers requests like echo, but ignores SIGTERM and stdin EOF: only SIGKILL ends it.
#include <signal.h>
#include <unistd.h>

#include "fake_util.h"

int main() {
  ::signal(SIGTERM, SIG_IGN);
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line))
    if (fake::is_request(line)) fake::echo(line);
  for (;;) ::pause();
}
