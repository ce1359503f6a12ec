// What a tool call shows of itself, for talk and prompt alike: its diffs as unified diffs with
// three lines of context, its content blocks (command output, text) as their first lines, its
// client terminals, its command (rawInput.command of an execute call) and its locations as
// `path:line`. The one place that turns acp::ToolContent into lines for a person.
//
// Everything here is built as lines (ViewLine) whose text is already safe for a terminal: each
// line of the agent's text passes through cli::terminal_line (no escape sequence, no control
// character, tabs expanded first so indentation survives) and is cut to the width given. Colour is
// added only by format(), and only when asked (the colour rule of cli/launch.h decides).
//
// Work and output are bounded whatever the agent sends: a text over kMaxDiffBytes or kMaxDiffLines
// is summarised, never diffed; the part that differs (after the common first and last lines) is
// diffed by dtl only when its size product is at most kMaxDiffWork, else shown as all removed then
// all added (a correct, larger diff); at most ViewOptions::diff_lines lines of a diff and
// output_lines of an output are shown, then "… N more lines".
//
// Thread contract: pure functions, and ToolTracker is a plain value (thread-bound).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/update.h"

namespace tether::cli {

// The lines of `text`, without their newlines (a final newline makes no empty last line).
std::vector<std::string_view> split_lines(std::string_view text);

inline constexpr std::size_t kMaxDiffBytes = std::size_t{1} << 20;  // per side
inline constexpr std::int64_t kMaxDiffLines = 20000;                // per side
inline constexpr std::uint64_t kMaxDiffWork = 1000000;              // changed old lines x changed new lines
inline constexpr std::size_t kDiffContext = 3;
// Without a known width (not a terminal), a line is still cut here: a bounded output.
inline constexpr std::size_t kMaxLineColumns = 2000;

enum class ViewTone { header, hunk, context, removed, added, output, command, dim };

struct ViewLine {
  ViewTone tone = ViewTone::output;
  std::string text;  // one line, safe for a terminal, without its newline
  bool operator==(const ViewLine&) const = default;
};

struct ViewOptions {
  std::size_t diff_lines = 40;    // lines of a diff shown (headers included)
  std::size_t output_lines = 5;   // lines of a content block or terminal output shown
  std::size_t width = 0;          // columns for a line's text (0: unknown, kMaxLineColumns)
  // The hook for client terminals (ACP terminal/*): the output kept so far of the terminal with
  // this id, or nothing when tether knows no such terminal. Unset, a terminal is shown as a one-line
  // reference ("terminal ID"); the client-terminal code sets it to show the output itself.
  std::function<std::optional<std::string>(std::string_view terminal_id)> terminal_output;
};

// The columns of stderr or stdout when it is a terminal, else 0.
std::size_t terminal_width(int fd);
// `line` (one line, already safe) cut to `width` code points, the last one "…" when cut.
std::string cut_to_width(std::string_view line, std::size_t width);

// The unified diff of one `diff` content: "path" (or "path (new file)"), then hunks "@@ -a,b +c,d @@"
// with context, removed and added lines.
std::vector<ViewLine> diff_lines(const acp::ToolContent& diff, const ViewOptions& o);
// A content block (command output, text): its first lines, then "… N more lines".
std::vector<ViewLine> content_lines(const acp::ToolContent& content, const ViewOptions& o);
// A client terminal: "terminal ID", and its output when ViewOptions::terminal_output knows it.
std::vector<ViewLine> terminal_lines(const acp::ToolContent& terminal, const ViewOptions& o);
// All of a tool call worth showing: "$ command" (execute calls), each content item, and the
// locations ("at a.c:12, b.c") when one has a line or there are several.
std::vector<ViewLine> tool_lines(const acp::ToolCall& tool, const ViewOptions& o);
// "path:line", or the path when the line is 0.
std::string location_text(std::string_view path, std::int64_t line);

// The lines as text: each after `indent`, with a newline; coloured (per tone) when `color`.
std::string format(const std::vector<ViewLine>& lines, std::string_view indent, bool color);

// What the tool calls of one turn showed, to show what is new once and to give a permission
// question the tool call's latest content: the merged fields per toolCallId (at most kMaxTracked
// calls; the oldest is forgotten first).
class ToolTracker {
 public:
  static constexpr std::size_t kMaxTracked = 64;

  // Merges a tool_call or tool_call_update. The lines to show for it now: each of its command,
  // content and locations that differs from what was shown for it last (nothing when unchanged).
  std::vector<ViewLine> update(const acp::ToolCall& update, const ViewOptions& o);
  // Records that the lines update() returned were drawn and the output was at `mark` after them
  // (any counter of what the caller drew).
  void drawn(const std::string& id, std::uint64_t mark);
  // The lines to show before a permission question about `tool`: its command and content (the
  // request's own, else the latest known), unless exactly these lines were the last thing drawn
  // (the caller's counter is still at `mark`).
  std::vector<ViewLine> for_permission(const acp::ToolCall& tool, const ViewOptions& o, std::uint64_t mark);
  // The merged fields of a call, or null.
  const acp::ToolCall* find(const std::string& id) const;
  void clear();

 private:
  struct Entry {
    acp::ToolCall call;
    std::array<std::vector<ViewLine>, 3> shown;  // what was last shown: command, content, locations
    std::optional<std::uint64_t> drawn_at;
    // The lines of `call` as they are now, for the options they were made with.
    std::optional<std::array<std::vector<ViewLine>, 3>> parts;
    std::size_t width = 0, diff_lines = 0, output_lines = 0;
  };
  Entry& entry(const std::string& id);
  const std::array<std::vector<ViewLine>, 3>& parts(Entry& e, const ViewOptions& o);

  std::map<std::string, Entry> calls_;
  std::deque<std::string> order_;  // ids, oldest first
};

}  // namespace tether::cli
