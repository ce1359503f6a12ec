// What the libFuzzer harnesses in tests/fuzz share: a check that stops the run with a message (an
// abort is what libFuzzer records as a crash, with the input that caused it), and the nesting cap
// for inputs handed to parsers that have none of their own yet.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace tether::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  std::abort();
}

// JSON brackets nested deeper than `max` outside strings. nlohmann's parser keeps its own stack,
// but copying and comparing a value recurse: a line nested 100,000 deep overflows the C stack in
// any code that copies it (issue 12, finding 5). rpc::parse_line refuses such lines itself; the
// batch input and journal parsers get the same limit on another branch. Until then their
// harnesses skip such inputs, so that the fuzzer looks for other bugs instead of finding this one
// again and again.
inline bool nested_deeper_than(std::string_view text, int max) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

}  // namespace tether::fuzz

#define FUZZ_CHECK(cond) ((cond) ? void(0) : ::tether::fuzz::fail(__FILE__, __LINE__, #cond))
