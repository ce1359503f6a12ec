// How `tether talk` shows a turn: the answer streams to stdout as it arrives; thoughts, tool calls
// (title, kind, status changes), plans, usage, permission requests and tether's own notes go to
// stderr, compact and set apart (dim or coloured on a terminal, a word prefix without colour).
// The renderer only builds the bytes to write, as (fd, text) pairs: it does no I/O, so each event
// kind is unit-tested as text.
//
// When stdout and stderr are the same terminal (`shared`), the renderer keeps their lines apart:
// a note never lands in the middle of a half-written answer line. What the renderer writes to an fd
// that is a terminal passes through cli::terminal_text (`sanitize`, `sanitize_err`), so no escape
// sequence or control character of the agent's reaches the screen; the agent's one-line fields
// (tool titles, kinds and statuses, option names, mode ids, plan entries) are flattened to one line
// (cli::terminal_line) wherever they are shown.
//
// Thread contract: thread-bound (a plain value).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/permission.h"
#include "acp/session.h"
#include "acp/update.h"
#include "cli/tool_view.h"

namespace tether::cli::talk {

struct RenderStyle {
  bool color = false;     // ANSI colours and dim text
  bool sanitize = false;      // stdout is a terminal: what goes there passes through terminal_text
  bool sanitize_err = false;  // stderr is a terminal: likewise for what goes there
  bool shared = false;    // stdout and stderr are the same terminal
  bool details = true;    // show thoughts, tool calls, plans and usage (else only the answer and notes)
  // Script mode: one blank line between two blocks of stdout (a turn's answer, a command's
  // output), so answers that run one after another stay apart for a reader and for a script.
  bool separate_blocks = false;
  // What a tool call shows of itself under its line with details on (cli/tool_view.h): diffs and
  // a short summary of its output; `width` is stderr's (0 when it is not a terminal).
  ViewOptions view;
};

struct Write {
  int fd;  // 1 or 2
  std::string text;
};

// A count or a quantity as talk and prompt show it, in one format everywhere: digits grouped by
// thousands with commas ("1,028", "200,000"). Identifiers (pids, generations, exit statuses) are
// not counts and keep their plain digits.
std::string number_text(std::int64_t n);
// "1,004 of 200,000 tokens (0.5%)", with the cost when the agent gave one: the turn footer's
// `usage:`, /status's `context:` and prompt's `usage:` line.
std::string usage_text(const acp::Usage& u);

// The agent's text made safe for a terminal: cli::terminal_text (escape sequences, C0 and C1
// control characters, carriage returns and bidi overrides are dropped; newlines and tabs kept).
std::string sanitize_text(std::string_view text);

// Keys for a permission menu: each option's first letter, lower-cased, for the first option that
// starts with it (0: the option has only its number).
std::vector<char> option_letters(const std::vector<acp::PermissionOption>& options);
// The option a key picks: '1'..'9' by position, or a letter from option_letters (any case).
std::optional<std::size_t> pick_option(char key, const std::vector<char>& letters, std::size_t count);

class Renderer {
 public:
  explicit Renderer(RenderStyle style) : style_(style) {}

  const RenderStyle& style() const { return style_; }
  // The terminal was resized: lines of tool calls are cut to the new width.
  void set_width(std::size_t width) { style_.view.width = width; }

  // Our new turn: a fresh screen state, and no cancel of ours shown yet.
  void begin_turn();
  // A fresh start of what is drawn (message breaks, tool calls, plan) inside our turn, which keeps
  // its cancel: another client's turn shown through a tether server while ours waits, or ours
  // starting after it.
  void begin_section();
  enum class Whose { ours, other_client };
  // An update of our turn, or of another client's turn in a shared session (never hidden by our
  // cancel: that covers our own turn only).
  void update(const acp::Update& u, Whose whose = Whose::ours);
  // A permission request: a menu when it waits for the person (`answered` false), else one line
  // saying what was answered.
  void permission(const acp::PermissionRequest& p);
  // The question's outcome (the option picked, cancelled, withdrawn): at the end of the question
  // line while nothing came after it, else on a line of its own that names the question again.
  void permission_choice(std::string_view what);
  void permission_withdrawn();
  // "^C (cancelled)": the person pressed Ctrl-C during the turn. Nothing more of the turn is shown
  // after it (what the agent still sends before it stops is counted, and end_turn() says how much);
  // end_turn() ends that.
  void cancelled();
  // The terminal event: usage, an unusual stop reason or the error, and a clean line end.
  void end_turn(const acp::TurnEvent& terminal);

  void note(std::string_view text);   // tether's own remark (yellow): "tether: …"
  void error(std::string_view text);  // tether's own error (red): "tether: …"
  void dim(std::string_view text);    // a quiet line (dim)
  void info(std::string_view text);   // command output (/help, /status): plain, on stdout

  // Ends any half-written line, so the next output (or the prompt) starts at column 0.
  void finish_lines();
  // A line was started on fd (1 or 2) and not ended.
  bool line_open(int fd) const { return open_[fd]; }
  std::vector<Write> take() { return std::exchange(out_, {}); }

 private:
  enum class Block { none, answer, thought };

  void emit(int fd, std::string_view text);
  std::string safe(int fd, std::string_view text) const;  // terminal_text when that fd is a terminal
  void break_lines(int fd);  // before writing to fd: end the half-written lines in the way
  void line(int fd, std::string_view color, std::string_view text);
  std::string paint(std::string_view color, std::string_view text) const;
  void thought(std::string_view text);
  void tool(const acp::Update& u);
  void view(const std::vector<ViewLine>& lines);  // a tool call's lines, indented, under its line

  RenderStyle style_;
  std::vector<Write> out_;
  bool open_[3] = {false, false, false};  // a line was started on this fd and not ended
  Block block_ = Block::none;
  bool indent_pending_ = false;           // a thought line ended: indent the next one
  acp::MessageBreaks breaks_;
  std::map<std::string, acp::ToolCall> tools_;
  ToolTracker views_;       // what each tool call of the section showed, for its permission question
  std::uint64_t emits_ = 0;  // pieces written so far: "nothing came after" for ToolTracker
  std::string last_plan_;
  std::optional<acp::Usage> usage_;
  bool cancel_shown_ = false;
  std::int64_t dropped_after_cancel_ = 0;  // characters of the answer not shown after the cancel
  bool ask_open_ = false;                  // a question's "choose ...: " is the last thing written
  std::string ask_what_;                   // the tool call the last question was about
  bool written_ = false;  // separate_blocks: something showed (on stdout, or the shared terminal)
  bool gap_due_ = false;  // separate_blocks: a block began and has shown nothing yet
};

}  // namespace tether::cli::talk
