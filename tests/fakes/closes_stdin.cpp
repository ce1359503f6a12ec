// Fake bridge: closes its stdin at once (it will never read a request: writing to it fails with
// EPIPE) and then sleeps with stdout still open until a signal ends it.
#include <unistd.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  ::close(0);
  fake::write_all(2, "closed my stdin\n");
  for (;;) ::pause();
}
