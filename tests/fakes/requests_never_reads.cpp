// Fake bridge, hostile: writes requests for a method nobody offers, as fast as the pipe takes
// them, and never reads its stdin, so every answer tether owes it waits on our side. Each id is a
// 1 KiB string (the answer echoes it), so a client that queues answers without bound shows it in
// its memory quickly. Stops after argv[1] requests (default 50,000: about 50 MiB of answers), or
// when stdout is closed.
#include <cstdlib>
#include <string>

#include "fake_util.h"

int main(int argc, char** argv) {
  const long total = argc > 1 ? std::atol(argv[1]) : 50000;
  fake::count_spawn();
  const std::string pad(1000, 'x');
  for (long i = 0; i < total; ++i) {
    std::string line = "{\"jsonrpc\":\"2.0\",\"id\":\"" + pad + std::to_string(i) +
                       "\",\"method\":\"hostile/unknown\",\"params\":{}}";
    if (!fake::write_line(1, line)) return 0;
  }
  // Everything was taken: wait for the end of stdin without reading it (the parent closes it).
  for (;;) ::pause();
}
