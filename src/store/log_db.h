// The turn log (issue 15): one SQLite database of conversations and their turns, kept for
// `tether log`, continued sessions (`-c`, `--session`) and named sessions (`-s NAME`).
//
// LogDb is a connection to it: open() creates the file (0600, in a 0700 directory) and brings its
// schema up to date (PRAGMA user_version, ordered migrations), in WAL mode with a busy timeout so
// that several tether processes can log at once. Inserts, the queries `tether log` makes, FTS5
// search, and the name -> session bindings all live here; what a turn record holds is decided by
// the front-ends (cli/turn_log.h), which hand over plain values. Nothing here knows ACP.
//
// Durability: synchronous=NORMAL in WAL mode. A committed turn survives the tether process being
// killed (SIGKILL included); a power loss or an OS crash may lose the last few turns, never the
// database.
//
// Thread contract: thread-bound. One thread uses a LogDb (the writer thread of LogWriter, or a
// front-end's own thread for a query); other processes may use the same file at the same time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

struct sqlite3;

namespace tether::store {

// The schema version open() migrates to (PRAGMA user_version).
inline constexpr int kSchemaVersion = 1;

struct ConversationSummary {
  std::int64_t id = 0;
  std::string agent, session_id, cwd, title;
  std::int64_t created_ms = 0, updated_ms = 0;
  int turns = 0;
};

// One turn as a front-end recorded it. The JSON fields hold JSON text (already dumped, UTF-8
// checked): the store keeps them as they are and never parses them on insert.
struct TurnRecord {
  // The conversation: keyed by (agent, session_id); a turn whose session id is "" (the session
  // never opened) gets a conversation of its own.
  std::string agent;         // cli::agent_label
  std::string command;       // JSON array: the bridge command ("[]" through --connect)
  std::string session_id;    // the ACP session id
  std::string cwd;

  std::string prompt;
  std::string attachments = "[]";  // JSON array of names
  std::string answer;
  std::string thoughts;
  std::string tool_calls = "[]";   // JSON array: {id, title, kind, status, locations, diff}
  std::string plan = "null";       // JSON: the last plan's entries
  std::string permissions = "[]";  // JSON array: {tool, options, chosen}
  std::string stop_reason;         // "" when the turn failed
  std::string usage = "null";      // JSON
  std::int64_t started_ms = 0;     // Unix time in milliseconds
  std::int64_t ended_ms = 0;
  int restarts = 0;                // bridge restarts during the turn
  std::string error = "null";      // JSON: tether's error object when the turn failed
  std::string source;              // talk | prompt | batch
  std::string connect;             // the --connect server the turn went through, "" for none
  std::string batch_run;           // batch: the run's id, shared by its items ("" otherwise)
  std::string batch_item;          // batch: the item's id
  std::int64_t batch_index = -1;   // batch: the item's index in the input, -1 otherwise
};

// A turn as `tether log` lists it: the record plus where it is stored.
struct TurnRow {
  std::int64_t id = 0;            // the turn's row id
  std::int64_t conversation = 0;  // its conversation's id (`tether log show ID`)
  int seq = 0;                    // 1 for the conversation's first turn
  std::string title;              // the conversation's
  TurnRecord record;
};

// Which turns `tether log` lists, newest first.
struct TurnQuery {
  int limit = 20;
  std::string agent;          // "" = any
  std::string cwd;            // "" = any
  std::int64_t since_ms = 0;  // 0 = any time
  std::string search;         // "" = no search; else words for FTS5 (quoted here, never raw syntax)
};

class LogDb {
 public:
  // Opens (creating when absent) and migrates. A message on failure: what went wrong with which
  // path.
  static std::variant<std::unique_ptr<LogDb>, std::string> open(const std::string& path);
  ~LogDb();
  LogDb(const LogDb&) = delete;
  LogDb& operator=(const LogDb&) = delete;

  // Newest conversation (by updated_ms) of this agent in this cwd that has a session id.
  std::optional<ConversationSummary> latest_conversation(std::string_view agent, std::string_view cwd);
  // Those of this agent in this cwd that have a session id, newest first, at most `limit` (<= 0:
  // all).
  std::vector<ConversationSummary> conversations(std::string_view agent, std::string_view cwd, int limit);
  std::optional<ConversationSummary> conversation(std::int64_t id);
  // The conversation of an ACP session id (any agent; the newest when several agents share it).
  std::optional<std::int64_t> conversation_by_session(std::string_view session_id);
  // The session bound to `name` for this agent and cwd.
  std::optional<std::string> session_for_name(std::string_view agent, std::string_view cwd, std::string_view name);
  // Binds `name` to `session_id`, replacing an older binding of the name. False on a write error.
  bool bind_name(std::string_view agent, std::string_view cwd, std::string_view name, std::string_view session_id);

  // Stores one turn (and creates or updates its conversation) in one transaction. The turn's id,
  // or a message on failure.
  std::variant<std::int64_t, std::string> insert_turn(const TurnRecord& turn);
  // Stores the turns, in order, in one transaction (group commit: one WAL commit for a whole
  // queue). All or none: a message on failure, nothing when every turn was stored. The insert
  // statements are prepared on the first insert and kept with the connection.
  std::optional<std::string> insert_turns(std::span<const TurnRecord> turns);

  // Turns matching `query`, newest first. A message on failure (a search SQLite rejects).
  std::variant<std::vector<TurnRow>, std::string> turns(const TurnQuery& query);
  // All turns of one conversation, oldest first.
  std::vector<TurnRow> conversation_turns(std::int64_t conversation);

  // The last error SQLite reported on this connection.
  std::string last_error() const;

 private:
  struct Inserts;
  explicit LogDb(sqlite3* db);
  Inserts* inserts();
  std::variant<std::int64_t, std::string> insert_row(Inserts& st, const TurnRecord& turn, std::string& title);
  std::optional<std::string> store(std::span<const TurnRecord> turns, std::vector<std::int64_t>& ids);

  sqlite3* db_;
  std::unique_ptr<Inserts> inserts_;  // prepared by the first insert; finalized before db_ closes
};

// Words typed after `tether log -q` as an FTS5 query that cannot be a syntax error: each
// blank-separated word becomes a quoted string (all must match); a trailing `*` stays outside the
// quotes, a prefix search. "" when there are no words.
std::string fts_query(std::string_view words);

// $XDG_STATE_HOME/tether/logs.db, or ~/.local/state/tether/logs.db when XDG_STATE_HOME is unset,
// empty or relative (as the XDG spec says); "" when HOME is not an absolute path either.
std::string default_log_path();

}  // namespace tether::store
