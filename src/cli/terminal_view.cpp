#include "cli/terminal_view.h"

#include <unistd.h>

#include "cli/terminal_text.h"

namespace tether::cli {

namespace {
constexpr std::size_t kPiece = 4096;  // a line that never ends is shown in pieces this long
}

void TerminalView::show(std::string_view line, const std::string& id) {
  last_ = id;
  if (*sink_) (*sink_)(terminal_line(line));
}

void TerminalView::output_line(const std::string& id, Shown& s, std::string_view line) {
  if (last_ != id) show("$ " + s.command + ":", id);
  if (s.lines < kMaxLines) show("  " + std::string(line), id);
  else if (s.lines == kMaxLines)
    show("  … more output (the agent sees it; tether shows the first " + std::to_string(kMaxLines) + " lines)", id);
  ++s.lines;
}

void TerminalView::operator()(const acp::TerminalActivity& a) {
  using K = acp::TerminalActivity::Kind;
  switch (a.kind) {
    case K::started:
      shown_[a.terminal_id] = {a.command, "", 0};
      show("$ " + a.command, a.terminal_id);
      break;
    case K::refused: show("$ " + a.command + "  (refused: " + a.text + ")", ""); break;
    case K::output: {
      Shown& s = shown_[a.terminal_id];
      if (s.lines > kMaxLines) break;
      s.partial += a.text;
      std::size_t start = 0;
      for (std::size_t nl; (nl = s.partial.find('\n', start)) != std::string::npos; start = nl + 1)
        output_line(a.terminal_id, s, std::string_view(s.partial).substr(start, nl - start));
      s.partial.erase(0, start);
      while (s.partial.size() > kPiece) {
        output_line(a.terminal_id, s, std::string_view(s.partial).substr(0, kPiece));
        s.partial.erase(0, kPiece);
      }
      break;
    }
    case K::exited: {
      Shown& s = shown_[a.terminal_id];
      if (!s.partial.empty() && s.lines <= kMaxLines) output_line(a.terminal_id, s, s.partial);
      std::string how = a.status ? (a.status->signaled ? "" : "exited with ") + a.status->describe() : "exited";
      if (last_ == a.terminal_id) show("  " + how, a.terminal_id);
      else show("$ " + s.command + ": " + how, a.terminal_id);
      shown_.erase(a.terminal_id);
      break;
    }
  }
}

acp::TerminalObserver terminal_view(std::shared_ptr<TerminalView::Sink> sink) {
  auto view = std::make_shared<TerminalView>(std::move(sink));
  return [view](const acp::TerminalActivity& a) { (*view)(a); };
}

std::shared_ptr<TerminalView::Sink> stderr_sink(bool color) {
  return std::make_shared<TerminalView::Sink>([color](std::string_view line) {
    std::string s = color ? "\x1b[2m" + std::string(line) + "\x1b[0m\n" : std::string(line) + "\n";
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, s.data(), s.size());
  });
}

}  // namespace tether::cli
