// `tether talk` (talk.h): the command's launch (run_talk), and the Talk class's core: its run,
// its output, and what the session delivers between our turns. The class is declared in
// talk_private.h; its other sections live in the talk_*.cpp files named there.
#include "cli/talk.h"

#include <errno.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/launch.h"
#include "cli/talk_private.h"
#include "cli/terminal_text.h"
#include "cli/terminal_view.h"
#include "tether_config.h"

namespace tether::cli {

using namespace talk_detail;

// --- helpers shared by talk's files (talk_private.h) ------------------------------------------

namespace talk_detail {

std::string first_line(const std::string& text) {
  auto nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl) + " …";
}

std::string duration_text(base::Duration d) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  char buf[64];
  if (secs < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(secs));
  else if (secs < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(secs / 60), static_cast<long long>(secs % 60));
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(secs / 3600), static_cast<long long>(secs / 60 % 60));
  return buf;
}

std::string reply_error_text(const nlohmann::json& err) {
  if (!err.is_object()) return "an unreadable error";
  auto data = err.find("data");
  if (data != err.end() && data->is_object() && data->contains("message")) return acp::message_with_tail(*data);
  return acp::message_with_tail(err);
}

}  // namespace talk_detail

// --- the class ----------------------------------------------------------------------------------

Talk::Talk(TalkOptions& o, const LaunchPlan& plan, supervisor::Bridge& bridge, std::unique_ptr<acp::AcpSession> session,
           bool interactive)
    : o_(o),
      bridge_(bridge),
      argv_(plan.bridge.argv),
      server_(plan.bridge.connect_path),
      interactive_(interactive),
      renderer_([&] {
        talk::RenderStyle s = make_style(o, plan.color, interactive);
        // `terminal` content shows what the terminal printed so far (sanitized and cut in
        // tool_view). Asked only while rendering, when session_ is set.
        s.view.terminal_output = [this](std::string_view id) -> std::optional<std::string> {
          return session_ ? session_->terminal_output(id) : std::nullopt;
        };
        return s;
      }()),
      session_(std::move(session)) {
  if (o.events) events_.emplace();
}

Talk::~Talk() { restore_terminal(); }

int Talk::run() {
  sig_ = open_signal_fd();
  wait_.set_line_open([this] { return renderer_.style().shared && renderer_.line_open(STDOUT_FILENO); });
  if (int rc = open_session(); rc != kExitOk) return rc;
  int rc = interactive_ ? run_interactive() : run_script();
  // The session is closed at the agent (it may keep a process per session, and some agents do
  // not exit on stdin EOF while one is open); /session new closed the ones before it.
  turn_.reset();
  if (connected_mode()) {
    // A tether server closes a session when its last client leaves; leaving first (before the
    // session's end could answer the questions we hold `cancelled`) hands them to another client.
    bridge_.stop();
  } else if (session_ && session_->close(base::Deadline::after(kCloseWait))) {
    bridge_.stop(kClosedGrace);
  }
  return rc;
}

talk::RenderStyle Talk::make_style(const TalkOptions& o, bool color, bool interactive) {
  talk::RenderStyle s;
  s.color = color;
  s.sanitize = ::isatty(STDOUT_FILENO) == 1;
  s.sanitize_err = ::isatty(STDERR_FILENO) == 1;
  s.shared = ::isatty(STDOUT_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1;
  s.details = interactive ? !o.common.quiet : (o.common.verbose > 0 || (::isatty(STDERR_FILENO) == 1 && !o.common.quiet));
  s.separate_blocks = !interactive;
  return s;
}

// --- output -------------------------------------------------------------------------------------

void Talk::flush() {
  auto writes = renderer_.take();
  if (!writes.empty()) wait_.clear();
#ifdef TETHER_HAVE_LIBEDIT
  if (editor_ && editor_->editing()) {
    // The person is typing: the text goes above the prompt, the line being typed is kept. Whole
    // lines only: another client's answer streams in pieces, and each piece put above the
    // prompt would become a line of its own. The rest waits for its newline (or kOtherPause).
    for (auto& w : writes) above_ += w.text;
    auto nl = above_.rfind('\n');
    if (nl == std::string::npos) return;
    editor_->print_above(std::string_view(above_).substr(0, nl + 1));
    above_.erase(0, nl + 1);
    return;
  }
#endif
  if (!above_.empty()) writes.insert(writes.begin(), talk::Write{STDOUT_FILENO, std::exchange(above_, {})});
  if (writes.empty()) return;
  for (auto& w : writes) {
    // --events: stdout carries only the stream; what talk itself shows (command output, a turn's
    // closing line) goes to stderr.
    if (w.fd == STDOUT_FILENO && events_) {
      base::write_all(STDERR_FILENO, w.text);
    } else if (w.fd == STDOUT_FILENO) {
      if (!write_stdout(w.text)) {
        if (errno == EPIPE) {
          shutdown_now();
          reraise(SIGPIPE);
        }
        last_status_ = acp::worse_exit(last_status_, kExitIoErr);  // stdout closed at start-up (EBADF), a full disk
      }
    } else {
      base::write_all(STDERR_FILENO, w.text);
    }
  }
}

// --- the session and what it delivers between our turns ------------------------------------------

int Talk::open_session() {
  wait_.start();
  auto failed = session_->open(base::Deadline::never(), sig_.get(), [&] { wait_.tick(); });
  wait_.stop();
  if (!failed) {
    sync_bridge_state();
    seen_loaded_ = session_->state().sessions_loaded;
    return kExitOk;
  }
  if (failed->cancelled == acp::CancelCause::interrupt) {
    shutdown_now();
    reraise(SIGINT);
  }
  renderer_.error(acp::message_with_tail(failed->error));
  flush();
  bridge_.stop(kClosedGrace);  // no session was opened: nothing for the agent to finish
  return acp::exit_status(*failed);
}

void Talk::greet() {
  if (o_.common.quiet) return;
  const auto& st = session_->state();
  std::string agent = terminal_line(st.agent_info.is_object() ? st.agent_info.value("title", st.agent_info.value("name", "")) : "");
  std::string version = terminal_line(st.agent_info.is_object() ? st.agent_info.value("version", "") : "");
  if (connected_mode()) {
    std::string who = agent.empty() ? "" : agent + (version.empty() ? "" : " " + version) + ", ";
    renderer_.dim("tether " + std::string(TETHER_VERSION) + ", connected to tether server at " + server_ + " (" + who +
                  (st.on_main ? "its main session, shared with its other clients" : "a session of our own") +
                  "). /help for help, Ctrl-D to quit.");
    flush();
    return;
  }
  if (agent.empty()) agent = shell_command(argv_);
  renderer_.dim("tether " + std::string(TETHER_VERSION) + ", talking to " + agent +
                (version.empty() ? "" : " " + version) + ". /help for help, Ctrl-D to quit.");
  flush();
}

// What the bridge did while nobody was watching, told once: a death and restart, or giving up.
void Talk::check_bridge() {
  auto st = bridge_.status();
  if (st.last_exit && st.last_exit->generation > reported_exit_gen_) {
    reported_exit_gen_ = st.last_exit->generation;
    auto reason = st.last_exit->reason;
    bool ours = reason == supervisor::ExitReason::stopped || reason == supervisor::ExitReason::restarted;
    // A reconnect that found no server: the line about the lost connection said it already,
    // and giving up will say it again with the count.
    bool retrying = reason == supervisor::ExitReason::spawn_failed && st.last_exit->connection;
    if (!ours && !retrying && st.state != supervisor::State::failed) {
      renderer_.note(supervisor::describe(*st.last_exit) + (connected_mode() ? "; reconnecting" : "; it is being restarted"));
      trouble_shown_ = true;
    }
  }
  if (st.state == supervisor::State::failed) {
    if (!failed_reported_) {
      failed_reported_ = true;
      renderer_.error(give_up_text(st));
    }
  } else {
    failed_reported_ = false;
  }
  flush();
}

std::string Talk::give_up_text(const supervisor::BridgeStatus& st) const {
  if (!st.last_exit) return "the bridge is not running; /restart to try again";
  if (st.last_exit->reason == supervisor::ExitReason::spawn_failed && !st.last_exit->connection)
    return supervisor::describe(*st.last_exit) + "\n/restart tries again.";
  return supervisor::give_up_message(st.restarts_in_window, base::seconds(o_.common.restart_window), *st.last_exit);
}

// After a turn, deaths it already explained are not told again.
void Talk::sync_bridge_state() {
  auto st = bridge_.status();
  if (st.last_exit) reported_exit_gen_ = std::max(reported_exit_gen_, st.last_exit->generation);
  failed_reported_ = st.state == supervisor::State::failed;
}

void Talk::show_notice(const acp::TurnEvent& e) {
  if (e.server_trouble) server_trouble_shown_ = true;
  std::size_t loaded = session_->state().sessions_loaded;
  bool restored = loaded > seen_loaded_;
  seen_loaded_ = loaded;
  // The restart was already told in one line; that the session came back needs no second one.
  bool folded = restored && trouble_shown_;
  trouble_shown_ = false;
  if (!folded) renderer_.note(e.text);
}

// A line the agent wrote on its stdout that is not JSON: agents print sign-in URLs there.
void Talk::show_output(const std::string& text) {
  renderer_.note("the agent wrote on stdout: " + terminal_line(text));
}

void Talk::poll_session() {
  on_session_events(session_->poll());
  check_bridge();
}

// What the session delivers between our turns: notices, replies to our requests, and through a
// tether server another client's turn and the permission requests the server routes to us.
void Talk::on_session_events(std::vector<acp::TurnEvent> events) {
  using K = acp::TurnEvent::Kind;
  for (auto& e : events) {
    switch (e.kind) {
      case K::notice: show_notice(e); break;
      case K::update:
        // A script's stdout carries its own answers only.
        if (interactive_) show_other(e.update);
        break;
      case K::permission: on_permission(std::move(e.permission)); break;
      case K::permission_withdrawn: on_permission_withdrawn(e.permission.token); break;
      case K::reply:
        if (!on_setting_reply(e)) replies_.push_back(std::move(e));
        break;
      case K::output: show_output(e.text); break;
      case K::retry:
      case K::completed:
      case K::failed:
        break;  // a turn's events, never delivered here
    }
  }
  flush();
}

// Another client's turn in the shared session: its prompt (user chunks, sent first), then the
// answer, drawn as our own turns are.
void Talk::show_other(const acp::Update& u) {
  other_pause_ = base::Deadline::after(kOtherPause);
  if (turn_) other_in_turn_ = true;
  if (u.kind == acp::Update::Kind::user_message) {
    std::string text = renderer_.style().sanitize ? talk::sanitize_text(u.text) : u.text;
    for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 3))
      text.replace(at, 1, "\n  ");
    if (!other_prompt_) {
      renderer_.finish_lines();
      renderer_.begin_section();  // not begin_turn(): a cancel of our waiting turn stays in force
      other_prompt_ = true;
      renderer_.dim("(other client) > " + text);
    } else {
      renderer_.dim("  " + text);
    }
    return;
  }
  other_prompt_ = false;
  renderer_.update(u, talk::Renderer::Whose::other_client);
}

// --- the command ----------------------------------------------------------------------------------

int run_talk(TalkOptions& o) {
  const bool interactive = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  if (o.events && interactive) {
    error_line("--events is for scripts (stdin or stdout not a terminal): a person at the terminal reads the answers");
    return kExitUsage;
  }
  auto planned = plan_launch(o.common, {.command = "talk", .asker = Asker::person_at_terminal, .at_terminal = interactive});
  if (auto* err = std::get_if<SetupError>(&planned)) {
    error_line(err->message);
    return err->exit_code;
  }
  LaunchPlan& plan = std::get<LaunchPlan>(planned);
  auto continued = plan_continue(o.continued, o.common);
  if (auto* err = std::get_if<SetupError>(&continued)) {
    error_line(err->message);
    return err->exit_code;
  }
  o.continuing = std::get<ContinuePlan>(std::move(continued));
  plan.client.session_id = o.continuing.session_id;
  start_turn_log(o.common);  // the log opens on its thread while the bridge starts
  // Through a server, talk at a terminal joins its main session: the conversation other clients
  // see too. A script gets a session of its own: joined, it would become the main session's
  // active client and answer a person's permission questions by its policy. A session to
  // continue is that session instead.
  plan.client.attach_main = plan.client.via_server && interactive && o.continuing.session_id.empty() &&
                           o.continuing.bind_name.empty();  // -s NAME (first use) binds a session of its own
  // At a terminal, the person picks the sign-in method when the agent asks for one and neither
  // --auth nor an env_var method settles it: never a browser login nobody chose.
  if (interactive) plan.client.ask_auth = ask_auth_method;
  // The agent's terminals show through talk's renderer, once there is one (-q: not at all).
  auto terminal_lines = std::make_shared<TerminalView::Sink>();
  if (!o.common.quiet) plan.client.on_terminal = terminal_view(terminal_lines);

  Launched launched = launch(plan, open_signal_fd().get());
  // Ctrl-C while starting (or waiting for a server): the bridge is stopped.
  if (launched.started.caught) reraise(launched.started.caught);
  if (launched.started.failed) {
    error_line(supervisor::describe(*launched.started.failed));
    return kExitUnavailable;
  }
  supervisor::Bridge& bridge = *launched.started.bridge;
  int status;
  {
    Talk talk(o, plan, bridge, std::move(launched.session), interactive);
    *terminal_lines = [&talk](std::string_view line) { talk.show_terminal(line); };
    status = talk.run();
    *terminal_lines = nullptr;
  }
  bridge.stop();
  return status;
}

std::function<int()> setup_talk(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<TalkOptions>();
  auto* sub = app.add_subcommand("talk", "Talk to the agent in an interactive REPL (or run a script of prompts from stdin)");
  sub->footer(
      "On a terminal: type a prompt and press Enter; the answer streams below. Ctrl-C cancels the\n"
      "answer (twice: abandons it and restarts the bridge) or clears the line; Ctrl-D or /exit quits.\n"
      "/help lists the commands (/status, /restart, /stderr, /multi, /edit, /session new, ...).\n"
      "History: $TETHER_HISTORY, else $XDG_STATE_HOME/tether/history, else\n"
      "~/.local/state/tether/history; lines that start with a space are not saved.\n"
      "With stdin not a terminal, each line is one prompt (slash commands work) and tether exits at\n"
      "the end of input: 0 when every answer was clean, else the status of the worst failure\n"
      "(1 unclean answer, 65 bad command, 69 bridge unavailable, 75 timeout, 76 protocol error).\n"
      "Permission requests are asked on a terminal (--permission ask) and denied otherwise.\n"
      "--connect[=NAME|PATH] talks through a running `tether serve` instead of starting a bridge: in\n"
      "its main session, shared with its other clients (their turns show between yours); /restart then\n"
      "restarts the server's bridge.\n"
      "-c continues the last conversation with this agent in this directory, --session ID a given one,\n"
      "-s NAME a named one (created on first use); /sessions lists them, /load ID switches.");
  sub->add_flag("--no-history", o->no_history, "Do not read or write the history file");
  sub->add_flag("--events", o->events,
                "Without a terminal: print one JSON line per turn event on stdout instead of the answers (see EVENTS "
                "in the man page)");
  add_common_options(*sub, o->common);
  add_session_options(*sub, o->common);
  add_connect_option(*sub, o->common);
  add_log_options(*sub, o->common);
  add_continue_options(*sub, o->continued);
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_talk(*o);
  };
}

}  // namespace tether::cli
