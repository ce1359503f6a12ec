// Helpers of the `tether prompt` e2e tests (prompt_test.cpp, content_test.cpp): the built
// binary with the fake agent or the demo agent, a scratch directory per test, the demo's answer.
#pragma once

#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/run.h"
#include "support/support.h"

namespace tether::test::prompt {

inline std::string fake_agent() {
  const char* dir = std::getenv("TETHER_ACP_FAKES_DIR");
  REQUIRE_MESSAGE(dir, "TETHER_ACP_FAKES_DIR is not set (run through meson test)");
  return std::string(dir) + "/fake_acp_agent";
}

// A scratch directory per test, removed at the end; the demo agent keeps its histories there.
struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/tether-prompt-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  ~Scratch() { [[maybe_unused]] int r = ::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
  std::vector<std::string> env() const { return {"TETHER_DEMO_STATE_DIR=" + dir, "TETHER_BRIDGE=", "NO_COLOR=1"}; }
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

inline std::vector<pid_t> pids_in(const std::string& path) {
  std::vector<pid_t> pids;
  std::istringstream in(slurp(path));
  for (pid_t p; in >> p;) pids.push_back(p);
  return pids;
}

// tether prompt ARGS... go -- fake_acp_agent FAKE_ARGS...
inline std::vector<std::string> with_fake(std::vector<std::string> args, std::vector<std::string> fake_args) {
  std::vector<std::string> argv{tether_bin(), "prompt"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("go");
  argv.push_back("--");
  argv.push_back(fake_agent());
  argv.insert(argv.end(), fake_args.begin(), fake_args.end());
  return argv;
}

// tether prompt ARGS... (the default bridge: the demo agent)
inline std::vector<std::string> with_demo(std::vector<std::string> args) {
  std::vector<std::string> argv{tether_bin(), "prompt"};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

inline RunOptions opts(const Scratch& s) {
  RunOptions o;
  o.env = s.env();
  return o;
}

inline std::string demo_answer(const std::string& echo, int words, int chars, int turn = 1) {
  return "Echo: " + echo + "\nSummary: " + std::to_string(words) + " word" + (words == 1 ? "" : "s") + ", " +
         std::to_string(chars) + " character" + (chars == 1 ? "" : "s") + "; turn " + std::to_string(turn) + " of this session.";
}


}  // namespace tether::test::prompt
