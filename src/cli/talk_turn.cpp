// Talk (talk_private.h): our turns, from the prompt sent to the answer's end; the permission
// questions asked during them (and, through a tether server, between them); Ctrl-C and the other
// signals, which act on whatever is in flight.
#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include "cli/talk_private.h"
#include "cli/terminal_text.h"

namespace tether::cli {

using namespace talk_detail;

// --- turns ----------------------------------------------------------------------------------------

bool Talk::bridge_down() {
  if (bridge_.status().state != supervisor::State::failed) return false;
  renderer_.error(connected_mode()
                      ? "not connected to the tether server (tether gave up reconnecting): /restart tries again"
                      : "the bridge is not running (tether gave up restarting it): /restart tries again, /stderr shows its last output");
  flush();
  return true;
}

void Talk::start_turn(std::string text) {
  // Empty input is never a turn, whichever way it came (a blank paste, a failed Ctrl-R search).
  if (text.find_first_not_of(" \t\r\n") == std::string::npos) return;
  if (bridge_down()) {
    last_status_ = acp::worse_exit(last_status_, kExitUnavailable);
    return;
  }
  // Another client's unfinished line ends before our turn starts.
  renderer_.finish_lines();
  other_prompt_ = false;
  other_pause_ = base::Deadline::never();
  renderer_.begin_turn();
  renderer_.set_width(terminal_width(STDERR_FILENO));  // a tool call's lines are cut to it
  trouble_shown_ = false;
  cancel_requested_ = false;
  drop_turn_permissions();
  base::Duration timeout = o_.common.timeout > 0 ? base::seconds(o_.common.timeout) : base::Duration::zero();
  turn_text_ = text;
  dropped_at_turn_start_ = bridge_.status().counters.oversize_lines;
  nlohmann::json attached = nlohmann::json::array();  // the names, for the stream and the log
  for (const auto& a : attached_) attached.push_back(a.name);
  if (events_) {
    events_usage_.reset();
    turn_started_at_ = base::Clock::now();
    emit_event(events_->turn_started(session_->state().session_id, text, attached));
  }
  if (attached_.empty()) {
    turn_.emplace(session_->prompt(std::move(text), timeout));
  } else {
    // /attach: the blocks are built for what the agent accepts; one it cannot take fails the
    // turn (bad_input) before anything is sent. The files go with this prompt only.
    turn_.emplace(session_->prompt_built(content_builder(std::exchange(attached_, {}), std::move(text)), timeout));
  }
  log_turn_.emplace(o_.common, "talk", turn_text_, session_->state());
  log_turn_->set_attachments(attached);
  wait_.start();
  if (interactive_) turn_terminal_mode();
  handle_turn_events();
}

void Talk::handle_turn_events() {
  if (!turn_) return;
  auto events = turn_->poll();
  bool gave_up = bridge_.status().state == supervisor::State::failed;
  for (std::size_t i = 0; i < events.size(); ++i) {
    auto& e = events[i];
    using K = acp::TurnEvent::Kind;
    if (e.other_client) {
      // Another client's turn, while ours waits in the server's queue (in wire order).
      if (e.kind == K::update) {
        if (interactive_) show_other(e.update);
      } else if (e.kind == K::permission) {
        on_permission(std::move(e.permission));
      } else if (e.kind == K::permission_withdrawn) {
        on_permission_withdrawn(e.permission.token);
      }
      continue;
    }
    if (other_in_turn_ && (e.kind == K::update || e.kind == K::permission)) {
      // Another client's turn ran while ours waited in the server's queue: ours starts afresh.
      other_in_turn_ = false;
      other_prompt_ = false;
      renderer_.finish_lines();
      renderer_.begin_section();  // the same turn: a cancel shown while it waited stays in force
      if (interactive_) renderer_.dim("(your turn) > " + first_line(turn_text_));
    }
    if (log_turn_) log_turn_->see(e);
    if (events_ && event_instead(e)) continue;
    switch (e.kind) {
      case K::update: renderer_.update(e.update); break;
      case K::permission: on_permission(std::move(e.permission)); break;
      case K::permission_withdrawn: on_permission_withdrawn(e.permission.token); break;
      case K::reply:
        if (!on_setting_reply(e)) replies_.push_back(std::move(e));
        break;
      case K::notice: show_notice(e); break;
      case K::output: show_output(e.text); break;
      case K::retry: {
        bool fails_next = false;
        for (std::size_t k = i + 1; k < events.size(); ++k) fails_next = fails_next || events[k].kind == K::failed;
        if (!gave_up && !fails_next) {
          renderer_.note(e.text);
          trouble_shown_ = true;
        }
        break;
      }
      case K::completed:
      case K::failed:
        end_turn(e);
        return;
    }
  }
  flush();
}

void Talk::end_turn(const acp::TurnEvent& e) {
  wait_.stop();
  if (events_) {
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(base::Clock::now() - turn_started_at_);
    emit_event(events_->turn_ended(session_->state().session_id, e, turn_usage(events_usage_, e.result), elapsed.count()));
  }
  drop_turn_permissions();
  renderer_.end_turn(e);
  flush();
  if (log_turn_) log_turn_->finish(session_->state());
  log_turn_.reset();
  int status = acp::exit_status(e);
  // A line over --max-line was dropped during the turn (counted in /status): the answer may lack it.
  if (auto dropped = bridge_.status().counters.oversize_lines; dropped > dropped_at_turn_start_) {
    renderer_.note(talk::number_text(static_cast<std::int64_t>(dropped - dropped_at_turn_start_)) +
                   " line(s) from the agent were longer than --max-line and were dropped: the answer may be incomplete");
    if (status == kExitOk) status = kExitNotClean;
  }
  if (status != kExitOk && !(e.cancelled == acp::CancelCause::interrupt)) last_status_ = acp::worse_exit(last_status_, status);
  if (status == kExitUnavailable) stop_script_ = true;
  turn_.reset();
  sync_bridge_state();
  // The terminal stays in the turn's mode until the editor takes it back: a canonical spell in
  // between would turn a Ctrl-D typed ahead into a NUL byte.
}

// --events: the event goes to the stream instead of the screen (true), except the terminal one,
// which end_turn() handles. Notes and errors still reach stderr through the renderer.
bool Talk::event_instead(const acp::TurnEvent& e) {
  using K = acp::TurnEvent::Kind;
  if (e.terminal() || e.kind == K::reply) return false;
  if (e.kind == K::update && e.update.kind == acp::Update::Kind::usage) events_usage_ = e.update.usage;
  emit_event(events_->event(session_->state().session_id, e));
  // A permission question nobody here can answer was answered by policy; one that waits (through
  // a server, routed to us) is still handled as usual.
  return !(e.kind == K::permission && !e.permission.answered);
}

void Talk::emit_event(const std::string& line) {
  if (line.empty()) return;
  flush();  // what the renderer holds goes first
  if (!write_stdout(line)) {
    if (errno == EPIPE) {
      shutdown_now();
      reraise(SIGPIPE);
    }
    last_status_ = acp::worse_exit(last_status_, kExitIoErr);
  }
}

// --- permission questions -------------------------------------------------------------------------

// The questions of our own turn end with it (the session answered them `cancelled`). Those a
// tether server routed to us for another client's turn stay until answered or withdrawn.
void Talk::drop_turn_permissions() {
  bool front_goes = !perms_.empty() && !perms_.front().outside_turn;
  std::erase_if(perms_, [](const acp::PermissionRequest& p) { return !p.outside_turn; });
  if (front_goes) {
    renderer_.permission_choice("cancelled");
    if (!perms_.empty()) show_permission();
  }
}

void Talk::on_permission(acp::PermissionRequest p) {
  if (p.answered) {
    renderer_.permission(p);
    return;
  }
  perms_.push_back(std::move(p));
  if (perms_.size() == 1) show_permission();
}

void Talk::on_permission_withdrawn(std::uint64_t token) {
  for (std::size_t k = 0; k < perms_.size(); ++k) {
    if (perms_[k].token != token) continue;
    perms_.erase(perms_.begin() + static_cast<std::ptrdiff_t>(k));
    if (k == 0) {
      renderer_.permission_choice("withdrawn");
      if (!perms_.empty()) show_permission();
    }
    return;
  }
}

void Talk::show_permission() {
#ifdef TETHER_HAVE_LIBEDIT
  if (editor_) {
    // Asked while the person is at the prompt (another client's turn, through a tether
    // server): the question takes the line, and what was being typed comes back once it is
    // answered. The terminal stays without echo, keys one at a time, as during a turn. Keys
    // that follow typing too closely were meant for the line, not the question (an "a" in a
    // word must not allow a tool call): for a moment they answer nothing.
    if (editor_->editing() && base::Clock::now() - last_key_ < kTypingPause)
      keys_answer_from_ = base::Deadline::after(kTypingPause);
    editor_->suspend();
    // Keys typed before the question is shown must not answer it (and keys typed after must).
    editor_->discard_input();
  }
#endif
  renderer_.set_width(terminal_width(STDERR_FILENO));
  renderer_.permission(perms_.front());
  flush();
}

// Answers the question shown (the front of perms_): the option at `index`, or cancelled.
void Talk::answer_permission(std::optional<std::size_t> index) {
  if (perms_.empty()) return;
  auto& p = perms_.front();
  std::optional<std::string> id;
  std::string name = "cancelled";
  if (index) {
    id = p.options[*index].id;
    name = p.options[*index].name;
  }
  session_->answer_permission(p.token, id);
  if (log_turn_) log_turn_->answered(p.token, name);
  renderer_.permission_choice(name);
  perms_.pop_front();
  if (!perms_.empty()) show_permission();
  flush();
}

void Talk::read_permission_key() {
  char buf[64];
  ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
  if (n < 0 || perms_.empty()) return;
  if (n == 0) {
    // The terminal is gone: nobody here can answer, and talk ends (as at Ctrl-D). Directly, the
    // questions are answered cancelled; through a server, leaving hands them to another client
    // (run() closes the connection before the session could answer them).
    if (!connected_mode())
      while (!perms_.empty()) answer_permission(std::nullopt);
    quit_ = true;
    return;
  }
  if (!keys_answer_from_.expired()) return;  // still the typing the question interrupted
  auto letters = talk::option_letters(perms_.front().options);
  for (ssize_t i = 0; i < n; ++i) {
    if (auto pick = talk::pick_option(buf[i], letters, perms_.front().options.size())) {
      answer_permission(pick);
      return;
    }
  }
  base::write_all(STDERR_FILENO, "\a");
}

// --- signals --------------------------------------------------------------------------------------

// Ctrl-C during a turn: answer a pending question `cancelled`; else cancel the turn; a second
// time abandon it and restart the bridge.
void Talk::interrupt_turn() {
  if (!perms_.empty()) {
    answer_permission(std::nullopt);
    return;
  }
  if (!cancel_requested_) {
    cancel_requested_ = true;
    turn_->cancel(acp::CancelCause::interrupt);
    renderer_.cancelled();
    flush();
    handle_turn_events();
    return;
  }
  turn_.reset();  // abandoned: the session finishes it unseen
  bridge_.recycle("the turn was interrupted twice");
  renderer_.note(connected_mode() ? "abandoned the turn; reconnecting to the tether server (it cancels the turn)"
                                  : "abandoned the turn; restarting the bridge");
  renderer_.finish_lines();
  flush();
  sync_bridge_state();
}

// Reads every pending signal: Ctrl-C by context, SIGWINCH to the editor, the rest end tether.
void Talk::on_signals() {
  while (int sig = read_signal(sig_.get())) {
    switch (sig) {
      case SIGINT:
        if (turn_) {
          interrupt_turn();
        } else if (!perms_.empty()) {
          answer_permission(std::nullopt);  // a question asked between our turns
        } else if (!interactive_) {
          shutdown_now();
          reraise(SIGINT);
        } else {
          interrupt_prompt();
        }
        break;
      case SIGWINCH:
        renderer_.set_width(terminal_width(STDERR_FILENO));  // a tool call's lines fit the new width
#ifdef TETHER_HAVE_LIBEDIT
        if (editor_) editor_->resize();
#endif
        break;
      default:  // SIGTERM, SIGHUP: cancel what is in flight, stop the bridge, die by the signal
        if (turn_) turn_->cancel(acp::CancelCause::interrupt);
        shutdown_now();
        reraise(sig);
    }
  }
}

// Before leaving (normally or by a signal): the editor's terminal state, then the bridge.
void Talk::shutdown_now() {
#ifdef TETHER_HAVE_LIBEDIT
  editor_.reset();
#endif
  restore_terminal();
  turn_.reset();
  // Through a server, the connection closes before the session could answer the questions we
  // hold `cancelled`: the server hands them to another client, as when we are killed. Every way
  // out goes through here (SIGTERM, SIGHUP, a broken stdout, a failed poll).
  if (connected_mode()) bridge_.stop();
  session_.reset();
  bridge_.stop();
}
}  // namespace tether::cli
