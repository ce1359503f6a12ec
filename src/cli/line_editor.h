// The line editor of `tether talk`: libedit through its readline-compatible callback API, driven
// from the caller's poll loop. The caller polls fd() (stdin) with everything else it waits on and
// calls on_readable() when it is readable; complete lines come back as events. Between start()
// and stop() libedit owns the terminal line (raw mode, prompt shown); outside, the terminal is
// cooked and nothing is read: that is how a streaming turn keeps the editor off the screen.
//
// It reads stdin itself and hands libedit one key at a time through rl_getc_function, which lets
// it turn bracketed paste (and a burst of lines typed faster than a person can) into one entry:
// pasted lines are collected under a continuation prompt and sent together when Enter is pressed
// on the last line, instead of becoming one prompt each. libedit has no bracketed paste of its own.
//
// libedit's readline emulation is global, so at most one LineEditor exists at a time.
//
// Thread contract: thread-bound (the thread that runs the poll loop).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "cli/talk_input.h"

namespace tether::cli::talk {

class LineEditor {
 public:
  struct Event {
    enum class Kind { line, eof };
    Kind kind = Kind::line;
    std::string text;        // line: what was entered (several lines when pasted)
    bool multiline = false;  // line: it came from a paste of several lines
  };

  // `in_fd` and `out_fd` must be a terminal. Turns on bracketed paste.
  LineEditor(int in_fd, int out_fd);
  ~LineEditor();  // stop(), bracketed paste off, libedit's terminal state restored
  LineEditor(const LineEditor&) = delete;
  LineEditor& operator=(const LineEditor&) = delete;

  void add_history(const std::string& entry);
  // `fd` (the caller's signal fd, open_signal_fd()) is watched during a wait for a key inside one
  // libedit command (a Ctrl-R search, Ctrl-V): a resize is handled there, and any other signal
  // ends the wait, left pending on `fd` for the caller.
  void wake_on(int fd) { wake_fd_ = fd; }

  // Shows `prompt` and starts editing (installs the callback handler). A line interrupted by
  // stop() while it was being edited comes back. `continuation` prompts pasted lines.
  void start(std::string prompt, std::string continuation);
  // Stops editing (removes the handler; the terminal goes back to libedit's cooked mode). The
  // cursor is left after the line being edited.
  void stop();
  bool editing() const { return editing_; }

  // stdin is readable: reads once and feeds what it can. Completed lines stop the editor (the
  // terminal is left non-canonical without echo, so keys typed meanwhile wait for the next
  // start()): call start() again for the next line.
  std::vector<Event> on_readable();
  // Feeds input read earlier (type-ahead) after start().
  std::vector<Event> process();
  bool has_input() const { return !feed_.empty() || !decoder_.empty(); }
  // When a held Escape (a possible paste marker) must be released as a key; never() if none.
  base::Deadline partial_deadline() const { return partial_deadline_; }
  void on_partial_timeout();

  // Ctrl-C at the prompt: shows ^C, drops the line, pasted lines and type-ahead, and starts
  // over with `prompt` (when it was editing).
  void interrupt(std::string prompt);
  // Writes `text` (whole lines) above the prompt, keeping what is being typed.
  void print_above(std::string_view text);
  // Takes the prompt and the line being typed off the screen and stops editing, for a question
  // that must be answered first; the next start() shows them again. Keys typed meanwhile wait,
  // unechoed.
  void suspend();
  // Drops keys typed ahead (before a question whose answer must not come from type-ahead).
  void discard_input();
  void resize();

 private:
  friend struct EditorCallbacks;

  void install(const std::string& prompt);
  bool pull();  // moves the next decoded item into feed_; false if none
  void feed_one();
  int getc_blocking();
  bool await_keys();      // waits for keys in getc_blocking(); false at end of input or a signal
  bool wake_ends_wait();  // reads a signal from wake_fd_ during await_keys()
  void erase_line_on_screen();
  void hold_input();  // non-canonical, no echo, signals on: between two editing spells

  int in_fd_, out_fd_;
  int wake_fd_ = -1;
  bool editing_ = false;
  std::string prompt_, continuation_;
  InputDecoder decoder_;
  std::string feed_;        // keys for libedit, in order
  std::string feed_paste_;  // per byte of feed_: '1' when it came from a paste
  bool last_from_paste_ = false;
  std::size_t restore_left_ = 0;  // bytes of a restored line still to replay
  std::vector<std::string> pasted_;  // lines of a paste waiting for the final Enter
  std::string saved_;                // the line stop() interrupted
  // No key reached libedit since the handler was installed: rl_line_buffer, rl_end and rl_point
  // still describe the previous line (libedit updates them only after a key).
  bool fresh_ = true;
  bool line_ready_ = false;
  bool probing_ = false;      // feed_one() runs what libedit pushed back: getc answers end of input
  bool probe_asked_ = false;  // ... and libedit asked for a key (nothing was pushed back)
  bool aborted_ = false;      // a signal ended a wait for a key inside the command being fed
  bool made_up_eof_ = false;  // a probe's end of input ended an empty line as Ctrl-D would
  bool line_eof_ = false;
  std::string line_text_;
  base::Deadline partial_deadline_ = base::Deadline::never();
};

}  // namespace tether::cli::talk
