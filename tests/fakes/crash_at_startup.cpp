// Fake bridge: fails at once, every time: one line on stderr, exit status 3. Each spawn appends a
// line to $FAKE_COUNT_FILE so a test can count them.
#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::write_all(2, "loading config\nfatal: config missing\n");
  return 3;
}
