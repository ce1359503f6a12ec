// Fake bridge: reads everything and answers nothing; exits 0 at stdin EOF.
#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
  }
  return 0;
}
