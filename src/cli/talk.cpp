#include "cli/talk.h"

#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <deque>
#include <memory>
#include <optional>

#include "base/unique_fd.h"
#include "acp/session.h"
#include "cli/render.h"
#include "cli/wait_notice.h"
#include "cli/talk_commands.h"
#include "cli/talk_history.h"
#include "cli/terminal_text.h"
#include "serve/protocol.h"
#include "tether_config.h"

#ifdef TETHER_HAVE_LIBEDIT
#include "cli/line_editor.h"
#endif

extern char** environ;

namespace tether::cli {
namespace {

using talk::LineKind;
using talk::Renderer;

constexpr const char* kPrompt = "tether> ";
constexpr const char* kContinuation = "   ...> ";
constexpr auto kRestartWait = std::chrono::seconds(30);
// How long a tether server gets to answer _tether/status (for /status and /stderr).
constexpr auto kServerStatusWait = std::chrono::seconds(5);
// Another client's answer streams above the prompt in whole lines; a line it leaves unfinished for
// this long is shown as it is.
constexpr auto kOtherPause = std::chrono::milliseconds(250);

// The first line of a prompt, for a one-line reminder ("…" when there is more).
std::string first_line(const std::string& text) {
  auto nl = text.find('\n');
  return nl == std::string::npos ? text : text.substr(0, nl) + " …";
}
// A question that interrupts typing takes no answer from keys typed within this pause.
constexpr auto kTypingPause = std::chrono::milliseconds(500);

bool color_wanted(const std::string& option, int fd) {
  if (option == "always") return true;
  if (option == "never") return false;
  const char* no = ::getenv("NO_COLOR");
  if (no && no[0]) return false;
  const char* term = ::getenv("TERM");
  if (term && std::string_view(term) == "dumb") return false;
  return ::isatty(fd) == 1;
}

std::string shell_quote(const std::vector<std::string>& argv) {
  std::string s;
  for (const auto& a : argv) {
    if (!s.empty()) s += ' ';
    bool plain = !a.empty() && a.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == std::string::npos;
    if (plain) {
      s += a;
      continue;
    }
    s += '\'';
    for (char c : a) s += c == '\'' ? std::string("'\\''") : std::string(1, c);
    s += '\'';
  }
  return s;
}

std::string duration_text(base::Duration d) {
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  char buf[64];
  if (secs < 60) std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(secs));
  else if (secs < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(secs / 60), static_cast<long long>(secs % 60));
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(secs / 3600), static_cast<long long>(secs / 60 % 60));
  return buf;
}

// Exit status precedence for script mode: an unavailable bridge outranks a protocol error, a
// timeout, an internal error, bad input and an unclean answer.
int worse(int a, int b) {
  auto rank = [](int c) {
    switch (c) {
      case kExitOk: return 0;
      case kExitNotClean: return 1;
      case kExitDataErr: return 2;
      case kExitSoftware: return 3;
      case kExitTimeout: return 4;
      case kExitProtocol: return 5;
      case kExitUnavailable: return 6;
      default: return 3;
    }
  };
  return rank(b) > rank(a) ? b : a;
}

// libedit decodes keys by the locale's character set: a C locale would mangle UTF-8 input, so
// coerce it to C.UTF-8 the way Python does (PEP 538).
void use_utf8_ctype() {
  ::setlocale(LC_CTYPE, "");
  const char* cs = ::nl_langinfo(CODESET);
  if (!cs || std::string_view(cs) != "UTF-8") ::setlocale(LC_CTYPE, "C.UTF-8");
}

// The text of a failed reply: tether's error object when the server sent one, else the JSON-RPC
// error's message.
std::string reply_error_text(const nlohmann::json& err) {
  if (!err.is_object()) return "an unreadable error";
  auto data = err.find("data");
  if (data != err.end() && data->is_object() && data->contains("message")) return acp::message_with_tail(*data);
  return acp::message_with_tail(err);
}

class Talk {
 public:
  // `server`: the socket of the tether server the bridge connects to (--connect), else empty.
  Talk(TalkOptions& o, supervisor::Bridge& bridge, acp::ClientOptions copts, std::vector<std::string> argv,
       std::string server, bool interactive)
      : o_(o),
        bridge_(bridge),
        copts_(std::move(copts)),
        argv_(std::move(argv)),
        server_(std::move(server)),
        interactive_(interactive),
        renderer_(make_style(o, interactive)) {}

  ~Talk() { restore_terminal(); }

  int run() {
    sig_ = open_signal_fd();
    wait_.set_line_open([this] { return renderer_.style().shared && renderer_.line_open(STDOUT_FILENO); });
    if (int rc = open_session(); rc != kExitOk) return rc;
    int rc = interactive_ ? run_interactive() : run_script();
    // The session is closed at the agent (it may keep a process per session, and some agents do
    // not exit on stdin EOF while one is open); /session new closed the ones before it.
    turn_.reset();
    if (session_ && session_->close(base::Deadline::after(kCloseWait))) bridge_.stop(kClosedGrace);
    return rc;
  }

 private:
  static talk::RenderStyle make_style(const TalkOptions& o, bool interactive) {
    talk::RenderStyle s;
    s.color = color_wanted(o.common.color, STDERR_FILENO);
    s.sanitize = ::isatty(STDOUT_FILENO) == 1;
    s.sanitize_err = ::isatty(STDERR_FILENO) == 1;
    s.shared = ::isatty(STDOUT_FILENO) == 1 && ::isatty(STDERR_FILENO) == 1;
    s.details = interactive ? !o.common.quiet : (o.common.verbose > 0 || (::isatty(STDERR_FILENO) == 1 && !o.common.quiet));
    return s;
  }

  // --- output ---------------------------------------------------------------------------------

  void flush() {
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
      if (w.fd == STDOUT_FILENO) {
        if (!write_stdout(w.text)) {
          if (errno == EPIPE) {
            shutdown_now();
            reraise(SIGPIPE);
          }
          last_status_ = worse(last_status_, kExitIoErr);  // stdout closed at start-up (EBADF), a full disk
        }
      } else {
        base::write_all(STDERR_FILENO, w.text);
      }
    }
  }

  // --- session --------------------------------------------------------------------------------

  int open_session() {
    session_ = std::make_unique<acp::AcpSession>(bridge_, copts_);
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

  bool connected_mode() const { return !server_.empty(); }

  void greet() {
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
    if (agent.empty()) agent = shell_quote(argv_);
    renderer_.dim("tether " + std::string(TETHER_VERSION) + ", talking to " + agent +
                  (version.empty() ? "" : " " + version) + ". /help for help, Ctrl-D to quit.");
    flush();
  }

  // What the bridge did while nobody was watching, told once: a death and restart, or giving up.
  void check_bridge() {
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

  std::string give_up_text(const supervisor::BridgeStatus& st) const {
    if (!st.last_exit) return "the bridge is not running; /restart to try again";
    if (st.last_exit->reason == supervisor::ExitReason::spawn_failed && !st.last_exit->connection)
      return supervisor::describe(*st.last_exit) + "\n/restart tries again.";
    return supervisor::give_up_message(st.restarts_in_window, base::seconds(o_.common.restart_window), *st.last_exit);
  }

  // After a turn, deaths it already explained are not told again.
  void sync_bridge_state() {
    auto st = bridge_.status();
    if (st.last_exit) reported_exit_gen_ = std::max(reported_exit_gen_, st.last_exit->generation);
    failed_reported_ = st.state == supervisor::State::failed;
  }

  void show_notice(const acp::TurnEvent& e) {
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
  void show_output(const std::string& text) {
    renderer_.note("the agent wrote on stdout: " + terminal_line(text));
  }

  // /mode, /model, /set: with an argument, the change (its answer comes later, see
  // on_setting_reply); without, what the agent offers.
  void change_setting(talk::LineKind kind, const std::string& arg) {
    const auto& st = session_->state();
    if (arg.empty()) {
      std::vector<std::string> lines = acp::describe_settings(st.modes, kind == talk::LineKind::set ? st.config_options : nlohmann::json());
      if (kind == talk::LineKind::model) {
        lines.clear();
        if (const auto* opt = acp::model_option(st.config_options)) lines = acp::describe_settings(nullptr, nlohmann::json::array({*opt}));
      } else if (kind == talk::LineKind::mode && lines.empty()) {
        for (const auto& o : st.config_options.is_array() ? st.config_options : nlohmann::json::array())
          if (o.value("category", "") == "mode") lines = acp::describe_settings(nullptr, nlohmann::json::array({o}));
      }
      if (lines.empty()) {
        renderer_.dim(kind == talk::LineKind::mode    ? "(the agent offers no modes)"
                      : kind == talk::LineKind::model ? "(the agent offers no model choice)"
                                                      : "(the agent offers no session options)");
      } else {
        std::string text;
        for (auto& l : lines) text += terminal_line(l) + "\n";
        renderer_.info(text);
      }
      return;
    }
    acp::SessionSettings change;
    if (kind == talk::LineKind::mode) change.mode = arg;
    else if (kind == talk::LineKind::model) change.model = arg;
    else change.set.emplace_back(arg.substr(0, arg.find('=')), arg.substr(arg.find('=') + 1));
    auto r = session_->change_settings(change);
    if (auto* err = std::get_if<nlohmann::json>(&r)) {
      renderer_.error(err->value("message", "cannot change that"));
      if (!interactive_) last_status_ = worse(last_status_, kExitUsage);
      return;
    }
    std::uint64_t token = std::get<std::uint64_t>(r);
    if (token == 0) {
      renderer_.dim("(already so)");
      return;
    }
    setting_token_ = token;
    setting_what_ = kind == talk::LineKind::mode ? "mode " + arg : kind == talk::LineKind::model ? "model " + arg : arg;
    // A script waits for the answer, so that the next prompt runs with the new setting.
    if (!interactive_) {
      auto deadline = base::Deadline::after(kRestartWait);
      while (setting_token_ != 0 && !deadline.expired()) {
        pollfd p = {session_->fd(), POLLIN, 0};
        ::poll(&p, 1, base::Deadline::earliest(deadline, session_->next_deadline()).poll_timeout_ms());
        on_session_events(session_->poll());
      }
    }
  }

  // The answer to a /mode, /model or /set: told, and consumed (true).
  bool on_setting_reply(const acp::TurnEvent& e) {
    if (setting_token_ == 0 || e.request_id != setting_token_) return false;
    setting_token_ = 0;
    std::string what = terminal_line(setting_what_);
    if (e.error.is_null()) {
      renderer_.note(what + ": set");
    } else {
      renderer_.error("the agent refused " + what + ": " +
                      (e.error.contains("code") && e.error["code"].is_number() ? acp::rpc_error_text(e.error)
                                                                               : e.error.value("message", "error")));
      if (!interactive_) last_status_ = worse(last_status_, kExitNotClean);
    }
    return true;
  }

  void poll_session() {
    on_session_events(session_->poll());
    check_bridge();
  }

  // What the session delivers between our turns: notices, replies to our requests, and through a
  // tether server another client's turn and the permission requests the server routes to us.
  void on_session_events(std::vector<acp::TurnEvent> events) {
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
  void show_other(const acp::Update& u) {
    other_pause_ = base::Deadline::after(kOtherPause);
    if (turn_) other_in_turn_ = true;
    if (u.kind == acp::Update::Kind::user_message) {
      std::string text = renderer_.style().sanitize ? talk::sanitize_text(u.text) : u.text;
      for (std::size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at + 3))
        text.replace(at, 1, "\n  ");
      if (!other_prompt_) {
        renderer_.finish_lines();
        renderer_.begin_turn();
        other_prompt_ = true;
        renderer_.dim("(other client) > " + text);
      } else {
        renderer_.dim("  " + text);
      }
      return;
    }
    other_prompt_ = false;
    renderer_.update(u);
  }

  // --- turns ----------------------------------------------------------------------------------

  bool bridge_down() {
    if (bridge_.status().state != supervisor::State::failed) return false;
    renderer_.error(connected_mode()
                        ? "not connected to the tether server (tether gave up reconnecting): /restart tries again"
                        : "the bridge is not running (tether gave up restarting it): /restart tries again, /stderr shows its last output");
    flush();
    return true;
  }

  void start_turn(std::string text) {
    if (bridge_down()) {
      last_status_ = worse(last_status_, kExitUnavailable);
      return;
    }
    // Another client's unfinished line ends before our turn starts.
    renderer_.finish_lines();
    other_prompt_ = false;
    other_pause_ = base::Deadline::never();
    renderer_.begin_turn();
    trouble_shown_ = false;
    cancel_requested_ = false;
    drop_turn_permissions();
    base::Duration timeout = o_.common.timeout > 0 ? base::seconds(o_.common.timeout) : base::Duration::zero();
    turn_text_ = text;
    dropped_at_turn_start_ = bridge_.status().counters.oversize_lines;
    turn_.emplace(session_->prompt(std::move(text), timeout));
    wait_.start();
    if (interactive_) turn_terminal_mode();
    handle_turn_events();
  }

  void handle_turn_events() {
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
        renderer_.begin_turn();
        if (interactive_) renderer_.dim("(your turn) > " + first_line(turn_text_));
      }
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

  void end_turn(const acp::TurnEvent& e) {
    wait_.stop();
    drop_turn_permissions();
    renderer_.end_turn(e);
    flush();
    int status = acp::exit_status(e);
    // A line over --max-line was dropped during the turn (counted in /status): the answer may lack it.
    if (auto dropped = bridge_.status().counters.oversize_lines; dropped > dropped_at_turn_start_) {
      renderer_.note(std::to_string(dropped - dropped_at_turn_start_) +
                     " line(s) from the agent were longer than --max-line and were dropped: the answer may be incomplete");
      if (status == kExitOk) status = kExitNotClean;
    }
    if (status != kExitOk && !(e.cancelled == acp::CancelCause::interrupt)) last_status_ = worse(last_status_, status);
    if (status == kExitUnavailable) stop_script_ = true;
    turn_.reset();
    sync_bridge_state();
    // The terminal stays in the turn's mode until the editor takes it back: a canonical spell in
    // between would turn a Ctrl-D typed ahead into a NUL byte.
  }

  // The questions of our own turn end with it (the session answered them `cancelled`). Those a
  // tether server routed to us for another client's turn stay until answered or withdrawn.
  void drop_turn_permissions() {
    bool front_goes = !perms_.empty() && !perms_.front().outside_turn;
    std::erase_if(perms_, [](const acp::PermissionRequest& p) { return !p.outside_turn; });
    if (front_goes) {
      renderer_.permission_choice("cancelled");
      if (!perms_.empty()) show_permission();
    }
  }

  void on_permission(acp::PermissionRequest p) {
    if (p.answered) {
      renderer_.permission(p);
      return;
    }
    perms_.push_back(std::move(p));
    if (perms_.size() == 1) show_permission();
  }

  void on_permission_withdrawn(std::uint64_t token) {
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

  void show_permission() {
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
    renderer_.permission(perms_.front());
    flush();
  }

  // Answers the question shown (the front of perms_): the option at `index`, or cancelled.
  void answer_permission(std::optional<std::size_t> index) {
    if (perms_.empty()) return;
    auto& p = perms_.front();
    std::optional<std::string> id;
    std::string name = "cancelled";
    if (index) {
      id = p.options[*index].id;
      name = p.options[*index].name;
    }
    session_->answer_permission(p.token, id);
    renderer_.permission_choice(name);
    perms_.pop_front();
    if (!perms_.empty()) show_permission();
    flush();
  }

  void read_permission_key() {
    char buf[64];
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 || perms_.empty()) return;
    if (n == 0) {
      // The terminal is gone: nobody can answer. Cancelled, and talk ends (as at Ctrl-D).
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

  // Ctrl-C during a turn: answer a pending question `cancelled`; else cancel the turn; a second
  // time abandon it and restart the bridge.
  void interrupt_turn() {
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

  // --- terminal modes -------------------------------------------------------------------------

  void save_terminal() {
    if (::tcgetattr(STDIN_FILENO, &orig_termios_) == 0) have_termios_ = true;
  }

  // While a turn streams: keys are not echoed (they would tear the answer) and not read (they
  // wait as type-ahead), but Ctrl-C still raises SIGINT and a permission key needs no Enter.
  void turn_terminal_mode() {
    if (!have_termios_) return;
    termios t = orig_termios_;
    t.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    t.c_lflag |= ISIG;
    t.c_cc[VMIN] = 1;
    t.c_cc[VTIME] = 0;
    ::tcsetattr(STDIN_FILENO, TCSANOW, &t);
  }

  void restore_terminal() {
    if (have_termios_) ::tcsetattr(STDIN_FILENO, TCSANOW, &orig_termios_);
  }

  // Before leaving (normally or by a signal): the editor's terminal state, then the bridge.
  void shutdown_now() {
#ifdef TETHER_HAVE_LIBEDIT
    editor_.reset();
#endif
    restore_terminal();
    turn_.reset();
    session_.reset();
    bridge_.stop();
  }

  // --- signals --------------------------------------------------------------------------------

  // Reads every pending signal: Ctrl-C by context, SIGWINCH to the editor, the rest end tether.
  void on_signals() {
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
#ifdef TETHER_HAVE_LIBEDIT
          if (editor_) editor_->resize();
#endif
          break;
        default:  // SIGTERM, SIGHUP: cancel what is in flight, stop the bridge, die by the signal
          if (turn_) turn_->cancel(acp::CancelCause::interrupt);
          // Through a server, the connection closes before the session could answer the questions
          // we hold `cancelled`: the server hands them to another client, as when we are killed.
          if (connected_mode()) bridge_.stop();
          shutdown_now();
          reraise(sig);
      }
    }
  }

  void interrupt_prompt() {
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

  // --- lines ----------------------------------------------------------------------------------

  void record(const std::string& line) {
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
  static constexpr auto kCommandsWait = std::chrono::milliseconds(1000);
  bool await_agent_commands() {
    auto deadline = base::Deadline::after(kCommandsWait);
    while (!session_->state().commands_announced && !deadline.expired()) {
      pollfd p{session_->fd(), POLLIN, 0};
      ::poll(&p, 1, deadline.poll_timeout_ms());
      on_session_events(session_->poll());
    }
    return session_->state().commands_announced;
  }

  void on_line(const std::string& text, bool multiline) {
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
          return;
        }
        start_turn(std::move(all));
        return;
      }
      multi_lines_.push_back(text);
      return;
    }
    if (multiline) {
      start_turn(text);
      return;
    }
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
      case LineKind::unknown:
        renderer_.error("unknown command /" + parsed.text + ": /help lists the commands; //" + parsed.text +
                        " sends the line to the agent as it is");
        if (!interactive_) last_status_ = worse(last_status_, kExitDataErr);
        break;
      case LineKind::usage_error:
        renderer_.error(parsed.text);
        if (!interactive_) last_status_ = worse(last_status_, kExitDataErr);
        break;
    }
    flush();
  }

  void on_eof() {
    if (multi_ && !multi_lines_.empty()) {
      // End of input ends the block, as a terminator would.
      on_line(multi_term_, false);
      return;
    }
    quit_ = true;
  }

  // --- a tether server's own requests (connect mode) ----------------------------------------------

  // Sends a request to the tether server and waits for its answer, showing what comes meanwhile.
  // The result, or nothing with `why` set (its error, no answer within `limit`, or Ctrl-C).
  std::optional<nlohmann::json> ask_server(std::string_view method, base::Duration limit, std::string& why) {
    std::uint64_t id = session_->request(method, nlohmann::json::object());
    auto deadline = base::Deadline::after(limit);
    for (;;) {
      for (auto& r : replies_) {
        if (r.request_id != id) continue;
        acp::TurnEvent e = std::move(r);
        replies_.clear();
        if (e.error.is_null()) return std::move(e.result);
        why = reply_error_text(e.error);
        return std::nullopt;
      }
      replies_.clear();  // answers to requests given up on
      if (deadline.expired()) {
        why = "no answer within " + acp::duration_text(limit);
        return std::nullopt;
      }
      pollfd p[2] = {{sig_.get(), POLLIN, 0}, {session_->fd(), POLLIN, 0}};
      ::poll(p, 2, base::Deadline::earliest(deadline, session_->next_deadline()).poll_timeout_ms());
      if (p[0].revents & POLLIN) {
        int sig = read_signal(sig_.get());
        if (sig == SIGINT) {
          why = "stopped waiting (Ctrl-C)";
          return std::nullopt;
        }
        if (sig == SIGTERM || sig == SIGHUP) {
          shutdown_now();
          reraise(sig);
        }
      }
      on_session_events(session_->poll());
    }
  }

  // /restart through a server: its bridge gets a fresh process and a fresh restart budget; every
  // client hears of it (_tether/bridge_restarted).
  void restart_server_bridge() {
    renderer_.dim("(asking the tether server to restart its bridge...)");
    flush();
    server_trouble_shown_ = false;
    std::string why;
    auto r = ask_server(serve::protocol::kRestart, kRestartWait, why);
    if (!r) {
      renderer_.error("the tether server did not restart its bridge: " + why);
    } else if (!server_trouble_shown_) {
      std::string gen = r->is_object() && r->contains("generation") ? " (generation " + r->at("generation").dump() + ")" : "";
      renderer_.note("the tether server restarted its bridge" + gen);
    }
    flush();
  }

  // /stderr through a server: the bridge's stderr is the server's; what it kept of the last exit.
  void server_stderr() {
    std::string why;
    auto r = ask_server(serve::protocol::kStatus, kServerStatusWait, why);
    if (!r) {
      renderer_.error("the tether server did not answer _tether/status: " + why);
      return;
    }
    std::string tail;
    if (r->is_object() && r->contains("lastExit") && (*r)["lastExit"].is_object())
      tail = (*r)["lastExit"].value("stderrTail", "");
    if (tail.empty()) renderer_.dim("(the bridge runs in the tether server, whose own stderr or log has its output)");
    else renderer_.info(renderer_.style().sanitize ? talk::sanitize_text(tail) : tail);
  }

  // The server's side of /status, from _tether/status.
  std::string server_status_lines(const supervisor::BridgeStatus& st) {
    using nlohmann::json;
    std::string s = "server:    " + server_;
    std::string why;
    auto got = ask_server(serve::protocol::kStatus, kServerStatusWait, why);
    const json r = got && got->is_object() ? *got : json::object();
    auto number = [&](const char* key) { return r.contains(key) && r[key].is_number() ? r[key].dump() : std::string(); };
    if (auto pid = number("serverPid"); !pid.empty()) s += ", pid " + pid;
    if (auto clients = number("clients"); !clients.empty()) s += ", " + clients + " client" + (clients == "1" ? "" : "s");
    s += "\n";
    s += "link:      " + std::string(supervisor::to_string(st.state)) + ", connection " + std::to_string(st.generation) +
         (st.restarts_total ? " (reconnected " + std::to_string(st.restarts_total) + "x)" : "");
    if (st.state == supervisor::State::ready) s += ", up " + duration_text(st.uptime);
    s += "\n";
    if (st.last_exit && st.last_exit->reason != supervisor::ExitReason::stopped)
      s += "last drop: " + supervisor::describe(*st.last_exit) + "\n";
    if (!got) return s + "bridge:    (the server did not answer _tether/status: " + why + ")\n";
    if (r.contains("bridge") && r["bridge"].is_array()) {
      std::vector<std::string> words;
      for (const auto& w : r["bridge"])
        if (w.is_string()) words.push_back(w.get<std::string>());
      s += "bridge:    " + shell_quote(words) + "\n";
    }
    s += "state:     " + r.value("state", std::string("?"));
    if (auto pid = number("pid"); !pid.empty() && pid != "-1") s += ", pid " + pid;
    if (auto gen = number("generation"); !gen.empty()) s += ", generation " + gen;
    if (r.value("state", "") == "ready" && r.contains("uptimeMs") && r["uptimeMs"].is_number_integer())
      s += ", up " + duration_text(std::chrono::milliseconds(r["uptimeMs"].get<long long>()));
    if (auto link = r.value("link", std::string()); !link.empty() && link != "ready") s += ", ACP link " + link;
    s += "\n";
    s += "restarts:  " + (number("restartsInWindow").empty() ? "?" : number("restartsInWindow")) + " in the server's window, " +
         (number("restartsTotal").empty() ? "?" : number("restartsTotal")) + " in all\n";
    if (r.contains("lastExit") && r["lastExit"].is_object())
      s += "last exit: " + r["lastExit"].value("message", std::string("?")) + "\n";
    return s;
  }

  std::string status_text() {
    auto st = bridge_.status();
    const auto& ss = session_->state();
    std::string s;
    if (connected_mode()) {
      s += server_status_lines(st);
    } else {
      s += "bridge:    " + shell_quote(argv_) + "\n";
      s += "state:     " + std::string(supervisor::to_string(st.state));
      if (st.pid > 0) s += ", pid " + std::to_string(st.pid);
      s += ", generation " + std::to_string(st.generation);
      if (st.state == supervisor::State::ready) s += ", up " + duration_text(st.uptime);
      s += "\n";
      char window[32];
      std::snprintf(window, sizeof window, "%g s", o_.common.restart_window);
      s += "restarts:  " + std::to_string(st.restarts_in_window) + " in the last " + window + " (" +
           std::to_string(o_.common.max_restarts) + " allowed), " + std::to_string(st.restarts_total) + " in all\n";
      if (st.last_exit) s += "last exit: " + supervisor::describe(*st.last_exit) + "\n";
    }
    s += "session:   " + (ss.session_id.empty() ? std::string("(none)") : terminal_line(ss.session_id));
    if (connected_mode() && !ss.session_id.empty())
      s += ss.on_main ? " (the server's main session)" : " (a session of our own)";
    if (ss.sessions_loaded) s += ", restored " + std::to_string(ss.sessions_loaded) + "x by session/load";
    if (ss.sessions_created > 1) s += ", " + std::to_string(ss.sessions_created) + " sessions created";
    s += "\n";
    std::string name, version;
    if (ss.agent_info.is_object()) {
      name = ss.agent_info.value("name", "");
      version = ss.agent_info.value("version", "");
    }
    s += "agent:     " + (name.empty() ? std::string("(unnamed)") : terminal_line(name)) + (version.empty() ? "" : " " + terminal_line(version)) +
         ", ACP v" + std::to_string(ss.protocol_version) + (ss.load_session ? ", can load sessions" : "") + "\n";
    for (const auto& l : acp::describe_settings(ss.modes, ss.config_options))
      s += "setting:   " + terminal_line(l) + "\n";
    if (ss.modes.is_null() && !ss.mode_id.empty()) s += "mode:      " + terminal_line(ss.mode_id) + "\n";
    if (!ss.auth_method.empty()) s += "auth:      " + terminal_line(ss.auth_method) + "\n";
    if (ss.sessions_closed) s += "closed:    " + std::to_string(ss.sessions_closed) + " session(s) closed at the agent\n";
    if (ss.usage) s += "context:   " + std::to_string(ss.usage->used) + " of " + std::to_string(ss.usage->size) + " tokens\n";
    const auto& c = st.counters;
    s += "anomalies: " + std::to_string(c.invalid_json) + " invalid JSON, " + std::to_string(c.not_jsonrpc) +
         " not JSON-RPC, " + std::to_string(c.oversize_lines) + " oversize, " + std::to_string(c.unknown_responses) +
         " unknown responses, " + std::to_string(ss.ignored_updates) + " ignored updates, " +
         std::to_string(ss.late_updates) + " late updates\n";
    s += "traffic:   " + std::to_string(c.frames_in) + " frames in, " + std::to_string(c.frames_out) + " out, " +
         std::to_string(c.stderr_bytes) + " stderr bytes\n";
    return s;
  }

  // /restart: a fresh process with a fresh budget, then the session back (loaded, or new).
  // Connect mode: a reconnect, with a fresh budget of reconnects.
  void restart() {
    auto before = bridge_.status().generation;
    renderer_.dim(connected_mode() ? "(reconnecting to the tether server...)" : "(restarting the bridge...)");
    flush();
    bridge_.restart();
    auto deadline = base::Deadline::after(kRestartWait);
    for (;;) {
      auto st = bridge_.status();
      if (st.generation > before &&
          (st.state == supervisor::State::ready || st.state == supervisor::State::failed)) break;
      if (deadline.expired()) {
        renderer_.error(connected_mode() ? "not reconnected to the tether server within 30 s; /status shows where it is"
                                         : "the bridge has not come back within 30 s; /status shows where it is");
        flush();
        return;
      }
      pollfd p[2] = {{sig_.get(), POLLIN, 0}, {session_->fd(), POLLIN, 0}};
      ::poll(p, 2, 50);  // status changes also wake the event fd; 50 ms bounds a missed one
      if (p[0].revents & POLLIN) {
        int sig = read_signal(sig_.get());
        if (sig == SIGINT) {
          renderer_.dim(connected_mode() ? "(stopped waiting; tether keeps reconnecting in the background)"
                                         : "(stopped waiting; the bridge keeps restarting in the background)");
          flush();
          return;
        }
        if (sig == SIGTERM || sig == SIGHUP) {
          shutdown_now();
          reraise(sig);
        }
      }
      on_session_events(session_->poll());
    }
    auto st = bridge_.status();
    if (st.state == supervisor::State::failed) {
      sync_bridge_state();
      renderer_.error(give_up_text(st));
      flush();
      return;
    }
    auto failed = session_->open(base::Deadline::after(kRestartWait), sig_.get());
    sync_bridge_state();
    if (failed) {
      renderer_.error(acp::message_with_tail(failed->error));
    } else {
      st = bridge_.status();
      // Through a server, the session's own notice says that we are back (re-attached).
      if (!connected_mode())
        renderer_.note("the bridge was restarted (pid " + std::to_string(st.pid) + ", generation " +
                       std::to_string(st.generation) + ")");
      trouble_shown_ = false;
      on_session_events(session_->poll());
    }
    flush();
  }

  void new_session() {
    if (bridge_down()) return;
    // session/new on the connection as it is: the agent is initialized already.
    auto failed = session_->new_session(base::Deadline::after(kRestartWait), sig_.get());
    seen_loaded_ = session_->state().sessions_loaded;
    if (failed) renderer_.error(acp::message_with_tail(failed->error));
    else renderer_.note("new session " + terminal_line(session_->state().session_id));
    flush();
  }

  // /edit: compose in $VISUAL or $EDITOR (else vi) in a temporary file; what is saved is sent.
  void edit(const std::string& initial) {
    if (!interactive_) {
      renderer_.error("/edit needs a terminal");
      last_status_ = worse(last_status_, kExitDataErr);
      return;
    }
    const char* ed = ::getenv("VISUAL");
    if (!ed || !*ed) ed = ::getenv("EDITOR");
    std::string editor_cmd = ed && *ed ? ed : "vi";
    std::vector<std::string> words;
    {
      std::string w;
      for (char c : editor_cmd) {
        if (c == ' ' || c == '\t') {
          if (!w.empty()) words.push_back(std::move(w));
          w.clear();
        } else {
          w += c;
        }
      }
      if (!w.empty()) words.push_back(std::move(w));
    }
    const char* tmpdir = ::getenv("TMPDIR");
    std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") + "/tether-prompt-XXXXXX.md";
    int fd = ::mkstemps(path.data(), 3);
    if (fd < 0) {
      renderer_.error("cannot create a file to edit in: " + std::string(strerror(errno)));
      return;
    }
    if (!initial.empty()) base::write_all(fd, initial + "\n");
    ::close(fd);
    words.push_back(path);
    std::vector<char*> av;
    for (auto& w : words) av.push_back(w.data());
    av.push_back(nullptr);

    posix_spawnattr_t attr;
    ::posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGWINCH, SIGPIPE, SIGQUIT}) sigaddset(&defaults, s);
    ::posix_spawnattr_setsigmask(&attr, &none);
    ::posix_spawnattr_setsigdefault(&attr, &defaults);
    ::posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = -1;
    restore_terminal();  // the editor gets the terminal as the person's shell left it
    int rc = ::posix_spawnp(&pid, av[0], nullptr, &attr, av.data(), environ);
    ::posix_spawnattr_destroy(&attr);
    std::string text;
    bool ok = false;
    if (rc != 0) {
      renderer_.error("cannot run the editor " + words[0] + ": " + strerror(rc) + " (set VISUAL or EDITOR)");
    } else {
#ifdef TETHER_HAVE_LIBEDIT
      base::write_all(STDOUT_FILENO, "\x1b[?2004l");
#endif
      int st = 0;
      pid_t waited;
      while ((waited = ::waitpid(pid, &st, 0)) < 0 && errno == EINTR) {
      }
      if (waited != pid) st = W_EXITCODE(1, 0);  // status unknown (not ours to read): not clean
#ifdef TETHER_HAVE_LIBEDIT
      base::write_all(STDOUT_FILENO, "\x1b[?2004h");
#endif
      // Ctrl-C and resizes inside the editor were the editor's; termination requests are ours.
      while (int sig = read_signal(sig_.get())) {
        if (sig == SIGTERM || sig == SIGHUP) {
          ::unlink(path.c_str());
          shutdown_now();
          reraise(sig);
        }
      }
      if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
        std::string err;
        int in = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
        char buf[65536];
        ssize_t n;
        while (in >= 0 && (n = ::read(in, buf, sizeof buf)) > 0) text.append(buf, static_cast<std::size_t>(n));
        if (in >= 0) ::close(in);
        ok = true;
      } else {
        renderer_.note("the editor did not exit cleanly: nothing was sent");
      }
    }
    ::unlink(path.c_str());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r')) text.pop_back();
    if (!ok) return;
    if (text.find_first_not_of(" \t\n") == std::string::npos) {
      renderer_.dim("(empty: nothing sent)");
      return;
    }
    renderer_.dim(text);
    flush();
    start_turn(std::move(text));
  }

  // --- the interactive loop -------------------------------------------------------------------

  int run_interactive() {
#ifdef TETHER_HAVE_LIBEDIT
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
    for (auto& e : entries) editor_->add_history(e);
    if (!entries.empty()) last_entry_ = entries.back();
    greet();

    while (!quit_) {
      // The prompt comes back once our turn is over and no question waits for an answer.
      if (!turn_ && !editor_->editing() && perms_.empty()) {
        renderer_.finish_lines();
        flush();
        editor_->start(prompt(), kContinuation);
        handle_editor(editor_->process());
        continue;
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
        return kExitSoftware;
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
  std::string prompt() const { return multi_ ? kContinuation : kPrompt; }

  void handle_editor(std::vector<talk::LineEditor::Event> events) {
    for (auto& e : events) {
      if (e.kind == talk::LineEditor::Event::Kind::eof) on_eof();
      else on_line(e.text, e.multiline);
      if (quit_ || turn_) return;
    }
  }
#endif

  // --- script mode: stdin is not a terminal ---------------------------------------------------

  bool read_script_line(std::string& line) {
    for (;;) {
      auto nl = script_buf_.find('\n');
      if (nl != std::string::npos) {
        line = script_buf_.substr(0, nl);
        script_buf_.erase(0, nl + 1);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        return true;
      }
      if (script_eof_) {
        if (script_buf_.empty()) return false;
        line = std::exchange(script_buf_, {});
        return true;
      }
      // Through a server, requests routed to us (another client's turn) are answered meanwhile.
      pollfd p[3] = {{sig_.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}, {session_->fd(), POLLIN, 0}};
      int r = ::poll(p, connected_mode() ? 3 : 2, connected_mode() ? session_->next_deadline().poll_timeout_ms() : -1);
      if (r < 0) continue;
      if (connected_mode()) poll_session();
      if (p[0].revents & POLLIN) on_signals();
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
        char buf[65536];
        ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
        if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (n < 0) {  // stdin closed at start-up (EBADF) or broken: the end of the script, and an I/O error
          error_line(std::string("cannot read stdin: ") + strerror(errno));
          last_status_ = worse(last_status_, kExitIoErr);
        }
        if (n <= 0) script_eof_ = true;
        else script_buf_.append(buf, static_cast<std::size_t>(n));
      }
    }
  }

  void wait_turn() {
    while (turn_) {
      pollfd p[2] = {{sig_.get(), POLLIN, 0}, {turn_->fd(), POLLIN, 0}};
      base::Deadline d = base::Deadline::earliest(turn_->next_deadline(), wait_.next_tick());
      if (connected_mode()) d = base::Deadline::earliest(d, session_->next_deadline());
      int r = ::poll(p, 2, d.poll_timeout_ms());
      wait_.tick();
      if (r > 0 && (p[0].revents & POLLIN)) on_signals();
      handle_turn_events();
      if (connected_mode()) on_session_events(session_->take_notices());
    }
  }

  int run_script() {
    std::string line;
    while (!quit_ && !stop_script_) {
      if (!read_script_line(line)) {
        on_eof();
        if (turn_) wait_turn();
        break;
      }
      on_line(line, false);
      if (turn_) wait_turn();
    }
    if (stop_script_ && !quit_) {
      std::string rest;
      std::size_t left = 0;
      while (read_script_line(rest)) ++left;
      if (left) renderer_.note(std::to_string(left) + " more input line" + (left == 1 ? " was" : "s were") + " not sent");
      flush();
    }
    return last_status_;
  }

  TalkOptions& o_;
  supervisor::Bridge& bridge_;
  const acp::ClientOptions copts_;
  const std::vector<std::string> argv_;
  const std::string server_;  // connect mode: the tether server's socket
  const bool interactive_;
  Renderer renderer_;
  WaitNotice wait_{bridge_, o_.common.quiet, ::isatty(STDERR_FILENO) == 1};  // "waiting for the agent: 12 s"
  base::UniqueFd sig_;
  std::unique_ptr<acp::AcpSession> session_;
  std::optional<acp::Turn> turn_;
  std::deque<acp::PermissionRequest> perms_;  // asked and not yet answered; the front is shown
  std::vector<acp::TurnEvent> replies_;       // answers to session requests, for ask_server
  std::uint64_t setting_token_ = 0;           // a /mode, /model or /set awaiting its answer
  std::string setting_what_;
  std::string above_;                         // output held for the editor until its line ends
  bool other_prompt_ = false;                 // another client's prompt is being shown
  bool other_in_turn_ = false;                // another client's turn showed while ours waited
  std::uint64_t dropped_at_turn_start_ = 0;   // the bridge's oversize-line count when our turn began
  std::string turn_text_;                     // our turn's prompt
  base::Deadline other_pause_ = base::Deadline::never();  // then its unfinished line is shown
  bool server_trouble_shown_ = false;         // a tether server notice was shown
  base::TimePoint last_key_{};                // when the person last typed at the prompt
  base::Deadline keys_answer_from_ = base::Deadline::at(base::TimePoint{});  // keys before it answer no question
  bool cancel_requested_ = false;
  bool trouble_shown_ = false;      // a line about a bridge death was shown; fold the restore notice
  std::size_t seen_loaded_ = 0;     // sessions_loaded already accounted for
  std::uint64_t reported_exit_gen_ = 0;
  bool failed_reported_ = false;
  bool quit_ = false;
  bool stop_script_ = false;
  int last_status_ = kExitOk;
  bool multi_ = false;
  std::string multi_term_;
  std::vector<std::string> multi_lines_;
  std::optional<talk::HistoryFile> history_;
  std::string last_entry_;
  bool history_warned_ = false;
  termios orig_termios_{};
  bool have_termios_ = false;
  std::string script_buf_;
  bool script_eof_ = false;
#ifdef TETHER_HAVE_LIBEDIT
  std::optional<talk::LineEditor> editor_;
#endif
};

// Lists the agent's sign-in methods on the terminal and reads the person's choice (a number or an
// id; empty: none). Runs before the line editor starts, in the terminal's own line mode.
std::string ask_auth_method(const nlohmann::json& methods, const nlohmann::json& agent_error) {
  std::vector<std::string> ids;
  std::string text = "tether: the agent requires authentication";
  if (auto m = agent_error.value("message", ""); !m.empty()) text += " (" + talk::sanitize_text(m) + ")";
  text += ". Its sign-in methods:\n";
  std::string listing = talk::sanitize_text(acp::describe_auth_methods(methods));
  std::size_t n = 0;
  for (std::size_t pos = 0; pos < listing.size();) {
    std::size_t nl = listing.find('\n', pos);
    std::string line = listing.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    text += "  [" + std::to_string(++n) + "]" + line + "\n";
    pos = nl == std::string::npos ? listing.size() : nl + 1;
  }
  for (const auto& m : methods)
    if (m.is_object() && m.contains("id") && m["id"].is_string()) ids.push_back(m["id"].get<std::string>());
  text += "Pick one (number or id; Enter for none): ";
  base::write_all(STDERR_FILENO, text);
  std::string answer;
  char c;
  // The whole line is read (a long one is cut to 200 bytes), so nothing of it is left for the prompt.
  while (::read(STDIN_FILENO, &c, 1) == 1 && c != '\n' && c != '\r')
    if (answer.size() < 200) answer += c;
  while (!answer.empty() && (answer.back() == ' ' || answer.back() == '\r')) answer.pop_back();
  while (!answer.empty() && answer.front() == ' ') answer.erase(0, 1);
  if (answer.empty()) return "";
  if (answer.size() < 6 && std::all_of(answer.begin(), answer.end(), [](char d) { return d >= '0' && d <= '9'; })) {
    std::size_t k = std::stoul(answer);
    return k >= 1 && k <= ids.size() ? ids[k - 1] : "";
  }
  return answer;
}

}  // namespace

int run_talk(TalkOptions& o) {
  if (auto err = finish_options(o.common)) {
    error_line(err->message);
    return err->exit_code;
  }
  bool interactive = ::isatty(STDIN_FILENO) == 1 && ::isatty(STDOUT_FILENO) == 1;
  std::string policy_word = o.common.permission.empty() ? (interactive ? "ask" : "deny") : o.common.permission;
  auto policy = acp::parse_policy(policy_word).value_or(acp::PermissionPolicy::deny);
  if (policy == acp::PermissionPolicy::ask && !interactive) {
    if (!o.common.quiet) error_line("--permission ask needs a terminal; permission requests are denied");
    policy = acp::PermissionPolicy::deny;
  }

  supervisor::BridgeOptions bo;
  if (auto err = make_bridge_options(o.common, true, bo)) {
    error_line(err->message);
    return err->exit_code;
  }
  std::vector<std::string> argv = bo.argv;
  std::string server = bo.connect_path;
  supervisor::Bridge bridge(std::move(bo));
  int caught = 0;
  auto failed = start_bridge(bridge, open_signal_fd().get(), &caught);
  if (caught) reraise(caught);  // Ctrl-C while starting (or waiting for a server): the bridge is stopped
  if (failed) {
    error_line(supervisor::describe(*failed));
    return kExitUnavailable;
  }
  acp::ClientOptions copts;
  copts.cwd = o.common.cwd;
  copts.permission = policy;
  copts.allow_fs = o.common.allow_fs;
  copts.retries = o.common.retries;
  copts.client_version = TETHER_VERSION;
  // Through a server, talk at a terminal joins its main session: the conversation other clients
  // see too. A script gets a session of its own: joined, it would become the main session's
  // active client and answer a person's permission questions by its policy.
  copts.via_server = !server.empty();
  copts.attach_main = copts.via_server && interactive;
  copts.auth = o.common.auth;
  if (auto err = session_settings(o.common, copts.settings)) {
    error_line(err->message);
    return err->exit_code;
  }
  // At a terminal, the person picks the sign-in method when the agent asks for one and neither
  // --auth nor an env_var method settles it: never a browser login nobody chose.
  if (interactive) copts.ask_auth = ask_auth_method;
  int status;
  {
    Talk talk(o, bridge, std::move(copts), std::move(argv), std::move(server), interactive);
    status = talk.run();
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
      "restarts the server's bridge.");
  sub->add_flag("--no-history", o->no_history, "Do not read or write the history file");
  add_common_options(*sub, o->common);
  add_session_options(*sub, o->common);
  add_connect_option(*sub, o->common);
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_talk(*o);
  };
}

}  // namespace tether::cli
