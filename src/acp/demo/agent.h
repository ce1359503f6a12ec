// The demo agent's insides (the public entry is acp/demo_agent.h, which says what it does): one
// DemoAgent object per process, whose member functions live in the file of their section:
//   agent.cpp     the request loop and the session requests (initialize, session/new, load,
//                 resume, close, set_mode, set_config_option)
//   wire.cpp      stdin and stdout: one large output buffer, newline-delimited input, the
//                 triage of what arrives during a turn, and requests to the client
//   history.cpp   the per-session history files: where they live, appending a turn, replaying
//                 them on session/load
//   store.cpp     the store of histories as a whole: session/list, and keeping it bounded
//   turn.cpp      session/prompt, in named steps, and the tools a turn uses (edit, read)
//   triggers.cpp  the trigger words of a prompt (pure functions)
// Not a public header: only src/acp/demo/*.cpp include it.
#pragma once

#include <cstddef>
#include <deque>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"
#include "rpc/line_framer.h"

namespace tether::acp::demo {

using nlohmann::json;

inline constexpr std::size_t kFlushAt = 256 * 1024;
inline constexpr std::size_t kReadChunk = 64 * 1024;
inline constexpr std::size_t kMaxStoredAnswer = 64 * 1024;
inline constexpr int kFloodCheckEvery = 4096;  // chunks between looks at stdin for a session/cancel
// The store of histories keeps the newest kKeepSessions sessions, none older than kKeepDays (by
// their last turn); it is pruned at the first new history of a process and every kPruneEvery
// new histories after that.
inline constexpr std::size_t kKeepSessions = 200;
inline constexpr int kKeepDays = 30;
inline constexpr int kPruneEvery = 50;
inline constexpr std::size_t kListPage = 50;  // sessions per session/list answer

// --- triggers.cpp: text helpers and the trigger words ---------------------------------------------

// Appends `s` as the inside of a JSON string.
void append_escaped(std::string& out, std::string_view s);
std::string dump(const json& j);
std::size_t utf8_length(std::string_view s);
std::string lower(std::string s);
// A whole non-negative decimal number, or nothing.
std::optional<long long> number(std::string_view word);
std::vector<std::string> words_of(std::string_view text);

// What the trigger words of one prompt ask for.
struct Triggers {
  std::optional<long long> chunks, flood, big, sleep_ms, exit_code;
  bool crash = false, hang = false, error = false;
  std::string stop = "end_turn";
  std::string read_path, write_path;
  bool edit = false;
  bool diff = false;  // /diff: the edit's tool call carries a diff (ToolCallContent)
  std::string echo;  // the prompt without its trigger words
};

Triggers parse_triggers(std::string_view text);

// --- history.cpp: where the histories live --------------------------------------------------------

// A session id this agent could have made ("demo-MS-PID-N": the time in ms, our pid, a count):
// anything else is never a file name.
bool valid_session_id(std::string_view id);

class DemoAgent {
 public:
  DemoAgent(int in, int out) : in_(in), out_fd_(out) { out_.reserve(kFlushAt + 4096); }

  int run();
  void set_images(bool on) { images_ = on; }

 private:
  struct Session {
    std::string id;
    std::string cwd;
    std::string mode = "ask";    // ask: an edit asks permission first; read-only: edits are refused
    std::string model = "echo";  // echo, or shout: the echo in capitals
    int turns = 0;
    bool stored = false;  // it has a history file (a turn was remembered, or it was loaded)
    bool cancelled = false;
    std::string prompt;  // of the turn in progress
  };

  // agent.cpp
  void handle(json msg);
  void dispatch(const std::string& method, const json& id, const json& params);
  void on_initialize(const json& id, const json& params);
  bool check_cwd(const json& id, const json& params, std::string& cwd);
  void on_new(const json& id, const json& params);
  static void add_settings(json& answer, const Session& s);
  static json config_option(const Session& s);
  Session* find_session(const json& id, const json& params);
  void on_set_mode(const json& id, const json& params);
  void on_set_option(const json& id, const json& params);
  void on_close(const json& id, const json& params);
  void on_resume(const json& id, const json& params);
  void announce_commands(const std::string& sid);

  // wire.cpp
  void flush();
  void send(const json& msg);
  void respond(const json& id, json result);
  void respond_error(const json& id, int code, const std::string& message);
  void update(const std::string& sid, json u);
  void chunk(const std::string& sid, std::string_view text, std::string_view kind = "agent_message_chunk");
  bool fill(int timeout_ms);
  std::optional<json> buffered_message();
  std::optional<json> next_message(int timeout_ms);
  void poll_input(int timeout_ms);
  void triage(json msg);
  std::optional<json> request(const std::string& method, json params);

  // history.cpp
  void on_load(const json& id, const json& params, bool replay = true);
  base::UniqueFd open_state_dir();
  void warn_once(const std::string& why);
  void remember(Session& s, std::string_view prompt, std::string_view answer);

  // store.cpp
  void on_list(const json& id, const json& params);
  void prune_state_dir(int dirfd);

  // turn.cpp
  static std::string prompt_text(const json& prompt);
  bool cancelled(Session& s);
  void finish(const json& id, Session& s, const std::string& answer, std::string stop);
  void on_prompt(const json& id, const json& params);
  [[noreturn]] void exit_as_asked(long long code);
  void big_answer(const json& id, Session& s, const Triggers& t);
  static std::string echo_answer(const Session& s, const Triggers& t);
  void show_work(const Session& s, std::size_t words);
  std::string use_tools(Session& s, const Triggers& t);
  void stream_answer(Session& s, const Triggers& t, std::string_view answer);
  void flood(const json& id, Session& s, long long n);
  std::string edit(Session& s, const Triggers& t);
  std::string read(Session& s, const std::string& path);
  [[noreturn]] void crash();
  [[noreturn]] void hang();

  int in_;
  int out_fd_;
  std::string out_;
  // Input lines, split as rpc::Connection splits a bridge's output; with no length cap (SIZE_MAX
  // never trips the framer's), as the demo agent never had one.
  rpc::LineFramer framer_{std::numeric_limits<std::size_t>::max()};
  bool eof_ = false;
  std::deque<json> deferred_;
  std::map<std::string, json> responses_;  // answers to our requests, by dumped id
  std::map<std::string, Session> sessions_;
  bool fs_read_ = false, fs_write_ = false;
  bool images_ = true;  // promptCapabilities.image
  unsigned new_histories_ = 0;  // history files this process created (pruning every kPruneEvery)
  bool warned_ = false;  // the state directory's trouble has been said on stderr
  long long next_id_ = 0;
  int created_ = 0;
  std::optional<int> exit_code_;
};

}  // namespace tether::acp::demo
