#include "cli/line_editor.h"

#include "base/unique_fd.h"
#include "cli/common.h"

#ifdef TETHER_HAVE_LIBEDIT  // without libedit, talk reads from a pipe only

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

#include <cstring>
#include <stdexcept>
#include <utility>

namespace tether::cli::talk {

namespace {

LineEditor* g_editor = nullptr;  // libedit's callbacks carry no context

// How long a lone Escape waits for the rest of a paste marker before it counts as a key.
constexpr auto kPartialWait = std::chrono::milliseconds(40);

// How many commands libedit may have pushed back for itself after one key (feed_one()).
constexpr int kMaxPushedCommands = 64;

constexpr std::string_view kPasteOn = "\x1b[?2004h";
constexpr std::string_view kPasteOff = "\x1b[?2004l";

// Display columns of a prompt or line: code points, minus the \1...\2 invisible regions.
std::size_t columns(std::string_view s) {
  std::size_t n = 0;
  bool hidden = false;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == RL_PROMPT_START_IGNORE) hidden = true;
    else if (c == RL_PROMPT_END_IGNORE) hidden = false;
    else if (!hidden && (c & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace

// The C callbacks libedit calls; they reach the one live editor.
struct EditorCallbacks {
  static void on_line(char* line) {
    LineEditor* e = g_editor;
    if (!e) return;
    e->line_ready_ = true;
    e->line_eof_ = line == nullptr;
    e->line_text_ = line ? line : "";
    free(line);  // libedit strdup()s the line for us
  }
  static int getc(FILE*) {
    LineEditor* e = g_editor;
    return e ? e->getc_blocking() : -1;
  }
};

LineEditor::LineEditor(int in_fd, int out_fd) : in_fd_(in_fd), out_fd_(out_fd) {
  if (g_editor) throw std::logic_error("one LineEditor at a time");
  g_editor = this;
  // tether reads every signal from a signalfd; libedit must not install handlers of its own.
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  rl_getc_function = &EditorCallbacks::getc;
  rl_readline_name = "tether";
  rl_initialize();
  using_history();
  stifle_history(2000);
  // Tab inserts itself (pasted code keeps its indentation): there is nothing to complete.
  rl_parse_and_bind("bind ^I ed-insert");
  base::write_all(out_fd_, kPasteOn);
}

LineEditor::~LineEditor() {
  stop();
  base::write_all(out_fd_, kPasteOff);
  rl_getc_function = nullptr;
  g_editor = nullptr;
}

void LineEditor::add_history(const std::string& entry) { ::add_history(entry.c_str()); }

void LineEditor::install(const std::string& prompt) {
  line_ready_ = false;
  rl_callback_handler_install(prompt.c_str(), &EditorCallbacks::on_line);
  editing_ = true;
  fresh_ = true;
}

void LineEditor::start(std::string prompt, std::string continuation) {
  prompt_ = std::move(prompt);
  continuation_ = std::move(continuation);
  if (editing_) return;
  install(pasted_.empty() ? prompt_ : continuation_);
  if (!saved_.empty()) {
    // Replay the interrupted line as keys: libedit redraws it as it would a typed one.
    std::string keys = std::exchange(saved_, {});
    restore_left_ = keys.size();
    feed_.insert(0, keys);
    feed_paste_.insert(0, std::string(keys.size(), '0'));
    while (restore_left_ > 0 && editing_ && !feed_.empty()) feed_one();
    restore_left_ = 0;
  }
}

void LineEditor::stop() {
  if (!editing_) return;
  // Keep what was typed, printable characters only (they are replayed as keys).
  saved_.clear();
  if (rl_line_buffer && !fresh_)
    for (int i = 0; i < rl_end; ++i) {
      auto c = static_cast<unsigned char>(rl_line_buffer[i]);
      if (c >= 0x20 || c == '\t') saved_ += static_cast<char>(c);
    }
  rl_callback_handler_remove();
  editing_ = false;
}

int LineEditor::getc_blocking() {
  if (probing_) {
    // A probe (feed_one()) found nothing libedit had pushed back: end of input, which a callback
    // read takes as "no key yet" (it returns without touching the line).
    probe_asked_ = true;
    return -1;
  }
  // A signal ended the wait (await_keys()): end of input again, however often libedit asks
  // before the command gives up. No key is ever made up, so no state of libedit can loop on it.
  if (aborted_) return -1;
  for (;;) {
    if (!feed_.empty()) {
      auto c = static_cast<unsigned char>(feed_[0]);
      last_from_paste_ = feed_paste_[0] == '1';
      feed_.erase(0, 1);
      feed_paste_.erase(0, 1);
      if (restore_left_ > 0) --restore_left_;
      return c;
    }
    if (restore_left_ > 0) return -1;  // never: the restored keys are all in feed_
    // libedit wants another key within one command: the rest of a key sequence (Escape, Ctrl-X,
    // ESC [ ...), the next key of a Ctrl-R search or the key after Ctrl-V, whenever the person
    // types it.
    decoder_.release_partial();
    if (pull()) continue;
    if (!await_keys()) return -1;
  }
}

bool LineEditor::await_keys() {
  // The wait holds up the caller's poll loop, so the signals are read here as well. End of input
  // (-1 from getc_blocking()) is how a read ends in every state of libedit: a key sequence is
  // dropped, a search or Ctrl-V ends as at Ctrl-D, quietly (no bell). Another key would not do:
  // Escape after Escape asks for one more key, with a bell, for ever.
  bool watch = wake_fd_ >= 0;
  for (;;) {
    pollfd p[2] = {{in_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (::poll(p, watch ? 2 : 1, -1) < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return false;
    }
    if (watch && (p[1].revents & (POLLERR | POLLHUP | POLLNVAL))) watch = false;  // never: it is ours
    if (watch && (p[1].revents & POLLIN) && wake_ends_wait()) {
      aborted_ = true;
      return false;
    }
    if (!(p[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) continue;  // a resize: wait on
    char buf[256];
    ssize_t n = ::read(in_fd_, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return false;  // the terminal hung up: end of input
    decoder_.push(std::string_view(buf, static_cast<std::size_t>(n)));
    return true;
  }
}

bool LineEditor::wake_ends_wait() {
  // A resize is the editor's own business: libedit takes the new width and the wait goes on (a
  // search or a Ctrl-V is not cut short, and no key is made up). Any other signal (Ctrl-C,
  // SIGTERM, SIGHUP) is the caller's: it goes back to pending (it is blocked, so the signal fd
  // reports it again) and the wait ends.
  int sig = read_signal(wake_fd_);
  if (sig == 0) return false;
  if (sig == SIGWINCH) {
    rl_resize_terminal();
    return false;
  }
  ::raise(sig);
  return true;
}

bool LineEditor::pull() {
  auto item = decoder_.next();
  partial_deadline_ = decoder_.holding_partial() ? base::Deadline::after(kPartialWait) : base::Deadline::never();
  if (!item) return false;
  std::string text = item->paste ? clean_paste(item->text) : std::move(item->text);
  feed_ += text;
  feed_paste_ += std::string(text.size(), item->paste ? '1' : '0');
  return true;
}

void LineEditor::feed_one() {
  line_ready_ = false;
  aborted_ = false;
  made_up_eof_ = false;
  rl_callback_read_char();
  fresh_ = false;
  if (aborted_) return;  // nothing was pushed back: libedit's command was cut short
  // A command may push keys back for libedit itself: Enter that ends a Ctrl-R search is pushed
  // back to run as the next command (accepting the line), and a key bound to a string pushes the
  // string. libedit runs pushed keys only at the next rl_callback_read_char(), that is after the
  // next key typed: the found line would wait for a second Enter, and that second Enter would
  // look like the start of a paste. So run them now, one probe per pushed command, until libedit
  // asks us for a key (nothing was pushed) or the line is done. The bound keeps a runaway macro
  // from spinning.
  for (int i = 0; i < kMaxPushedCommands && editing_ && !line_ready_; ++i) {
    probing_ = true;
    probe_asked_ = false;
    rl_callback_read_char();
    probing_ = false;
    if (probe_asked_) {
      // A pushed-back command that wanted one more key (Ctrl-V after a search) got our end of
      // input and, on an empty line, ended the line as Ctrl-D would: nobody pressed Ctrl-D.
      made_up_eof_ = line_ready_ && line_eof_;
      break;
    }
  }
}

std::vector<LineEditor::Event> LineEditor::on_readable() {
  char buf[4096];
  ssize_t n = ::read(in_fd_, buf, sizeof buf);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return process();
  if (n <= 0) {
    // stdin is gone (the terminal hung up): that is an end of input.
    if (editing_) stop();
    return {Event{Event::Kind::eof, {}, false}};
  }
  decoder_.push(std::string_view(buf, static_cast<std::size_t>(n)));
  return process();
}

void LineEditor::on_partial_timeout() { decoder_.release_partial(); }

std::vector<LineEditor::Event> LineEditor::process() {
  std::vector<Event> events;
  while (editing_) {
    if (feed_.empty() && !pull()) break;
    feed_one();
    if (aborted_) {
      // A signal cut a command short; the caller's loop reads it next and drops the line
      // (Ctrl-C) or exits. Ctrl-V on an empty line ends as at Ctrl-D: that is no end of input.
      line_ready_ = false;
      break;
    }
    if (!line_ready_) continue;
    line_ready_ = false;
    // libedit finished the line and left raw mode; the handler stays installed no longer.
    editing_ = false;
    rl_callback_handler_remove();
    if (line_eof_ && made_up_eof_) {
      install(pasted_.empty() ? prompt_ : continuation_);  // the same empty line, editable again
      continue;
    }
    hold_input();
    if (line_eof_) {
      if (!pasted_.empty()) {
        std::string all;
        for (auto& l : pasted_) all += (all.empty() ? "" : "\n") + l;
        pasted_.clear();
        events.push_back({Event::Kind::line, std::move(all), true});
      } else {
        events.push_back({Event::Kind::eof, {}, false});
      }
      break;
    }
    bool more_came_with_it = last_from_paste_ || !feed_.empty() || !decoder_.empty();
    // An empty line starts no paste (Enter pressed twice in a row is two empty lines, which send
    // nothing); a paste's leading blank lines are no part of a prompt anyway.
    bool starts_nothing = pasted_.empty() && line_text_.empty();
    if (more_came_with_it && !starts_nothing) {
      // Part of a paste: collect it and keep editing under the continuation prompt.
      pasted_.push_back(std::move(line_text_));
      install(continuation_);
      continue;
    }
    if (!pasted_.empty()) {
      if (!line_text_.empty()) pasted_.push_back(std::move(line_text_));
      std::string all;
      for (auto& l : pasted_) all += (all.empty() ? "" : "\n") + l;
      pasted_.clear();
      events.push_back({Event::Kind::line, std::move(all), true});
    } else {
      events.push_back({Event::Kind::line, std::move(line_text_), false});
    }
    break;
  }
  return events;
}

void LineEditor::erase_line_on_screen() {
  // The cursor is somewhere in the edited line, which may wrap: go to its first row, clear down.
  winsize ws{};
  std::size_t cols = ::ioctl(out_fd_, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? ws.ws_col : 80;
  std::string_view before;
  if (rl_line_buffer && !fresh_) before = std::string_view(rl_line_buffer, static_cast<std::size_t>(rl_point));
  std::size_t at = columns(pasted_.empty() ? prompt_ : continuation_) + columns(before);
  std::size_t up = at / cols;
  std::string seq = "\r";
  if (up > 0) seq += "\x1b[" + std::to_string(up) + "A";
  seq += "\x1b[J";
  base::write_all(out_fd_, seq);
}

void LineEditor::print_above(std::string_view text) {
  bool was_editing = editing_;
  if (was_editing) {
    erase_line_on_screen();
    stop();
    hold_input();
  }
  base::write_all(out_fd_, text);
  if (!text.empty() && text.back() != '\n') base::write_all(out_fd_, "\n");
  if (was_editing) start(prompt_, continuation_);
}

void LineEditor::suspend() {
  if (!editing_) return;
  erase_line_on_screen();
  stop();
  hold_input();
}

void LineEditor::interrupt(std::string prompt) {
  bool was_editing = editing_;
  if (was_editing) {
    stop();
    hold_input();
  }
  saved_.clear();
  pasted_.clear();
  discard_input();
  base::write_all(out_fd_, "^C\n");
  if (was_editing) start(std::move(prompt), continuation_);
}

void LineEditor::discard_input() {
  feed_.clear();
  feed_paste_.clear();
  decoder_.clear();
  partial_deadline_ = base::Deadline::never();
  ::tcflush(in_fd_, TCIFLUSH);
}

void LineEditor::hold_input() {
  // libedit leaves the terminal cooked; in canonical mode a Ctrl-D typed now would become an
  // end-of-file marker that reaches the next raw read as a NUL byte. Keys typed while the editor
  // is off must stay plain keys, unechoed, for the next start().
  termios t;
  if (::tcgetattr(in_fd_, &t) != 0) return;
  t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
  t.c_lflag |= ISIG;
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  ::tcsetattr(in_fd_, TCSANOW, &t);
}

void LineEditor::resize() {
  if (editing_) rl_resize_terminal();
}

}  // namespace tether::cli::talk

#endif  // TETHER_HAVE_LIBEDIT
