// What the libFuzzer harnesses in tests/fuzz share: a check that stops the run with a message (an
// abort is what libFuzzer records as a crash, with the input that caused it). The parsers enforce
// the JSON nesting limit themselves (rpc::nested_deeper_than), so the harnesses feed them anything.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>

namespace tether::fuzz {

[[noreturn]] inline void fail(const char* file, int line, const char* what) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n", file, line, what);
  std::abort();
}

}  // namespace tether::fuzz

#define FUZZ_CHECK(cond) ((cond) ? void(0) : ::tether::fuzz::fail(__FILE__, __LINE__, #cond))
