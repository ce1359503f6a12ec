#include "cli/prompt.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <nlohmann/json.hpp>

#include "acp/session.h"
#include "cli/event_stream.h"
#include "cli/launch.h"
#include "cli/option_values.h"
#include "cli/prompt_input.h"
#include "cli/render.h"
#include "cli/terminal_text.h"
#include "cli/terminal_view.h"
#include "cli/tool_calls.h"
#include "cli/tool_view.h"
#include "cli/turn_log.h"
#include "cli/wait_notice.h"
#include "supervisor/bridge.h"

namespace tether::cli {
namespace {

using acp::TurnEvent;
using acp::Update;
using base::Clock;
using base::Deadline;
using nlohmann::json;
// What --json prints keeps its keys in the order the man page documents (ok, text, stopReason,
// sessionId, toolCalls, restarts, elapsedMs, droppedLines; an error's code, message, ...): plain
// `json` sorts them, which a person reading the output (or a tool comparing it as text) trips on.
using OutJson = nlohmann::ordered_json;

constexpr auto kSetupTimeout = std::chrono::seconds(30);

// Only the fields DESIGN §7 names, in its order.
OutJson public_error(const json& err) {
  OutJson out = OutJson::object();
  for (const char* k : {"code", "message", "rpcCode", "data", "exitStatus", "signal", "stderrTail"})
    if (err.is_object() && err.contains(k)) out[k] = OutJson(err[k]);
  if (!out.contains("code")) out["code"] = "agent_error";
  if (!out.contains("message")) out["message"] = "unknown error";
  return out;
}

std::string dump(const OutJson& j) { return j.dump(-1, ' ', false, OutJson::error_handler_t::replace); }

// "tether: <message>", the bridge's last stderr lines last.
void report(const json& error) {
  std::string m = acp::message_with_tail(error);
  if (m.rfind("tether ", 0) == 0) m.erase(0, 7);  // "tether: tether gave up" says it twice
  error_line(m);
}

// Short lines on stderr about what the agent does, unless -q. On a terminal they pass through
// cli::terminal_text (no escape sequence of the agent's reaches the screen), and a prefixed line
// (tool, plan, permission, thinking) stays one line (cli::terminal_line).
class SideChannel {
 public:
  SideChannel(bool quiet, int verbose, bool color, bool terminal)
      : quiet_(quiet), verbose_(verbose), color_(color), terminal_(terminal) {}
  void set_wait_notice(WaitNotice* w) { wait_ = w; }

  void line(std::string_view prefix, std::string_view text, bool dim = true) {
    if (quiet_) return;
    flush_thought();
    write_line(prefix, text, dim, /*one_line=*/true);
  }
  void notice(std::string_view text) {
    if (quiet_) return;
    flush_thought();
    write_line("tether: ", text, false, /*one_line=*/false);
  }
  void thought(std::string_view text) {
    if (!quiet_) thought_ += text;
  }
  void flush_thought() {
    if (thought_.empty()) return;
    std::string t = std::exchange(thought_, {});
    std::replace(t.begin(), t.end(), '\n', ' ');
    write_line("thinking: ", t, true, /*one_line=*/true);
  }
  int verbose() const { return verbose_; }
  // A tool call's lines (cli/tool_view.h: diff, command, output), indented under its line. They
  // are safe already; only the colour is added here.
  void view(const std::vector<ViewLine>& lines) {
    if (quiet_ || lines.empty()) return;
    flush_thought();
    if (wait_) wait_->clear();
    std::string s = format(lines, "  ", color_);
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, s.data(), s.size());
    ++writes_;
  }
  // Lines written so far: "nothing came after" for ToolTracker.
  std::uint64_t writes() const { return writes_; }

 private:
  void write_line(std::string_view prefix, std::string_view text, bool dim, bool one_line) {
    if (wait_) wait_->clear();
    std::string safe;
    if (terminal_) {
      safe = one_line ? terminal_line(text) : terminal_text(text);
      text = safe;
    }
    std::string s;
    if (color_ && dim) s += "\x1b[2m";
    s += prefix;
    s += text;
    if (color_ && dim) s += "\x1b[0m";
    s += '\n';
    [[maybe_unused]] auto n = ::write(STDERR_FILENO, s.data(), s.size());
    ++writes_;
  }

  bool quiet_;
  int verbose_;
  bool color_;
  bool terminal_;
  WaitNotice* wait_ = nullptr;
  std::string thought_;
  std::uint64_t writes_ = 0;
};

// What one turn produced.
struct TurnResult {
  std::optional<TurnEvent> terminal;
  std::string text;
  acp::MessageBreaks breaks;      // a new agent message starts a new paragraph
  std::optional<acp::Usage> usage;  // the last usage_update of the turn (shown once, with -v)
  json prompt_result;               // session/prompt's result (its usage, when the agent sends it)
  ToolCalls tools;
  int signal = 0;          // the signal that interrupted it
  bool stdout_gone = false;  // EPIPE on stdout
  int write_errno = 0;     // another stdout error
  long long elapsed_ms = 0;
};

class PromptRun {
 public:
  PromptRun(PromptOptions& o, acp::AcpSession& session, acp::PermissionPolicy policy, int sigfd, bool stream,
            SideChannel& side, WaitNotice& wait, bool stdout_terminal, bool& line_open)
      : policy_(policy), o_(o), session_(session), sigfd_(sigfd), stream_(stream), side_(side), wait_(wait),
        stdout_terminal_(stdout_terminal), line_open_(line_open) {}

  TurnResult run_turn(const json& content, const std::string& words, const json& attachment_names) {
    TurnResult r;
    views_.clear();
    auto t0 = Clock::now();
    if (o_.events) emit(events_.turn_started(session_.state().session_id, words, attachment_names), r);
    acp::Turn turn = session_.prompt_blocks(content, base::seconds(o_.common.timeout));
    TurnRecorder log(o_.common, "prompt", words, session_.state());
    log.set_attachments(attachment_names);
    bool streamed_any = false;
    bool hurry = false;  // a second signal: stop waiting for the agent
    wait_.start();
    while (!r.terminal && !hurry) {
      std::string out;
      for (auto& ev : turn.poll()) {
        log.see(ev);
        handle(ev, r, out, streamed_any);
      }
      if (!out.empty() && !r.stdout_gone && r.write_errno == 0) {
        wait_.clear();
        if (stdout_terminal_) out = terminal_text(out);
        if (!out.empty()) line_open_ = out.back() != '\n';
        if (!write_stdout(out)) {
          if (errno == EPIPE) r.stdout_gone = true;
          else r.write_errno = errno;
          turn.cancel(acp::CancelCause::caller_gone);
        }
      }
      if (r.terminal) break;
      pollfd p[2] = {{turn.fd(), POLLIN, 0}, {sigfd_, POLLIN, 0}};
      int n = ::poll(p, 2, base::Deadline::earliest(turn.next_deadline(), wait_.next_tick()).poll_timeout_ms());
      if (n < 0 && errno != EINTR) break;
      wait_.tick();
      if (n > 0 && (p[1].revents & POLLIN)) {
        int sig = read_signal(sigfd_);
        if (sig == 0 || sig == SIGWINCH) continue;
        if (r.signal) hurry = true;  // asked twice: the bridge is stopped without waiting
        r.signal = sig;
        turn.cancel(acp::CancelCause::interrupt);
      }
    }
    wait_.stop();
    if (r.terminal) log.finish(session_.state());
    side_.flush_thought();
    if (r.usage && side_.verbose() > 0)
      side_.line("usage: ", talk::usage_text(*r.usage));  // talk's format (cli/render.h)
    bool answered = r.terminal && r.terminal->kind == TurnEvent::Kind::completed &&
                    r.terminal->cancelled == acp::CancelCause::none;
    if ((streamed_any || answered) && stream_ && !o_.json && !r.stdout_gone && r.write_errno == 0) {
      // The streamed answer ends with one newline, like the written one.
      if (!write_stdout("\n")) r.stdout_gone = errno == EPIPE;
    }
    line_open_ = false;
    r.elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    if (r.terminal) r.prompt_result = r.terminal->result;
    if (o_.events && r.terminal)
      emit(events_.turn_ended(session_.state().session_id, *r.terminal, turn_usage(r.usage, r.prompt_result), r.elapsed_ms),
           r);
    return r;
  }

 private:
  // --events: a line of the stream to stdout at once (the stream is for live consumers).
  void emit(const std::string& line, TurnResult& r) {
    if (line.empty() || r.stdout_gone || r.write_errno) return;
    if (!write_stdout(line)) {
      if (errno == EPIPE) r.stdout_gone = true;
      else r.write_errno = errno;
    }
  }

  void handle(TurnEvent& ev, TurnResult& r, std::string& out, bool& streamed_any) {
    if (ev.other_client) return;  // another client's turn in a shared session: not our answer
    if (o_.events) emit(events_.event(session_.state().session_id, ev), r);
    switch (ev.kind) {
      case TurnEvent::Kind::update: on_update(ev.update, r, out, streamed_any); break;
      case TurnEvent::Kind::permission: {
        const auto& p = ev.permission;
        std::string what = p.tool.title.value_or(p.tool.id.empty() ? "a tool call" : p.tool.id);
        std::string how = p.chosen ? (p.chosen->kind.rfind("allow", 0) == 0 ? "allowed" : "rejected") + std::string(" (") +
                                         p.chosen->kind + ")"
                                   : std::string("cancelled (no offered option fits --permission ") +
                                         acp::to_string(policy_) + ")";
        // -v: what was allowed or rejected (the diff, the command), before the decision.
        if (side_.verbose() > 0) side_.view(views_.for_permission(p.tool, view_options(), side_.writes()));
        side_.line("permission: ", what + ": " + how);
        break;
      }
      case TurnEvent::Kind::permission_withdrawn:
      case TurnEvent::Kind::reply:
        break;
      case TurnEvent::Kind::output: side_.notice("the agent wrote on stdout: " + ev.text); break;
      case TurnEvent::Kind::notice:
        // Trouble at the tether server is an error here: nobody watches a script's notices.
        if (ev.server_trouble) error_line(ev.text);
        else side_.notice(ev.text);
        break;
      case TurnEvent::Kind::retry:
        side_.notice(ev.text);
        // A retried turn starts its answer again: what was collected is dropped.
        r.text.clear();
        r.tools.clear();
        views_.clear();
        r.breaks = {};
        r.usage.reset();
        if (streamed_any && stream_ && !o_.json) out += "\n";
        break;
      case TurnEvent::Kind::completed:
      case TurnEvent::Kind::failed: r.terminal = std::move(ev); break;
    }
  }

  void on_update(const Update& u, TurnResult& r, std::string& out, bool& streamed_any) {
    std::string sep = r.breaks.separator(u);
    switch (u.kind) {
      case Update::Kind::agent_message:
        if (o_.events) {
          r.text += sep;  // kept for the record; the stream carried the chunk
          r.text += u.text;
        } else if (stream_ && !o_.json) {
          side_.flush_thought();
          out += sep;
          out += u.text;
          streamed_any = true;
        } else {
          r.text += sep;
          r.text += u.text;
        }
        break;
      case Update::Kind::agent_thought: side_.thought(u.text); break;
      case Update::Kind::tool_call:
      case Update::Kind::tool_call_update: {
        const ToolCalls::Entry* changed = r.tools.update(u);  // a new call, or a new status
        // -v: the tool call's diff, command and output under its line, when they are new.
        std::vector<ViewLine> lines;
        if (side_.verbose() > 0) lines = views_.update(u.tool, view_options());
        if (const ToolCalls::Entry* it = changed ? changed : lines.empty() ? nullptr : r.tools.find(u.tool.id)) {
          acp::ToolCall shown = u.tool;
          shown.title = it->title.empty() ? it->id : it->title;
          shown.kind = it->kind.empty() ? std::nullopt : std::optional<std::string>(it->kind);
          shown.status = it->status;
          side_.line("tool: ", acp::describe_tool_call(shown));
        }
        if (!lines.empty()) {
          side_.view(lines);
          views_.drawn(u.tool.id, side_.writes());
        }
        break;
      }
      case Update::Kind::plan: side_.line("plan: ", acp::describe_plan(u.plan)); break;
      case Update::Kind::usage: r.usage = u.usage; break;
      default: break;
    }
  }

  // -v: diffs and commands in full up to 40 lines, outputs to 10; cut to stderr's width.
  ViewOptions view_options() const {
    ViewOptions v;
    v.output_lines = 10;
    v.width = terminal_width(STDERR_FILENO);
    if (v.width > 2) v.width -= 2;
    // `terminal` content shows what the terminal printed so far (sanitized and cut in tool_view).
    v.terminal_output = [this](std::string_view id) { return session_.terminal_output(id); };
    return v;
  }

  const acp::PermissionPolicy policy_;
  ToolTracker views_;  // the turn's tool calls, for -v
  PromptOptions& o_;
  acp::AcpSession& session_;
  int sigfd_;
  bool stream_;
  SideChannel& side_;
  WaitNotice& wait_;
  bool stdout_terminal_;
  bool& line_open_;  // the streamed answer's last line is not ended yet
  EventStream events_;
};

// One `tether prompt` run once its options are planned: the bridge and session (launch()), the
// handshake, the turns (--repeat), the output of each, the close. Its steps record how the run
// ends in exit_code_ and raise_sig_ (a signal to die by, after the bridge is stopped).
class PromptCommand {
 public:
  PromptCommand(PromptOptions& o, const LaunchPlan& plan, ContinuePlan continued)
      : o_(o),
        plan_(plan),
        continued_(std::move(continued)),
        // --events carries the answer in its message_chunk events: nothing else goes to stdout.
        stream_(!o.events && o.stream.value_or(::isatty(STDOUT_FILENO) != 0)),
        stderr_terminal_(::isatty(STDERR_FILENO) != 0),
        side_(o.common.quiet, o.common.verbose, plan.color, stderr_terminal_),
        sigfd_(open_signal_fd()) {}

  int run(const PromptInput& input) {
    {
      Launched launched = launch(plan_, sigfd_.get());
      if (launched.started.caught) {  // interrupted while starting (or waiting for a server): the bridge is stopped
        fail_json(acp::error_object("cancelled", "interrupted while connecting to the agent"));
        reraise(launched.started.caught);
      }
      if (launched.started.failed) {
        json e = launched.started.failed->to_json();
        report(e);
        fail_json(e);
        return kExitUnavailable;
      }
      converse(*launched.started.bridge, *launched.session, input);
      // Leaving the scope: the session is dropped, then the bridge is stopped (stdin closed, the
      // stop ladder if it lingers) before we report or re-raise.
    }
    if (raise_sig_) reraise(raise_sig_);
    return exit_code_;
  }

 private:
  bool print_json(const OutJson& j) { return write_stdout(json_for_fd(STDOUT_FILENO, dump(j)) + "\n"); }
  void fail_json(const json& error) {
    if (o_.json) print_json(OutJson{{"ok", false}, {"error", public_error(error)}});
  }

  // The handshake, the turns, the close.
  void converse(supervisor::Bridge& bridge, acp::AcpSession& session, const PromptInput& input) {
    WaitNotice wait(bridge, o_.common.quiet, stderr_terminal_);
    side_.set_wait_notice(&wait);
    // A streamed answer's half-written line on the same terminal is not erased by the notice.
    bool answer_line_open = false;
    const bool shared_terminal = stream_ && stderr_terminal_ && ::isatty(STDOUT_FILENO);
    wait.set_line_open([&] { return shared_terminal && answer_line_open; });

    if (!open_session(bridge, session, wait)) return;
    bind_session_name(continued_, o_.common, session.state().session_id);
    if (o_.common.verbose > 0) {
      const auto& st = session.state();
      std::string agent = st.agent_info.is_object() ? st.agent_info.value("name", "?") + " " + st.agent_info.value("version", "")
                                                    : std::string("an agent");
      side_.notice("connected to " + terminal_line(agent) + ", session " + terminal_line(st.session_id) +
                   (continued_.session_id.empty() ? "" : " (continued)"));
    }
    auto content = content_for(bridge, session, input);
    if (!content) return;
    json names = json::array();
    for (const auto& a : input.inputs) names.push_back(a.name);
    PromptRun run(o_, session, plan_.client.permission, sigfd_.get(), stream_, side_, wait, ::isatty(STDOUT_FILENO) != 0,
                  answer_line_open);
    bool incomplete = false;
    for (int i = 0; i < std::max(1, o_.repeat); ++i) {
      const auto dropped_before = bridge.status().counters.oversize_lines;
      TurnResult r = run.run_turn(*content, input.words, names);
      // Lines over --max-line are dropped by the connection: a chunk of the answer may be lost.
      const auto dropped_after = bridge.status().counters.oversize_lines;
      const auto dropped = dropped_after > dropped_before ? dropped_after - dropped_before : 0;
      if (!take_turn(r, dropped, session, bridge, incomplete)) break;
    }
    if (incomplete && exit_code_ == kExitOk) exit_code_ = kExitNotClean;
    if (o_.common.verbose > 0 && session.state().late_updates > 0)
      side_.notice(std::to_string(session.state().late_updates) +
                   " update(s) came after a turn's final response and were not shown (see --trace)");
    // The session is closed at the agent (it may keep a process per session, and some agents
    // do not exit on stdin EOF while one is open); a second Ctrl-C does not wait for that.
    if (!hurried_ && session.close(Deadline::after(kCloseWait))) bridge.stop(kClosedGrace);
  }

  // The prompt's content blocks, for what this agent accepts (cli/attachments.h). When it cannot
  // take an attachment: exit 64, said before anything was sent, and the session is closed.
  std::optional<json> content_for(supervisor::Bridge& bridge, acp::AcpSession& session, const PromptInput& input) {
    const auto& st = session.state();
    std::string agent = st.agent_info.is_object() ? st.agent_info.value("name", "the agent") : std::string("the agent");
    auto blocks = prompt_blocks(input.inputs, input.words, PromptCaps::from(st.agent_capabilities), terminal_line(agent));
    if (auto* content = std::get_if<json>(&blocks)) return std::move(*content);
    const std::string& why = std::get<std::string>(blocks);
    error_line(why);
    fail_json(acp::error_object("bad_input", why));
    exit_code_ = kExitUsage;
    if (session.close(Deadline::after(kCloseWait))) bridge.stop(kClosedGrace);
    return std::nullopt;
  }

  // session/initialize and session/new (or the server's equivalent); false when it failed.
  bool open_session(supervisor::Bridge& bridge, acp::AcpSession& session, WaitNotice& wait) {
    wait.start();
    auto failed = session.open(Deadline::never(), sigfd_.get(), [&] { wait.tick(); });
    wait.stop();
    for (auto& n : session.take_notices()) {
      if (n.kind == TurnEvent::Kind::output) side_.notice("the agent wrote on stdout: " + n.text);
      else if (n.kind == TurnEvent::Kind::notice) side_.notice(n.text);
    }
    if (!failed) return true;
    if (failed->cancelled == acp::CancelCause::interrupt) {
      raise_sig_ = read_signal(sigfd_.get());
      if (raise_sig_ == 0) raise_sig_ = SIGINT;
    } else {
      report(failed->error);
    }
    fail_json(failed->error);
    exit_code_ = acp::exit_status(*failed);
    // No session was opened: the agent has nothing to finish, and some never exit on stdin EOF.
    bridge.stop(kClosedGrace);
    return false;
  }

  // What one turn's result means for the run: its exit status, its output, whether another turn
  // follows (true).
  bool take_turn(const TurnResult& r, std::uint64_t dropped, acp::AcpSession& session, supervisor::Bridge& bridge,
                 bool& incomplete) {
    if (r.stdout_gone) {
      raise_sig_ = SIGPIPE;  // `| head`: end quietly, as the shell expects
      return false;
    }
    if (r.write_errno) {
      error_line(std::string("cannot write the answer: ") + ::strerror(r.write_errno));
      exit_code_ = kExitIoErr;
      return false;
    }
    if (!r.terminal) {  // interrupted twice: no answer awaited
      hurried_ = true;
      raise_sig_ = r.signal ? r.signal : SIGINT;
      return false;
    }
    exit_code_ = acp::exit_status(*r.terminal);
    if (dropped > 0) {
      error_line(std::to_string(dropped) + " line(s) from the agent were longer than --max-line (" +
                 std::to_string(o_.common.max_line) + " bytes) and were dropped: the answer may be incomplete");
      incomplete = true;  // exit 1 once the turns are done, unless something worse happens
    }
    if (!print_turn(r, dropped, session, bridge)) return false;
    return !ends_run(r);
  }

  // The turn on stdout: its JSON object (--json), or the answer when it was not streamed. False
  // when stdout failed (raise_sig_ or exit_code_ set).
  bool print_turn(const TurnResult& r, std::uint64_t dropped, acp::AcpSession& session, supervisor::Bridge& bridge) {
    const TurnEvent& t = *r.terminal;
    bool completed = t.kind == TurnEvent::Kind::completed && t.cancelled == acp::CancelCause::none;
    bool written = true;
    if (o_.events) {
      // The stream said it all (turn_ended).
    } else if (o_.json) {
      OutJson j;
      if (completed) {
        OutJson tools = r.tools.to_json();
        j = {{"ok", true},
             {"text", r.text},
             {"stopReason", t.stop_reason},
             {"sessionId", session.state().session_id},
             {"toolCalls", std::move(tools)}};
        if (OutJson usage = turn_usage(r.usage, r.prompt_result); !usage.is_null()) j["usage"] = std::move(usage);
        j["restarts"] = bridge.status().restarts_total;
        j["elapsedMs"] = r.elapsed_ms;
        if (dropped > 0) j["droppedLines"] = dropped;
      } else {
        json err = t.kind == TurnEvent::Kind::failed ? t.error
                   : t.cancelled == acp::CancelCause::timeout
                       ? acp::error_object("timeout", "the turn did not finish within the timeout")
                       : acp::error_object("cancelled", "the turn was cancelled");
        j = {{"ok", false}, {"error", public_error(err)}};
      }
      written = print_json(j);
    } else if (completed && !stream_) {
      written = write_stdout(for_terminal(STDOUT_FILENO, r.text) + "\n");
    }
    if (!written) {
      if (errno == EPIPE) raise_sig_ = SIGPIPE;
      else exit_code_ = kExitIoErr;
    }
    return written;
  }

  // A signal, a failure, a timeout or an unclean stop ends the run (said on stderr).
  bool ends_run(const TurnResult& r) {
    const TurnEvent& t = *r.terminal;
    if (r.signal) {
      raise_sig_ = r.signal;
      return true;
    }
    if (t.kind == TurnEvent::Kind::failed) {
      if (t.cancelled == acp::CancelCause::none) report(t.error);
      else if (t.cancelled == acp::CancelCause::timeout) error_line(t.error.value("message", "timeout"));
      return true;
    }
    if (t.cancelled == acp::CancelCause::timeout) {
      error_line("the turn did not finish within the timeout (" + acp::duration_text(base::seconds(o_.common.timeout)) +
                 "); it was cancelled");
      return true;
    }
    if (exit_code_ != kExitOk) {
      error_line("the agent stopped with " + t.stop_reason);
      return true;
    }
    return false;
  }

  PromptOptions& o_;
  const LaunchPlan& plan_;
  const ContinuePlan continued_;
  const bool stream_;
  const bool stderr_terminal_;
  SideChannel side_;
  base::UniqueFd sigfd_;
  int exit_code_ = kExitOk;
  int raise_sig_ = 0;
  bool hurried_ = false;  // a second signal: the session is not closed politely
};

}  // namespace

int run_prompt(PromptOptions& o) {
  PromptInput input;
  if (int rc = read_prompt_input(o, input); rc != kExitOk) return rc;
  auto planned = plan_launch(o.common, {.command = "prompt", .asker = Asker::nobody});
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
  plan.client.session_id = std::get<ContinuePlan>(continued).session_id;
  start_turn_log(o.common);  // the log opens on its thread while the bridge starts
  // A script's one prompt: --timeout also bounds each handshake request (which gets 30 s at most).
  plan.client.setup_timeout = o.common.timeout > 0
                                  ? std::min<base::Duration>(base::seconds(o.common.timeout), kSetupTimeout)
                                  : base::Duration(kSetupTimeout);
  // -v: the agent's terminals (command, output, exit) on stderr.
  if (o.common.verbose > 0 && !o.common.quiet) plan.client.on_terminal = terminal_view(stderr_sink(plan.color));
  PromptCommand command(o, plan, std::get<ContinuePlan>(std::move(continued)));
  return command.run(input);
}

std::function<int()> setup_prompt(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<PromptOptions>();
  auto* sub = app.add_subcommand("prompt", "Send one prompt to an ACP agent; the answer goes to stdout");
  sub->footer(
      "The answer goes to stdout; thoughts, tool calls and plans to stderr as short lines (-q: none).\n"
      "--json prints one object per turn instead: {ok,text,stopReason,sessionId,toolCalls,restarts,\n"
      "elapsedMs} or {ok:false,error}. A turn cut by a bridge crash is sent again (--retries).\n"
      "Exit status: 0 end_turn; 1 another stop reason (refusal, max_tokens, cancelled...), an agent\n"
      "error, or an incomplete answer (a line over --max-line was dropped; --json: droppedLines);\n"
      "64 usage error (also a --mode/--model/--set the agent does not offer); 65 empty prompt;\n"
      "69 the bridge cannot start, is gone past its restart budget, or wants a sign-in tether may not\n"
      "start (see --auth); 74 I/O error; 75 --timeout; 76 the bridge does not speak ACP; 129/130/143 SIGHUP/\n"
      "SIGINT/SIGTERM (the bridge is stopped first); | head ends quietly.\n"
      "--connect[=NAME|PATH] sends the prompt through a running `tether serve` (in a session of its own)\n"
      "instead of starting a bridge; 69 also when no server listens there.\n"
      "-c continues the last conversation with this agent in this directory, --session ID a given one,\n"
      "-s NAME a named one (created on first use); 69 when the agent cannot continue it.");
  sub->add_option("PROMPT", o->text, "The prompt (words are joined by spaces); none or '-': read it from stdin")->type_name("TEXT");
  auto* json_flag =
      sub->add_flag("--json", o->json,
                    "Print one JSON object per turn: {ok,text,stopReason,sessionId,toolCalls,usage,restarts,elapsedMs}")
          ->group("Output");
  sub->add_flag("--events", o->events,
                "Print one JSON line per event of the turn (chunks, tool calls, plans, permissions, usage; see EVENTS "
                "in the man page) instead of the answer")
      ->excludes(json_flag)
      ->group("Output");
  sub->add_option("-a,--attach", o->attach,
                  "Attach a file to the prompt (repeatable): images as images, text as embedded context; '-': stdin")
      ->type_name("PATH")
      ->allow_extra_args(false)  // one path per -a: the words after it are the prompt
      ->group("Prompt");
  sub->add_flag("--no-stdin", o->no_stdin,
                "Do not read stdin as context for the words (for loops that read their own input from stdin)")
      ->group("Prompt");
  // Either may follow the other (an alias with --stream, then --no-stream): the last one given
  // wins, as for every option. Their callbacks run as they are parsed, so in command-line order.
  sub->add_flag_callback("--stream", [o] { o->stream = true; }, "Write the answer chunk by chunk (default when stdout is a terminal)")
      ->trigger_on_parse()
      ->group("Output");
  sub->add_flag_callback("--no-stream", [o] { o->stream = false; }, "Write the answer once the turn completed (default otherwise)")
      ->trigger_on_parse()
      ->group("Output");
  expects(sub->add_option("--repeat", o->repeat, "Send the same prompt N times in one session, for benchmarks"), count_value(1, 1000000))
      ->capture_default_str()
      ->group("Output");
  add_common_options(*sub, o->common);
  add_session_options(*sub, o->common);
  add_connect_option(*sub, o->common);
  add_log_options(*sub, o->common);
  add_continue_options(*sub, o->continued);
  return [o, bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_prompt(*o);
  };
}

}  // namespace tether::cli
