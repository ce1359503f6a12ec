// How talk and prompt show the agent's terminals (acp/terminals.h): the command when it starts,
// its output as it comes, and how it ended, as quiet lines set apart from the answer:
//
//   $ make test                       (the command, as the agent gave it)
//     ok 1 - parses                   (its output, indented)
//     … more output (the agent sees it; tether shows only the first kMaxLines lines)
//     exited with status 0            (or "killed by SIGTERM")
//
// When lines of another terminal came in between, the output and exit lines name their command
// again ("$ make test: exited with status 0").
//
// Every line is the agent's or its command's text: each passes through cli::terminal_line (no
// escape sequence, control character or bidi override reaches the screen; tabs become spaces).
// Where the lines go is the front-end's (talk: its renderer, dim; prompt -v: stderr, dim).
//
// Thread contract: thread-bound (called on the session's thread).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "acp/terminals.h"

namespace tether::cli {

class TerminalView {
 public:
  static constexpr std::size_t kMaxLines = 200;  // per terminal
  using Sink = std::function<void(std::string_view line)>;  // one line, without its newline

  // The sink may be filled in later (a front-end made after its session): lines before go nowhere.
  explicit TerminalView(std::shared_ptr<Sink> sink) : sink_(std::move(sink)) {}
  void operator()(const acp::TerminalActivity& a);

 private:
  struct Shown {
    std::string command;
    std::string partial;  // output after the last newline
    std::size_t lines = 0;
  };
  void show(std::string_view line, const std::string& id);
  void output_line(const std::string& id, Shown& s, std::string_view line);

  std::shared_ptr<Sink> sink_;
  std::map<std::string, Shown> shown_;  // by terminal id; forgotten when it exits
  std::string last_;                    // the terminal the last line was about
};

// The observer for ClientOptions::on_terminal: a TerminalView that writes to `sink`.
acp::TerminalObserver terminal_view(std::shared_ptr<TerminalView::Sink> sink);
// A sink writing each line to stderr, dim when `color`, sanitized (for prompt -v).
std::shared_ptr<TerminalView::Sink> stderr_sink(bool color);

}  // namespace tether::cli
