// Talk (talk_private.h) at a terminal: the interactive loop around the line editor, and what a
// typed line does (script mode, talk_script.cpp, feeds its lines to the same on_line()).
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/talk_private.h"
#include "cli/terminal_text.h"

namespace tether::cli {
namespace {

// How long a /word waits for the agent's command list (await_agent_commands).
constexpr auto kCommandsWait = std::chrono::milliseconds(1000);

}  // namespace

using namespace talk_detail;
using talk::LineKind;

// --- the interactive loop -------------------------------------------------------------------------

int Talk::run_interactive() {
#ifdef TETHER_HAVE_LIBEDIT
  start_editor();
  greet();
  while (!quit_) {
    if (!interactive_step()) return kExitSoftware;
  }
  base::write_all(STDOUT_FILENO, "\n");
  editor_.reset();
  restore_terminal();
  return kExitOk;
#else
  renderer_.error("this tether was built without libedit: tether talk reads prompts from a pipe only");
  flush();
  return kExitUsage;
#endif
}

#ifdef TETHER_HAVE_LIBEDIT
// The terminal's modes saved, the history loaded, the line editor ready.
void Talk::start_editor() {
  save_terminal();
  if (!o_.no_history) {
    std::string path = talk::history_path([](const char* n) { return ::getenv(n); });
    if (!path.empty()) history_.emplace(path);
  }
  std::vector<std::string> entries;
  if (history_) {
    std::string err;
    entries = history_->load(err);
    if (!err.empty()) renderer_.note(err + " (history not loaded)");
  }
  use_utf8_ctype();
  editor_.emplace(STDIN_FILENO, STDOUT_FILENO);
  editor_->wake_on(sig_.get());  // Ctrl-C and SIGTERM reach us during a Ctrl-R search too
  for (auto& e : entries) editor_->add_history(e);
  if (!entries.empty()) last_entry_ = entries.back();
}

// One round of the loop: the prompt back when nothing is in flight, else one poll() over the
// signals, the session and the keys, and what they brought. False when poll() itself failed (the
// bridge is stopped then).
bool Talk::interactive_step() {
  // The prompt comes back once our turn is over and no question waits for an answer.
  if (!turn_ && !editor_->editing() && perms_.empty()) {
    renderer_.finish_lines();
    flush();
    editor_->start(prompt(), kContinuation);
    handle_editor(editor_->process());
    return true;
  }
  bool want_keys = editor_->editing() || !perms_.empty();
  pollfd p[3];
  nfds_t n = 0;
  p[n++] = {sig_.get(), POLLIN, 0};
  p[n++] = {session_->fd(), POLLIN, 0};
  if (want_keys) p[n++] = {STDIN_FILENO, POLLIN, 0};
  base::Deadline d = turn_ ? turn_->next_deadline() : session_->next_deadline();
  // What a turn's pump set aside for the session (another client's turn, a routed question)
  // does not make the fd readable again: the session's deadline says so.
  if (turn_ && connected_mode()) d = base::Deadline::earliest(d, session_->next_deadline());
  if (!turn_) d = base::Deadline::earliest(d, editor_->partial_deadline());
  if (!turn_ && perms_.empty()) d = base::Deadline::earliest(d, other_pause_);
  if (turn_ && perms_.empty()) d = base::Deadline::earliest(d, wait_.next_tick());
  int r = ::poll(p, n, d.poll_timeout_ms());
  if (turn_ && perms_.empty()) wait_.tick();  // a question waits for us, not for the agent
  if (r < 0 && errno != EINTR) {
    renderer_.error(std::string("poll: ") + strerror(errno));
    flush();
    shutdown_now();
    return false;
  }
  if (r > 0 && (p[0].revents & POLLIN)) on_signals();
  if (want_keys && r > 0 && (p[2].revents & (POLLIN | POLLHUP | POLLERR))) {
    if (!perms_.empty()) {
      read_permission_key();
    } else if (!turn_ && editor_->editing()) {
      last_key_ = base::Clock::now();
      handle_editor(editor_->on_readable());
    }
  }
  if (turn_) {
    // Our turn's stream first: through a server it also carries, in wire order, the other
    // clients' turns that ran while ours waited (TurnEvent::other_client). What the session
    // set aside besides comes after our turn's end; taken without reading more, so nothing
    // of our turn is left unread behind a cleared fd.
    handle_turn_events();
    if (connected_mode()) on_session_events(session_->take_notices());
  } else {
    if (editor_->partial_deadline().expired()) {
      editor_->on_partial_timeout();
      handle_editor(editor_->process());
    }
    if (!turn_) poll_session();
    if (!turn_ && perms_.empty() && other_pause_.expired()) {
      // Another client's answer paused mid-line: show the line as it is. (A question on the
      // screen keeps its line open for the answer.)
      other_pause_ = base::Deadline::never();
      renderer_.finish_lines();
      flush();
    }
  }
  return true;
}

void Talk::handle_editor(std::vector<talk::LineEditor::Event> events) {
  for (auto& e : events) {
    if (e.kind == talk::LineEditor::Event::Kind::eof) on_eof();
    else on_line(e.text, e.multiline);
    if (quit_ || turn_) return;
  }
}
#endif

// --- typed lines ----------------------------------------------------------------------------------

void Talk::interrupt_prompt() {
  bool discarded = multi_;
  multi_ = false;
  multi_lines_.clear();
#ifdef TETHER_HAVE_LIBEDIT
  if (editor_) editor_->interrupt(prompt());
#endif
  if (discarded) {
    renderer_.dim("(the /multi block was discarded)");
    flush();
  }
}

void Talk::record(const std::string& line) {
  if (!history_ || !talk::should_record(line, last_entry_)) return;
  last_entry_ = line;
#ifdef TETHER_HAVE_LIBEDIT
  if (editor_) editor_->add_history(line);
#endif
  std::string err;
  if (!history_->append(line, err) && !history_warned_) {
    history_warned_ = true;
    renderer_.note(err + " (history not saved)");
    flush();
  }
}

// An agent announces its slash commands in an update after session/new, whenever it likes: a
// /word typed before that arrives may be one of them. So before calling a command unknown, wait
// a moment (kCommandsWait) for the list; true when it arrived. Agents that never announce any
// cost a typo that moment, once per line, and nothing else.
bool Talk::await_agent_commands() {
  auto deadline = base::Deadline::after(kCommandsWait);
  while (!session_->state().commands_announced && !deadline.expired()) {
    pollfd p{session_->fd(), POLLIN, 0};
    ::poll(&p, 1, deadline.poll_timeout_ms());
    on_session_events(session_->poll());
  }
  return session_->state().commands_announced;
}

// Inside a /multi block: a line of it, or its terminator (the block is sent). A pasted block
// (`multiline`) is one prompt as it is. True when the line was taken so.
bool Talk::on_multi_line(const std::string& text, bool multiline) {
  if (multi_) {
    if (!multiline) record(text);
    if (!multiline && talk::is_terminator(text, multi_term_)) {
      multi_ = false;
      std::string all;
      for (auto& l : multi_lines_) all += (all.empty() ? "" : "\n") + l;
      multi_lines_.clear();
      if (all.find_first_not_of(" \t\n") == std::string::npos) {
        renderer_.dim("(empty block: nothing sent)");
        flush();
        return true;
      }
      start_turn(std::move(all));
      return true;
    }
    multi_lines_.push_back(text);
    return true;
  }
  if (multiline) {
    // Pasted blank lines are no prompt, as a blank typed line is none (start_turn() says so too).
    if (text.find_first_not_of(" \t\r\n") != std::string::npos) start_turn(text);
    return true;
  }
  return false;
}

// A typed line (or a script's): a prompt, an agent's command, or one of ours (/help lists them).
void Talk::on_line(const std::string& text, bool multiline) {
  if (on_multi_line(text, multiline)) return;
  record(text);
  // What the bridge sent meanwhile first: the agent's command list may have just changed.
  on_session_events(session_->poll());
  auto parsed = talk::parse_line(text, session_->state().commands);
  if (parsed.kind == LineKind::unknown && await_agent_commands()) {
    parsed = talk::parse_line(text, session_->state().commands);
  }
  switch (parsed.kind) {
    case LineKind::empty: return;
    case LineKind::prompt:
    case LineKind::agent_command: start_turn(std::move(parsed.text)); return;
    case LineKind::help: renderer_.info(talk::help_text(session_->state().commands)); break;
    case LineKind::exit: quit_ = true; break;
    case LineKind::cancel: renderer_.dim("(no answer is in flight: Ctrl-C cancels one while it streams)"); break;
    case LineKind::restart:
      // Through a server, /restart restarts the server's bridge; our connection is restarted
      // (a reconnect) only when it is down.
      if (connected_mode() && bridge_.status().state == supervisor::State::ready) restart_server_bridge();
      else restart();
      break;
    case LineKind::status: renderer_.info(status_text()); break;
    case LineKind::stderr_tail: {
      if (connected_mode()) {
        server_stderr();
        break;
      }
      std::string tail = bridge_.status().stderr_tail;
      if (tail.empty()) renderer_.dim("(the bridge has written nothing to its stderr)");
      else renderer_.info(renderer_.style().sanitize ? talk::sanitize_text(tail) : tail);
      break;
    }
    case LineKind::multi:
      multi_ = true;
      multi_term_ = parsed.text;
      multi_lines_.clear();
      if (interactive_) renderer_.dim("(multi-line prompt: end it with a line " + multi_term_ + "; Ctrl-C discards it)");
      break;
    case LineKind::edit: edit(parsed.text); break;
    case LineKind::session_new: new_session(); break;
    case LineKind::mode:
    case LineKind::model:
    case LineKind::set: change_setting(parsed.kind, parsed.text); break;
    case LineKind::attach: attach(parsed.text); break;
    case LineKind::detach:
      renderer_.dim(attached_.empty() ? "(nothing was attached)" : "(attachments dropped)");
      attached_.clear();
      break;
    case LineKind::unknown:
      renderer_.error("unknown command /" + parsed.text + ": /help lists the commands; //" + parsed.text +
                      " sends the line to the agent as it is");
      if (!interactive_) last_status_ = acp::worse_exit(last_status_, kExitDataErr);
      break;
    case LineKind::usage_error:
      renderer_.error(parsed.text);
      if (!interactive_) last_status_ = acp::worse_exit(last_status_, kExitDataErr);
      break;
  }
  flush();
}

void Talk::on_eof() {
  if (multi_ && !multi_lines_.empty()) {
    // End of input ends the block, as a terminator would.
    on_line(multi_term_, false);
    return;
  }
  quit_ = true;
}
// /attach PATH: read now (a mistake is said at once), sent with the next prompt. A leading ~/ is
// the home directory, as a shell would have it. No PATH: what is attached.
void Talk::attach(const std::string& arg) {
  if (arg.empty()) {
    if (attached_.empty()) {
      renderer_.dim("(nothing attached: /attach PATH adds a file to the next prompt)");
      return;
    }
    std::string list;
    for (const auto& a : attached_)
      list += "attached: " + a.name + " (" + a.mime_type + ", " + talk::number_text(static_cast<std::int64_t>(a.size)) +
              " bytes)\n";
    renderer_.info(list);
    return;
  }
  if (attached_.size() >= kMaxAttachments) {
    renderer_.error("at most " + std::to_string(kMaxAttachments) + " attachments go with one prompt");
    return;
  }
  std::string path = arg;
  if (path.rfind("~/", 0) == 0)
    if (const char* home = std::getenv("HOME"); home && *home) path = home + path.substr(1);
  if (path == "-") {
    renderer_.error("/attach - would read the prompt's own input: name a file");
    return;
  }
  auto got = read_attachment(path);
  if (auto* err = std::get_if<std::string>(&got)) {
    renderer_.error(*err);
    return;
  }
  Attachment& a = std::get<Attachment>(got);
  a.name = arg;
  renderer_.dim("(attached " + a.name + ", " + a.mime_type + ", to the next prompt)");
  attached_.push_back(std::move(a));
}

#ifdef TETHER_HAVE_LIBEDIT
// "tether> ", or with files attached "tether [a.png, notes.md]> " (the names cut to 40 bytes at
// a character boundary).
std::string Talk::prompt() const {
  if (multi_) return talk_detail::kContinuation;
  if (attached_.empty()) return talk_detail::kPrompt;
  std::string names = terminal_line(attachment_names(attached_));
  if (names.size() > 40) {
    std::size_t cut = 37;
    while (cut > 0 && (static_cast<unsigned char>(names[cut]) & 0xC0) == 0x80) --cut;
    names = names.substr(0, cut) + "...";
  }
  return "tether [" + names + "]> ";
}
#endif

}  // namespace tether::cli
