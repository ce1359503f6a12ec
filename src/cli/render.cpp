#include "cli/render.h"

#include <cctype>
#include <cstdio>
#include <utility>

#include "acp/outcome.h"
#include "cli/terminal_text.h"

namespace tether::cli::talk {
namespace {

constexpr std::string_view kDim = "2";
constexpr std::string_view kThought = "2;3";
constexpr std::string_view kTool = "36";
constexpr std::string_view kGood = "32";
constexpr std::string_view kBad = "31";
constexpr std::string_view kNote = "33";
constexpr std::string_view kError = "1;31";
constexpr std::string_view kAsk = "1;35";

// The agent's one-line fields of a tool call, each on one line (the renderer's lines are its own).
acp::ToolCall one_line(acp::ToolCall t) {
  if (t.title) t.title = terminal_line(*t.title);
  if (t.kind) t.kind = terminal_line(*t.kind);
  if (t.status) t.status = terminal_line(*t.status);
  t.id = terminal_line(t.id);
  for (auto& l : t.locations) l = terminal_line(l);
  return t;
}

std::string status_color(const std::string& status) {
  if (status == "completed") return std::string(kGood);
  if (status == "failed") return std::string(kBad);
  return std::string(kTool);
}

}  // namespace

std::string number_text(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string usage_text(const acp::Usage& u) {
  std::string s = number_text(u.used) + " of " + number_text(u.size) + " tokens";
  if (u.size > 0) {
    char pct[32];
    std::snprintf(pct, sizeof pct, " (%.1f%%)", 100.0 * static_cast<double>(u.used) / static_cast<double>(u.size));
    s += pct;
  }
  if (u.cost) {
    char cost[64];
    std::snprintf(cost, sizeof cost, ", cost %.4g", *u.cost);
    s += cost;
    if (!u.currency.empty()) s += " " + u.currency;
  }
  return s;
}

std::string sanitize_text(std::string_view text) { return terminal_text(text); }

std::vector<char> option_letters(const std::vector<acp::PermissionOption>& options) {
  std::vector<char> letters;
  std::string used;
  for (const auto& o : options) {
    char l = 0;
    if (!o.name.empty() && std::isalpha(static_cast<unsigned char>(o.name[0]))) {
      l = static_cast<char>(std::tolower(static_cast<unsigned char>(o.name[0])));
      if (used.find(l) != std::string::npos) l = 0;
      else used += l;
    }
    letters.push_back(l);
  }
  return letters;
}

std::optional<std::size_t> pick_option(char key, const std::vector<char>& letters, std::size_t count) {
  if (key >= '1' && key <= '9') {
    auto i = static_cast<std::size_t>(key - '1');
    if (i < count) return i;
    return std::nullopt;
  }
  if (!std::isalpha(static_cast<unsigned char>(key))) return std::nullopt;
  char l = static_cast<char>(std::tolower(static_cast<unsigned char>(key)));
  for (std::size_t i = 0; i < letters.size() && i < count; ++i)
    if (letters[i] == l) return i;
  return std::nullopt;
}

void Renderer::emit(int fd, std::string_view text) {
  if (text.empty()) return;
  ++emits_;
  ask_open_ = false;
  // separate_blocks: a block (a turn, a command's output) that is not the first starts with a
  // blank line where it shows: on stdout, or on the terminal that both outputs share.
  bool shows = fd == 1 || style_.shared;
  if (style_.separate_blocks && shows && gap_due_) {
    gap_due_ = false;
    if (written_) emit(1, "\n");
  }
  if (shows) written_ = true;
  if (!out_.empty() && out_.back().fd == fd) out_.back().text += text;
  else out_.push_back({fd, std::string(text)});
  open_[fd] = text.back() != '\n';
}

std::string Renderer::safe(int fd, std::string_view text) const {
  bool terminal = fd == 1 ? style_.sanitize : style_.sanitize_err;
  return terminal ? terminal_text(text) : std::string(text);
}

void Renderer::break_lines(int fd) {
  for (int f : {1, 2}) {
    if (!open_[f]) continue;
    if (f == fd || style_.shared) emit(f, "\n");
  }
  if (block_ == Block::thought) block_ = Block::none;
  indent_pending_ = false;
}

std::string Renderer::paint(std::string_view color, std::string_view text) const {
  if (!style_.color || color.empty() || text.empty()) return std::string(text);
  return "\x1b[" + std::string(color) + "m" + std::string(text) + "\x1b[0m";
}

void Renderer::line(int fd, std::string_view color, std::string_view raw) {
  std::string text = safe(fd, raw);
  break_lines(fd);
  if (block_ == Block::answer && fd == 2 && style_.shared) block_ = Block::none;
  // Colour one line at a time, so nothing bleeds past a line end.
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    emit(fd, paint(color, std::string_view(text).substr(pos, nl - pos)) + "\n");
    pos = nl + 1;
  }
}

void Renderer::begin_turn() {
  begin_section();
  cancel_shown_ = false;
  dropped_after_cancel_ = 0;
}

void Renderer::begin_section() {
  breaks_ = {};
  tools_.clear();
  views_.clear();
  last_plan_.clear();
  usage_.reset();
  block_ = Block::none;
  indent_pending_ = false;
  gap_due_ = true;
}

void Renderer::thought(std::string_view raw) {
  if (!style_.details) return;
  std::string text = safe(2, raw);
  if (block_ != Block::thought) {
    break_lines(2);
    emit(2, paint(kThought, "  thinking: "));
    block_ = Block::thought;
    indent_pending_ = false;
  }
  std::size_t pos = 0;
  while (pos < text.size()) {
    if (indent_pending_) {
      emit(2, "    ");
      indent_pending_ = false;
    }
    std::size_t nl = text.find('\n', pos);
    std::size_t end = nl == std::string::npos ? text.size() : nl;
    if (end > pos) emit(2, paint(kThought, std::string_view(text).substr(pos, end - pos)));
    if (nl == std::string::npos) break;
    emit(2, "\n");
    indent_pending_ = true;
    pos = nl + 1;
  }
}

// A tool call's diff, command, output, terminal and locations (tool_view.h): each line is safe
// already (terminal_line), so it is written as it is; cut to stderr's width less the indent.
void Renderer::view(const std::vector<ViewLine>& lines) {
  if (lines.empty()) return;
  break_lines(2);
  if (block_ == Block::answer && style_.shared) block_ = Block::none;
  emit(2, format(lines, "    ", style_.color));
}

void Renderer::tool(const acp::Update& u) {
  const acp::ToolCall& in = u.tool;
  // Tracked even with details off: a permission question shows what it is about.
  ViewOptions o = style_.view;
  if (o.width > 4) o.width -= 4;
  std::vector<ViewLine> lines = views_.update(in, o);
  if (!style_.details) return;
  if (u.kind == acp::Update::Kind::tool_call) {
    tools_[in.id] = in;
    line(2, kTool, "  tool: " + acp::describe_tool_call(one_line(in)));
    view(lines);
    views_.drawn(in.id, emits_);
    return;
  }
  acp::ToolCall& t = tools_[in.id];
  if (t.id.empty()) t.id = in.id;
  if (in.title) t.title = in.title;
  if (in.kind) t.kind = in.kind;
  if (!in.locations.empty()) t.locations = in.locations;
  bool headed = false;
  if (in.status && in.status != t.status) {
    headed = true;
    t.status = in.status;
    std::string head = "  tool: " + safe(2, terminal_line(t.title.value_or(t.id))) + ": ";
    break_lines(2);
    emit(2, paint(kTool, head) + paint(status_color(*in.status), safe(2, terminal_line(*in.status))) + "\n");
  }
  if (!lines.empty()) {
    // New content without a status line: a line says whose it is.
    if (!headed) line(2, kTool, "  tool: " + terminal_line(t.title.value_or(t.id)));
    view(lines);
    views_.drawn(in.id, emits_);
  }
}

void Renderer::update(const acp::Update& u, Whose whose) {
  using K = acp::Update::Kind;
  if (cancel_shown_ && whose == Whose::ours) {
    // The person cancelled: ACP lets the agent flush what it had before it stops, and the session
    // takes it (acp/session.h), but the screen is the person's: after "^C (cancelled)" nothing more
    // of the turn is drawn. The answer's characters are counted for end_turn(); the usage is kept
    // for the footer.
    if (u.kind == K::agent_message)
      for (char c : u.text) dropped_after_cancel_ += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    if (u.kind == K::usage) usage_ = u.usage;
    return;
  }
  std::string sep = breaks_.separator(u);  // a new agent message: a new paragraph
  switch (u.kind) {
    case K::agent_message: {
      std::string text = safe(1, u.text);
      if (text.empty()) return;
      text.insert(0, sep);
      if (block_ != Block::answer) {
        if (block_ == Block::thought || style_.shared) break_lines(1);
        block_ = Block::answer;
      }
      emit(1, text);
      return;
    }
    case K::agent_thought: thought(u.text); return;
    case K::tool_call:
    case K::tool_call_update: tool(u); return;
    case K::plan: {
      if (!style_.details) return;
      std::string plan = acp::describe_plan(u.plan);
      if (plan.empty() || plan == last_plan_) return;
      last_plan_ = plan;
      line(2, kDim, "  plan: " + terminal_line(plan));
      return;
    }
    case K::usage: usage_ = u.usage; return;
    case K::mode:
      // The agent changed its mode (leaving a plan mode, say): that changes what it may do.
      if (!style_.details || u.mode_id.empty()) return;
      line(2, kDim, "  mode: " + terminal_line(u.mode_id));
      return;
    default: return;  // other session state (commands, config options, title) and history echoes are not shown
  }
}

void Renderer::permission(const acp::PermissionRequest& p) {
  std::string what = acp::describe_tool_call(one_line(p.tool));
  // Asked after the cancel, a question was answered cancelled at once (acp/session.h): not drawn.
  if (p.answered && cancel_shown_) return;
  // What the question is about (the diff, the command, the output), before the options: the
  // request's own content, else the latest its tool call showed, unless that is right above.
  ViewOptions o = style_.view;
  if (o.width > 4) o.width -= 4;
  std::vector<ViewLine> about = views_.for_permission(p.tool, o, emits_);
  if (p.answered) {
    // Answered by the policy: what was allowed or rejected, with details on.
    if (style_.details) view(about);
    std::string answer = p.chosen ? terminal_line(p.chosen->name) : std::string("cancelled");
    line(2, kAsk, "  permission: " + what + ": " + answer);
    return;
  }
  line(2, kAsk, "  permission: " + what);
  view(about);
  auto letters = option_letters(p.options);
  std::string menu = "    ";
  for (std::size_t i = 0; i < p.options.size(); ++i) {
    std::string name = terminal_line(p.options[i].name);
    if (i) menu += "  ";
    menu += "[" + std::to_string(i + 1) + (letters[i] ? std::string("/") + letters[i] : "") + "] " + name;
  }
  line(2, "", menu);
  std::string ask = "  choose 1-" + std::to_string(p.options.size()) + " or a letter (Ctrl-C: cancel): ";
  if (p.options.empty()) ask = "  no options offered; press Ctrl-C to cancel: ";
  emit(2, paint(kAsk, ask));
  ask_open_ = true;
  ask_what_ = what;
}

void Renderer::permission_choice(std::string_view what) {
  std::string choice = safe(2, terminal_line(what));
  if (ask_open_) {
    emit(2, choice + "\n");
    return;
  }
  // Something came after the question (the answer went on streaming, a note): the outcome written
  // at the cursor would land on the end of that text. A line of its own says which question.
  line(2, kAsk, "  permission: " + ask_what_ + ": " + choice);
}

void Renderer::permission_withdrawn() { line(2, kDim, "  (the agent withdrew its permission request)"); }

void Renderer::cancelled() {
  cancel_shown_ = true;
  line(2, kNote, "^C (cancelled)");
}

void Renderer::end_turn(const acp::TurnEvent& t) {
  if (style_.details && dropped_after_cancel_ > 0)
    line(2, kDim, "  (" + number_text(dropped_after_cancel_) + " more characters of the answer came after the cancel: not shown)");
  if (style_.details && usage_) line(2, kDim, "  usage: " + usage_text(*usage_));
  if (t.kind == acp::TurnEvent::Kind::completed) {
    const std::string& r = t.stop_reason;
    if (r == "cancelled") {
      if (!cancel_shown_) line(2, kNote, "(cancelled)");
    } else if (r == "refusal") {
      line(2, kNote, "tether: the agent refused to answer (stop reason: refusal)");
    } else if (r == "max_tokens") {
      line(2, kNote, "tether: the answer was cut short: the agent reached its token limit (max_tokens)");
    } else if (r == "max_turn_requests") {
      line(2, kNote, "tether: the agent stopped: too many model requests in one turn (max_turn_requests)");
    } else if (r != "end_turn") {
      line(2, kNote, "tether: the agent stopped: " + terminal_line(r));
    }
  } else {
    std::string code = t.error.is_object() ? t.error.value("code", "") : "";
    // A give-up message already quotes the stderr tail; other errors get it appended.
    std::string msg = code == "restart_limit" && t.error.contains("message") && t.error["message"].is_string()
                          ? t.error["message"].get<std::string>()
                          : acp::message_with_tail(t.error);
    if (code == "cancelled" && cancel_shown_) {
      // The cancel itself was shown at Ctrl-C; say only what happened beyond it (escalation).
      auto semi = msg.find("; ");
      if (semi != std::string::npos) line(2, kNote, "tether: " + msg.substr(semi + 2));
    } else {
      line(2, kError, "tether: " + msg);
    }
  }
  finish_lines();
  block_ = Block::none;
  // The cancelled turn is over: what comes next without a begin_turn() (another client's turn
  // through a tether server) is not part of it.
  cancel_shown_ = false;
  dropped_after_cancel_ = 0;
}

void Renderer::note(std::string_view text) { line(2, kNote, "tether: " + std::string(text)); }
void Renderer::error(std::string_view text) { line(2, kError, "tether: " + std::string(text)); }
void Renderer::dim(std::string_view text) { line(2, kDim, text); }

void Renderer::info(std::string_view raw) {
  std::string text = safe(1, raw);
  break_lines(1);
  if (text.empty()) return;
  gap_due_ = true;
  emit(1, text);
  if (text.back() != '\n') emit(1, "\n");
}

void Renderer::finish_lines() {
  for (int f : {1, 2})
    if (open_[f]) emit(f, "\n");
  if (block_ == Block::thought) block_ = Block::none;
  indent_pending_ = false;
}

}  // namespace tether::cli::talk
