// A pseudo-terminal harness for e2e tests of the REPL: runs a command on the slave side of a pty
// (a session leader with it as controlling terminal, so Ctrl-C typed into it raises SIGINT as at a
// real terminal), sends keystrokes, and waits for text to show up with a deadline. Output is kept
// raw and with escape sequences and carriage returns stripped, which is what the checks read.
// Waits never sleep: they poll the pty for output until the text appears or the deadline passes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::test {

class Pty {
 public:
  // `env` entries (NAME=value) are added to, or replace, the current environment; NAME= with no
  // value removes NAME.
  Pty(const std::vector<std::string>& argv, const std::vector<std::string>& env, int rows = 40, int cols = 120);
  ~Pty();  // kills and reaps the child if it is still running
  Pty(const Pty&) = delete;
  Pty& operator=(const Pty&) = delete;

  pid_t pid() const { return pid_; }
  void send(std::string_view keys);
  // Resizes the terminal (TIOCSWINSZ): the kernel sends SIGWINCH to the child before this returns.
  void resize(int rows, int cols);
  // Waits until the child has read every key sent so far (the terminal's input queue is empty).
  // Keys reach that queue a moment after send(): wait first for something they make appear.
  bool wait_keys_read(std::chrono::milliseconds limit = std::chrono::seconds(5));
  // Waits until `sig` (blocked in the child, which reads it from a signal fd) is no longer
  // pending in the child: the child has taken it.
  bool wait_signal_taken(int sig, std::chrono::milliseconds limit = std::chrono::seconds(5));

  // Later waits and counts look only at output after this point.
  void mark() { mark_ = text_.size(); }
  // Waits until `needle` appears in the output after the mark; false at the deadline.
  bool wait_for(std::string_view needle, std::chrono::milliseconds limit = std::chrono::seconds(15));
  // Counts occurrences of `needle` after the mark (reads what is available first, for at most 2 s:
  // a child that writes without end does not hang the test).
  std::size_t count(std::string_view needle);
  std::string since_mark() const { return text_.substr(mark_); }
  const std::string& text() const { return text_; }
  // Every byte the child wrote to the terminal, escape sequences included.
  const std::string& raw() const { return raw_; }

  // Waits for the child to exit (draining output meanwhile): its shell status, or nothing.
  std::optional<int> wait_exit(std::chrono::milliseconds limit = std::chrono::seconds(15));

  // The direct children of the child process (e.g. the bridge tether spawned).
  std::vector<pid_t> grandchildren() const;

 private:
  bool pump(int timeout_ms);  // reads once; false when nothing came (or EOF)
  void append(std::string_view raw);

  pid_t pid_ = -1;
  int master_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  std::string raw_;
  std::string text_;
  std::string pending_;  // an unfinished escape sequence
  std::size_t mark_ = 0;
};

// The text with ANSI escape sequences, carriage returns and backspaces removed.
std::string strip_terminal(std::string_view raw);

}  // namespace tether::test
