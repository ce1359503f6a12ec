// Runs a command as a user's shell would (stdin text in, stdout and stderr captured, exit status
// or signal out), with a hard limit so a hang fails the test instead of blocking it.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace tether::test {

struct RunResult {
  int exit_code = -1;   // when exited normally
  int signal = 0;       // when killed by a signal
  bool timed_out = false;
  std::string out, err;
  double seconds = 0;

  // The status a shell reports: exit code, or 128 + signal.
  int shell_status() const { return signal ? 128 + signal : exit_code; }
  std::vector<std::string> out_lines() const;
};

struct RunOptions {
  std::string stdin_text;
  bool close_stdin = true;                       // EOF after stdin_text
  std::vector<std::string> env;                  // NAME=value set in the environment (replacing; NAME= sets it empty)
  std::chrono::milliseconds limit{30000};
  // Called once the child runs (with its pid), e.g. to send it a signal when some output shows up;
  // `on_output` is called with the output so far each time more arrives.
  std::function<void(pid_t, const std::string& out, const std::string& err)> on_output;
  bool close_stdout_after_first_line = false;    // like `| head -n 1`
};

RunResult run(const std::vector<std::string>& argv, const RunOptions& options = {});

}  // namespace tether::test
