#include "cli/tool_view.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <array>

// dtl (Debian's libdtl-dev, header-only) computes the edit script of a diff; this is the one file
// that includes it. It is a system header, so its own warnings stay out of -Werror.
#include <dtl/dtl.hpp>

#include "cli/render.h"
#include "cli/terminal_text.h"

namespace tether::cli {

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    out.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  return out;
}

namespace {

// The lines of `text`: "a\nb\n" is two lines, "a\nb" too; "" none.

// One line of the agent's text, safe and cut: tabs expanded to the next multiple of 8 (so an
// indentation survives terminal_line, which would make each tab one space), then terminal_line.
std::string safe_line(std::string_view prefix, std::string_view line, std::size_t width) {
  std::string expanded(prefix);
  std::size_t col = 0;
  for (char c : line) {
    if (c == '\t') {
      std::size_t n = 8 - col % 8;
      expanded.append(n, ' ');
      col += n;
    } else {
      expanded += c;
      if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++col;
    }
    if (expanded.size() > 4 * std::max(width, kMaxLineColumns) + 64) break;  // cut below anyway: bounded work
  }
  return cut_to_width(terminal_line(expanded), width ? width : kMaxLineColumns);
}

std::string more_lines(std::int64_t n) {
  return "… " + talk::number_text(n) + " more line" + (n == 1 ? "" : "s");
}

// One step of the edit script: a line of both texts, or one removed from the old or added in the new.
struct Step {
  enum Kind { same, removed, added } kind;
  std::size_t old_i;  // index in the old lines (same, removed)
  std::size_t new_i;  // index in the new lines (same, added)
};

// The steps turning `a` into `b`. The common first and last lines are matched directly; dtl diffs
// what lies between when the work is bounded (kMaxDiffWork), else it is all removed then all
// added. Within a run of changes, removals come first (as in every unified diff).
std::vector<Step> edit_steps(const std::vector<std::string_view>& a, const std::vector<std::string_view>& b) {
  std::size_t head = 0;
  while (head < a.size() && head < b.size() && a[head] == b[head]) ++head;
  std::size_t tail = 0;
  while (tail < a.size() - head && tail < b.size() - head && a[a.size() - 1 - tail] == b[b.size() - 1 - tail]) ++tail;
  std::vector<Step> steps;
  for (std::size_t i = 0; i < head; ++i) steps.push_back({Step::same, i, i});
  std::vector<std::string_view> mid_a(a.begin() + static_cast<std::ptrdiff_t>(head), a.end() - static_cast<std::ptrdiff_t>(tail));
  std::vector<std::string_view> mid_b(b.begin() + static_cast<std::ptrdiff_t>(head), b.end() - static_cast<std::ptrdiff_t>(tail));
  std::vector<Step> mid;
  if (!mid_a.empty() && !mid_b.empty() &&
      static_cast<std::uint64_t>(mid_a.size()) * static_cast<std::uint64_t>(mid_b.size()) <= kMaxDiffWork) {
    dtl::Diff<std::string_view> d(mid_a, mid_b);
    d.compose();
    std::size_t i = head, j = head;
    for (const auto& e : d.getSes().getSequence()) {
      const dtl::edit_t type = e.second.type;
      if (type == dtl::SES_COMMON) mid.push_back({Step::same, i++, j++});
      else if (type == dtl::SES_DELETE) mid.push_back({Step::removed, i++, j});
      else mid.push_back({Step::added, i, j++});
    }
  } else {
    for (std::size_t i = 0; i < mid_a.size(); ++i) mid.push_back({Step::removed, head + i, head});
    for (std::size_t j = 0; j < mid_b.size(); ++j) mid.push_back({Step::added, head + mid_a.size(), head + j});
  }
  // Removals before additions in each run of changes.
  for (std::size_t k = 0; k < mid.size();) {
    if (mid[k].kind == Step::same) {
      steps.push_back(mid[k++]);
      continue;
    }
    std::size_t end = k;
    while (end < mid.size() && mid[end].kind != Step::same) ++end;
    for (std::size_t r = k; r < end; ++r)
      if (mid[r].kind == Step::removed) steps.push_back(mid[r]);
    for (std::size_t r = k; r < end; ++r)
      if (mid[r].kind == Step::added) steps.push_back(mid[r]);
    k = end;
  }
  for (std::size_t t = 0; t < tail; ++t) steps.push_back({Step::same, a.size() - tail + t, b.size() - tail + t});
  return steps;
}

// "@@ -a,b +c,d @@" for the steps [from, to).
std::string hunk_header(const std::vector<Step>& steps, std::size_t from, std::size_t to) {
  std::size_t old_n = 0, new_n = 0;
  for (std::size_t k = from; k < to; ++k) {
    old_n += steps[k].kind != Step::added;
    new_n += steps[k].kind != Step::removed;
  }
  // A side with no lines names the line before it (0 at the top), as diff -u does.
  std::size_t a = old_n ? steps[from].old_i + 1 : steps[from].old_i;
  std::size_t c = new_n ? steps[from].new_i + 1 : steps[from].new_i;
  return "@@ -" + std::to_string(a) + "," + std::to_string(old_n) + " +" + std::to_string(c) + "," +
         std::to_string(new_n) + " @@";
}

}  // namespace

std::size_t terminal_width(int fd) {
  winsize ws{};
  if (::isatty(fd) != 1 || ::ioctl(fd, TIOCGWINSZ, &ws) != 0) return 0;
  return ws.ws_col;
}

std::string cut_to_width(std::string_view line, std::size_t width) {
  if (width == 0) return std::string(line);
  std::size_t points = 0, cut = std::string_view::npos;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) == 0x80) continue;
    if (points == width - 1 && cut == std::string_view::npos) cut = i;
    if (++points > width) return std::string(line.substr(0, cut)) + "…";
  }
  return std::string(line);
}

std::string location_text(std::string_view path, std::int64_t line) {
  return line > 0 ? std::string(path) + ":" + std::to_string(line) : std::string(path);
}

std::vector<ViewLine> diff_lines(const acp::ToolContent& diff, const ViewOptions& o) {
  std::vector<ViewLine> out;
  const std::string old_text = diff.old_text.value_or("");
  std::string head = diff.path.empty() ? std::string("(no path)") : diff.path;
  if (!diff.old_text) head += " (new file)";
  out.push_back({ViewTone::header, safe_line("", head, o.width)});
  if (diff.truncated || diff.lines > kMaxDiffLines || diff.old_lines > kMaxDiffLines || diff.text.size() > kMaxDiffBytes ||
      old_text.size() > kMaxDiffBytes) {
    // Bounded work: a hostile (or simply huge) text is summarised, never diffed.
    out.push_back({ViewTone::dim, "(diff too large to show: -" + talk::number_text(diff.old_lines) + " +" +
                                      talk::number_text(diff.lines) + " lines)"});
    return out;
  }
  auto a = split_lines(old_text);
  auto b = split_lines(diff.text);
  std::vector<Step> steps = edit_steps(a, b);
  // Hunks: each change with kDiffContext lines around it; changes closer than twice that share one.
  std::vector<std::pair<std::size_t, std::size_t>> hunks;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    if (steps[k].kind == Step::same) continue;
    std::size_t from = k > kDiffContext ? k - kDiffContext : 0;
    std::size_t last = k;
    while (last + 1 < steps.size()) {
      std::size_t next = last + 1;
      while (next < steps.size() && steps[next].kind == Step::same) ++next;
      if (next == steps.size() || next - last - 1 > 2 * kDiffContext) break;
      last = next;
    }
    std::size_t to = std::min(steps.size(), last + 1 + kDiffContext);
    hunks.emplace_back(from, to);
    k = to - 1;
  }
  if (hunks.empty()) {
    out.push_back({ViewTone::dim, "(no change)"});
    return out;
  }
  std::size_t total = 0;
  for (auto [from, to] : hunks) total += 1 + (to - from);
  std::size_t budget = std::max<std::size_t>(o.diff_lines, 2) - 1;  // the path line counts
  for (auto [from, to] : hunks) {
    if (budget == 0) break;
    out.push_back({ViewTone::hunk, hunk_header(steps, from, to)});
    --budget, --total;
    for (std::size_t k = from; k < to && budget > 0; ++k, --budget, --total) {
      const Step& s = steps[k];
      if (s.kind == Step::same) out.push_back({ViewTone::context, safe_line(" ", a[s.old_i], o.width)});
      else if (s.kind == Step::removed) out.push_back({ViewTone::removed, safe_line("-", a[s.old_i], o.width)});
      else out.push_back({ViewTone::added, safe_line("+", b[s.new_i], o.width)});
    }
  }
  if (total > 0) out.push_back({ViewTone::dim, more_lines(static_cast<std::int64_t>(total))});
  return out;
}

std::vector<ViewLine> content_lines(const acp::ToolContent& content, const ViewOptions& o) {
  std::vector<ViewLine> out;
  auto lines = split_lines(content.text);
  // Blank lines at the end say nothing.
  while (!lines.empty() && lines.back().find_first_not_of(" \t\r") == std::string_view::npos) lines.pop_back();
  // Agents wrap output in a Markdown code fence (Claude's ```): the lines inside are the output.
  if (lines.size() >= 2 && lines.front().substr(0, 3) == "```" && lines.back() == "```" && !content.truncated) {
    lines.pop_back();
    lines.erase(lines.begin());
  }
  std::size_t shown = std::min(lines.size(), o.output_lines);
  for (std::size_t i = 0; i < shown; ++i) out.push_back({ViewTone::output, safe_line("", lines[i], o.width)});
  std::int64_t all = content.truncated ? content.lines : static_cast<std::int64_t>(lines.size());
  if (all > static_cast<std::int64_t>(shown)) out.push_back({ViewTone::dim, more_lines(all - static_cast<std::int64_t>(shown))});
  return out;
}

std::vector<ViewLine> terminal_lines(const acp::ToolContent& terminal, const ViewOptions& o) {
  // The hook for client terminals: while no terminal code fills ViewOptions::terminal_output, a
  // terminal is a reference to it, one line.
  std::vector<ViewLine> out{{ViewTone::dim, safe_line("terminal ", terminal.terminal_id, o.width)}};
  if (!o.terminal_output) return out;
  std::optional<std::string> text = o.terminal_output(terminal.terminal_id);
  if (!text) return out;
  acp::ToolContent shown;
  shown.text = std::move(*text);
  auto lines = content_lines(shown, o);
  out.insert(out.end(), lines.begin(), lines.end());
  return out;
}

namespace {

// A tool call's lines in three parts, each shown again only when it changed: the command, the
// content items, the locations.
std::array<std::vector<ViewLine>, 3> tool_parts(const acp::ToolCall& tool, const ViewOptions& o) {
  std::array<std::vector<ViewLine>, 3> parts;
  if (tool.command && tool.kind == "execute") parts[0].push_back({ViewTone::command, safe_line("$ ", *tool.command, o.width)});
  if (tool.content) {
    for (const auto& c : *tool.content) {
      std::vector<ViewLine> part;
      switch (c.kind) {
        case acp::ToolContent::Kind::diff: part = diff_lines(c, o); break;
        case acp::ToolContent::Kind::content: part = content_lines(c, o); break;
        case acp::ToolContent::Kind::terminal: part = terminal_lines(c, o); break;
      }
      parts[1].insert(parts[1].end(), part.begin(), part.end());
    }
  }
  bool lines_given = std::any_of(tool.location_lines.begin(), tool.location_lines.end(), [](std::int64_t l) { return l > 0; });
  if (tool.locations.size() > 1 || lines_given) {
    std::string at = "at ";
    for (std::size_t i = 0; i < tool.locations.size(); ++i) {
      if (i) at += ", ";
      at += location_text(tool.locations[i], i < tool.location_lines.size() ? tool.location_lines[i] : 0);
      if (at.size() > 4 * kMaxLineColumns) break;
    }
    parts[2].push_back({ViewTone::dim, safe_line("", at, o.width)});
  }
  return parts;
}

std::vector<ViewLine> joined(const std::array<std::vector<ViewLine>, 3>& parts) {
  std::vector<ViewLine> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

}  // namespace

std::vector<ViewLine> tool_lines(const acp::ToolCall& tool, const ViewOptions& o) { return joined(tool_parts(tool, o)); }

std::string format(const std::vector<ViewLine>& lines, std::string_view indent, bool color) {
  std::string s;
  for (const auto& l : lines) {
    const char* code = "";
    switch (l.tone) {
      case ViewTone::header: code = "1"; break;
      case ViewTone::hunk: code = "36"; break;
      case ViewTone::context: code = ""; break;
      case ViewTone::removed: code = "31"; break;
      case ViewTone::added: code = "32"; break;
      case ViewTone::output: code = "2"; break;
      case ViewTone::command: code = "1"; break;
      case ViewTone::dim: code = "2"; break;
    }
    s += indent;
    // Colour one line at a time, so nothing bleeds past a line end.
    if (color && *code && !l.text.empty()) s += std::string("\x1b[") + code + "m" + l.text + "\x1b[0m";
    else s += l.text;
    s += '\n';
  }
  return s;
}

// --- ToolTracker ------------------------------------------------------------------------------

ToolTracker::Entry& ToolTracker::entry(const std::string& id) {
  auto it = calls_.find(id);
  if (it != calls_.end()) return it->second;
  if (calls_.size() >= kMaxTracked) {
    calls_.erase(order_.front());
    order_.pop_front();
  }
  order_.push_back(id);
  Entry& e = calls_[id];
  e.call.id = id;
  return e;
}

namespace {
// An update that can change what a call shows (else its cached lines stand: a status update of a
// call with a large diff costs no new diff).
bool changes_view(const acp::ToolCall& u) { return u.content || u.command || !u.locations.empty() || u.kind; }
}  // namespace

const std::array<std::vector<ViewLine>, 3>& ToolTracker::parts(Entry& e, const ViewOptions& o) {
  if (!e.parts || e.width != o.width || e.diff_lines != o.diff_lines || e.output_lines != o.output_lines ||
      o.terminal_output) {
    e.parts = tool_parts(e.call, o);
    e.width = o.width;
    e.diff_lines = o.diff_lines;
    e.output_lines = o.output_lines;
  }
  return *e.parts;
}

std::vector<ViewLine> ToolTracker::update(const acp::ToolCall& update, const ViewOptions& o) {
  Entry& e = entry(update.id);
  acp::merge_tool_call(e.call, update);
  if (changes_view(update)) e.parts.reset();
  const auto& now = parts(e, o);
  std::vector<ViewLine> lines;
  for (std::size_t i = 0; i < now.size(); ++i)
    if (now[i] != e.shown[i]) lines.insert(lines.end(), now[i].begin(), now[i].end());
  e.shown = now;
  if (!lines.empty()) e.drawn_at.reset();
  return lines;
}

void ToolTracker::drawn(const std::string& id, std::uint64_t mark) {
  if (auto it = calls_.find(id); it != calls_.end()) it->second.drawn_at = mark;
}

std::vector<ViewLine> ToolTracker::for_permission(const acp::ToolCall& tool, const ViewOptions& o, std::uint64_t mark) {
  auto it = calls_.find(tool.id);
  if (it == calls_.end()) return tool_lines(tool, o);
  Entry& e = it->second;
  if (changes_view(tool)) {
    acp::ToolCall merged = e.call;
    acp::merge_tool_call(merged, tool);  // the request's own fields are the latest
    auto now = tool_parts(merged, o);
    if (e.drawn_at == mark && e.shown == now) return {};
    return joined(now);
  }
  const auto& now = parts(e, o);
  // Just drawn, unchanged, and nothing came after: the question is right under it.
  if (e.drawn_at == mark && e.shown == now) return {};
  return joined(now);
}

const acp::ToolCall* ToolTracker::find(const std::string& id) const {
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : &it->second.call;
}

void ToolTracker::clear() {
  calls_.clear();
  order_.clear();
}

}  // namespace tether::cli
