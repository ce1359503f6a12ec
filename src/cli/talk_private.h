// The Talk class behind `tether talk` (talk.h), shared by the files that define it, one file per
// section: talk.cpp (run, output, the session's events), talk_turn.cpp (our turns, permission
// questions, signals), talk_repl.cpp (the interactive loop and the typed lines), talk_script.cpp
// (script mode: stdin not a terminal), talk_editor.cpp (terminal modes, /edit, the sign-in
// question) and talk_session_commands.cpp (/status, /restart, /stderr, /session new, /mode,
// /model, /set, and the tether server's own requests behind them).
//
// Private to src/cli: it is compiled with the cli library's TETHER_HAVE_LIBEDIT, which changes its
// layout. Thread-bound: one thread runs the whole conversation.
#pragma once

#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <deque>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "acp/session.h"
#include "base/unique_fd.h"
#include "cli/attachments.h"
#include "cli/event_stream.h"
#include "cli/launch.h"
#include "cli/render.h"
#include "cli/shell_words.h"
#include "cli/talk.h"
#include "cli/talk_commands.h"
#include "cli/talk_history.h"
#include "cli/turn_log.h"
#include "cli/wait_notice.h"
#include "rpc/line_framer.h"

#ifdef TETHER_HAVE_LIBEDIT
#include "cli/line_editor.h"
#endif

namespace tether::cli {

namespace talk_detail {

inline constexpr const char* kPrompt = "tether> ";
inline constexpr const char* kContinuation = "   ...> ";
inline constexpr auto kRestartWait = std::chrono::seconds(30);
// How long a tether server gets to answer _tether/status (for /status and /stderr).
inline constexpr auto kServerStatusWait = std::chrono::seconds(5);
// Another client's answer streams above the prompt in whole lines; a line it leaves unfinished for
// this long is shown as it is.
inline constexpr auto kOtherPause = std::chrono::milliseconds(250);
// A question that interrupts typing takes no answer from keys typed within this pause.
inline constexpr auto kTypingPause = std::chrono::milliseconds(500);

// The first line of a prompt, for a one-line reminder ("…" when there is more).
std::string first_line(const std::string& text);
// "42s", "3m05s", "2h10m".
std::string duration_text(base::Duration d);
// The text of a failed reply: tether's error object when the server sent one, else the JSON-RPC
// error's message.
std::string reply_error_text(const nlohmann::json& err);
// libedit decodes keys by the locale's character set: a C locale would mangle UTF-8 input, so
// coerce it to C.UTF-8 the way Python does (PEP 538).
void use_utf8_ctype();
// Lists the agent's sign-in methods on the terminal and reads the person's choice (a number or an
// id; empty: none). Runs before the line editor starts, in the terminal's own line mode.
std::string ask_auth_method(const nlohmann::json& methods, const nlohmann::json& agent_error);

}  // namespace talk_detail

class Talk {
 public:
  // `session` is on `bridge`, not yet opened; with --connect the plan's bridge options name the
  // tether server's socket.
  Talk(TalkOptions& o, const LaunchPlan& plan, supervisor::Bridge& bridge, std::unique_ptr<acp::AcpSession> session,
       bool interactive);
  ~Talk();

  // Opens the session, runs the conversation, closes the session; the exit status.
  int run();
  // A line about the agent's terminals (cli/terminal_view.h), shown dim.
  void show_terminal(std::string_view line) {
    renderer_.dim(line);
    flush();
  }

 private:
  static talk::RenderStyle make_style(const TalkOptions& o, bool color, bool interactive);
  bool connected_mode() const { return !server_.empty(); }

  // --- output and the session's events (talk.cpp) ---------------------------------------------
  void flush();
  int open_session();
  void greet();
  void check_bridge();
  std::string give_up_text(const supervisor::BridgeStatus& st) const;
  void sync_bridge_state();
  void show_notice(const acp::TurnEvent& e);
  void show_output(const std::string& text);
  void poll_session();
  void on_session_events(std::vector<acp::TurnEvent> events);
  void show_other(const acp::Update& u);

  // --- our turns, permission questions, signals (talk_turn.cpp) -------------------------------
  bool bridge_down();
  void start_turn(std::string text);
  void handle_turn_events();
  void end_turn(const acp::TurnEvent& e);
  void drop_turn_permissions();
  void on_permission(acp::PermissionRequest p);
  void on_permission_withdrawn(std::uint64_t token);
  void show_permission();
  void answer_permission(std::optional<std::size_t> index);
  void read_permission_key();
  void interrupt_turn();
  void on_signals();
  void shutdown_now();

  // --- terminal modes and /edit (talk_editor.cpp) ---------------------------------------------
  void save_terminal();
  void turn_terminal_mode();
  void restore_terminal();
  void edit(const std::string& initial);
  std::optional<std::string> run_editor(std::vector<std::string> words, const std::string& path);

  // --- the interactive loop and the typed lines (talk_repl.cpp) -------------------------------
  int run_interactive();
#ifdef TETHER_HAVE_LIBEDIT
  void start_editor();
  bool interactive_step();
  std::string prompt() const;
  void handle_editor(std::vector<talk::LineEditor::Event> events);
#endif
  void interrupt_prompt();
  void record(const std::string& line);
  bool await_agent_commands();
  void on_line(const std::string& text, bool multiline);
  bool on_multi_line(const std::string& text, bool multiline);
  void on_eof();

  // --- script mode: stdin is not a terminal (talk_script.cpp) ---------------------------------
  bool read_script_line(std::string& line);
  void wait_turn();
  int run_script();

  // --- commands on the session, the bridge and the server (talk_session_commands.cpp) ---------
  void change_setting(talk::LineKind kind, const std::string& arg);
  void show_settings(talk::LineKind kind);
  bool on_setting_reply(const acp::TurnEvent& e);
  std::optional<nlohmann::json> ask_server(std::string_view method, base::Duration limit, std::string& why,
                                          nlohmann::json params = nlohmann::json::object());
  void restart_server_bridge();
  void server_stderr();
  std::string server_status_lines(const supervisor::BridgeStatus& st);
  std::string status_text();
  void restart();
  void new_session();
  void attach(const std::string& path);
  void emit_event(const std::string& line);
  bool event_instead(const acp::TurnEvent& e);

  // --- continued sessions: the first greeting, /sessions, /load (talk_sessions.cpp) ------------
  void greet_continued();
  void list_sessions();
  void load_session(const std::string& which);

  TalkOptions& o_;
  supervisor::Bridge& bridge_;
  const std::vector<std::string> argv_;
  const std::string server_;  // connect mode: the tether server's socket
  const bool interactive_;
  talk::Renderer renderer_;
  WaitNotice wait_{bridge_, o_.common.quiet, ::isatty(STDERR_FILENO) == 1};  // "waiting for the agent: 12 s"
  base::UniqueFd sig_;
  std::unique_ptr<acp::AcpSession> session_;
  std::optional<acp::Turn> turn_;
  std::optional<TurnRecorder> log_turn_;      // our turn in flight, for the turn log
  std::deque<acp::PermissionRequest> perms_;  // asked and not yet answered; the front is shown
  std::vector<acp::TurnEvent> replies_;       // answers to session requests, for ask_server
  std::uint64_t setting_token_ = 0;           // a /mode, /model or /set awaiting its answer
  std::string setting_what_;
  std::string above_;                         // output held for the editor until its line ends
  bool other_prompt_ = false;                 // another client's prompt is being shown
  bool other_in_turn_ = false;                // another client's turn showed while ours waited
  std::uint64_t dropped_at_turn_start_ = 0;   // the bridge's oversize-line count when our turn began
  std::string turn_text_;                     // our turn's prompt
  std::vector<Attachment> attached_;          // /attach: sent with the next prompt
  std::optional<EventStream> events_;         // --events: the stream that replaces the rendering
  std::optional<acp::Usage> events_usage_;    // --events: the turn's last usage_update
  base::TimePoint turn_started_at_{};         // --events: for turn_ended's elapsedMs
  base::Deadline other_pause_ = base::Deadline::never();  // then its unfinished line is shown
  bool server_trouble_shown_ = false;         // a tether server notice was shown
  std::vector<std::string> listed_sessions_;  // the ids /sessions showed, by number (for /load N)
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
  rpc::LineFramer script_lines_{std::numeric_limits<std::size_t>::max()};  // no cap: a person's script
  bool script_eof_ = false;
#ifdef TETHER_HAVE_LIBEDIT
  std::optional<talk::LineEditor> editor_;
#endif
};

}  // namespace tether::cli
