// See log_db.h. The schema, its migrations, and every statement the turn log runs.
#include "store/log_db.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>

#include "store/sqlite.h"

namespace tether::store {
namespace {

// Migration i brings the schema from version i to i + 1, in order, each in the transaction that
// also sets user_version: a database is always at one whole version. Never edit a migration that
// has shipped; add one (and raise kSchemaVersion).
//
// Conversations are keyed by (agent, session_id) when the session opened; a turn whose session
// never opened ("") gets a conversation of its own. turns_fts is contentless (content=''): the
// text lives in turns and conversations, the index maps words to a turn's rowid; rows are never
// deleted, which is all a contentless table cannot do.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE conversations (
  id INTEGER PRIMARY KEY,
  agent TEXT NOT NULL,
  command TEXT NOT NULL DEFAULT '[]',
  session_id TEXT NOT NULL DEFAULT '',
  cwd TEXT NOT NULL DEFAULT '',
  title TEXT NOT NULL DEFAULT '',
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  turns INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX conversations_by_session ON conversations (agent, session_id) WHERE session_id <> '';
CREATE INDEX conversations_by_place ON conversations (agent, cwd, updated_ms);
CREATE TABLE turns (
  id INTEGER PRIMARY KEY,
  conversation INTEGER NOT NULL REFERENCES conversations (id),
  seq INTEGER NOT NULL,
  prompt TEXT NOT NULL DEFAULT '',
  attachments TEXT NOT NULL DEFAULT '[]',
  answer TEXT NOT NULL DEFAULT '',
  thoughts TEXT NOT NULL DEFAULT '',
  tool_calls TEXT NOT NULL DEFAULT '[]',
  plan TEXT NOT NULL DEFAULT 'null',
  permissions TEXT NOT NULL DEFAULT '[]',
  stop_reason TEXT NOT NULL DEFAULT '',
  usage TEXT NOT NULL DEFAULT 'null',
  started_ms INTEGER NOT NULL,
  ended_ms INTEGER NOT NULL,
  elapsed_ms INTEGER NOT NULL,
  restarts INTEGER NOT NULL DEFAULT 0,
  error TEXT NOT NULL DEFAULT 'null',
  source TEXT NOT NULL DEFAULT '',
  connect TEXT NOT NULL DEFAULT '',
  batch_run TEXT NOT NULL DEFAULT '',
  batch_item TEXT NOT NULL DEFAULT '',
  batch_index INTEGER NOT NULL DEFAULT -1
);
CREATE INDEX turns_by_time ON turns (started_ms);
CREATE INDEX turns_by_conversation ON turns (conversation, seq);
CREATE INDEX turns_by_batch_run ON turns (batch_run) WHERE batch_run <> '';
CREATE TABLE session_names (
  agent TEXT NOT NULL,
  cwd TEXT NOT NULL,
  name TEXT NOT NULL,
  session_id TEXT NOT NULL,
  bound_ms INTEGER NOT NULL,
  PRIMARY KEY (agent, cwd, name)
);
CREATE VIRTUAL TABLE turns_fts USING fts5 (prompt, answer, title, content = '');
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration per schema version");

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// mkdir -p of the parents of `path`, 0700 for the ones it creates (the log is private; existing
// directories are the user's to arrange and are used as they are).
void make_parent_dirs(const std::string& path) {
  for (std::size_t slash = path.find('/', 1); slash != std::string::npos; slash = path.find('/', slash + 1))
    ::mkdir(path.substr(0, slash).c_str(), 0700);
}

// Creates the file 0600 when absent, so that SQLite (which would use 0644) never makes it, and
// its -wal and -shm files (which copy the database's mode) are private too.
std::optional<std::string> create_file(const std::string& path) {
  make_parent_dirs(path);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
  if (fd < 0) return std::string(strerror(errno));
  ::close(fd);
  return std::nullopt;
}

constexpr int kWalPages = 256;

// sqlite3_wal_hook: after each commit, with the WAL's length in pages.
int truncate_wal(void*, sqlite3* db, const char* name, int pages) {
  if (pages >= kWalPages) sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_TRUNCATE, nullptr, nullptr);
  return SQLITE_OK;
}

int user_version(sqlite3* db) {
  Statement st(db, "PRAGMA user_version");
  return st.step() == Statement::Step::row ? static_cast<int>(st.integer(0)) : -1;
}

// Brings the schema to kSchemaVersion. Two processes may open a new file at once: the version is
// read again inside the write transaction, so each migration runs exactly once.
std::optional<std::string> migrate(sqlite3* db) {
  int version = user_version(db);
  if (version == kSchemaVersion) return std::nullopt;
  Transaction tx(db);
  if (!tx.began()) return std::string(sqlite3_errmsg(db));
  version = user_version(db);
  if (version < 0) return std::string(sqlite3_errmsg(db));
  if (version > kSchemaVersion)
    return "written by a newer tether (schema " + std::to_string(version) + "; this one knows up to " +
           std::to_string(kSchemaVersion) + "): use that tether, or --log another file";
  for (int v = version; v < kSchemaVersion; ++v) {
    if (!exec(db, kMigrations[v])) return "migration to schema " + std::to_string(v + 1) + ": " + sqlite3_errmsg(db);
  }
  if (!exec(db, ("PRAGMA user_version = " + std::to_string(kSchemaVersion)).c_str()) || !tx.commit())
    return std::string(sqlite3_errmsg(db));
  return std::nullopt;
}

// The conversation's title: the first prompt's first line, blanks squeezed, cut at about 80
// bytes on a UTF-8 character boundary.
std::string make_title(std::string_view prompt) {
  constexpr std::size_t kMax = 80;
  std::string out;
  bool blank = false;
  for (char ch : prompt) {
    if (ch == '\n' && !out.empty()) break;
    if (ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n') {
      blank = !out.empty();
      continue;
    }
    if (blank) out += ' ';
    blank = false;
    out += ch;
    if (out.size() >= kMax) {
      while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0x80) out.pop_back();
      if (!out.empty() && (static_cast<unsigned char>(out.back()) & 0x80)) out.pop_back();
      out += "…";
      break;
    }
  }
  return out;
}

const char* const kConversationColumns = "id, agent, session_id, cwd, title, created_ms, updated_ms, turns";

ConversationSummary read_conversation(const Statement& st) {
  ConversationSummary c;
  c.id = st.integer(0);
  c.agent = st.text(1);
  c.session_id = st.text(2);
  c.cwd = st.text(3);
  c.title = st.text(4);
  c.created_ms = st.integer(5);
  c.updated_ms = st.integer(6);
  c.turns = static_cast<int>(st.integer(7));
  return c;
}

const char* const kTurnSelect =
    "SELECT t.id, t.conversation, t.seq, c.title, c.agent, c.command, c.session_id, c.cwd, t.prompt, "
    "t.attachments, t.answer, t.thoughts, t.tool_calls, t.plan, t.permissions, t.stop_reason, t.usage, "
    "t.started_ms, t.ended_ms, t.restarts, t.error, t.source, t.connect, t.batch_run, t.batch_item, "
    "t.batch_index FROM turns t JOIN conversations c ON c.id = t.conversation ";

TurnRow read_turn(const Statement& st) {
  TurnRow row;
  row.id = st.integer(0);
  row.conversation = st.integer(1);
  row.seq = static_cast<int>(st.integer(2));
  row.title = st.text(3);
  TurnRecord& r = row.record;
  r.agent = st.text(4);
  r.command = st.text(5);
  r.session_id = st.text(6);
  r.cwd = st.text(7);
  r.prompt = st.text(8);
  r.attachments = st.text(9);
  r.answer = st.text(10);
  r.thoughts = st.text(11);
  r.tool_calls = st.text(12);
  r.plan = st.text(13);
  r.permissions = st.text(14);
  r.stop_reason = st.text(15);
  r.usage = st.text(16);
  r.started_ms = st.integer(17);
  r.ended_ms = st.integer(18);
  r.restarts = static_cast<int>(st.integer(19));
  r.error = st.text(20);
  r.source = st.text(21);
  r.connect = st.text(22);
  r.batch_run = st.text(23);
  r.batch_item = st.text(24);
  r.batch_index = st.integer(25);
  return row;
}

}  // namespace

std::string fts_query(std::string_view words) {
  std::string out;
  std::size_t i = 0;
  while (i < words.size()) {
    while (i < words.size() && (words[i] == ' ' || words[i] == '\t' || words[i] == '\n')) ++i;
    std::size_t start = i;
    while (i < words.size() && words[i] != ' ' && words[i] != '\t' && words[i] != '\n') ++i;
    std::string_view word = words.substr(start, i - start);
    if (word.empty()) continue;
    bool prefix = word.size() > 1 && word.back() == '*';
    if (prefix) word.remove_suffix(1);
    if (!out.empty()) out += ' ';
    out += '"';
    for (char ch : word) {
      if (ch == '"') out += '"';
      out += ch;
    }
    out += '"';
    if (prefix) out += '*';
  }
  return out;
}

std::variant<std::unique_ptr<LogDb>, std::string> LogDb::open(const std::string& path) {
  if (auto err = create_file(path)) return path + ": " + *err;
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<LogDb> db(new LogDb(raw));
  if (rc != SQLITE_OK) return path + ": " + (raw ? sqlite3_errmsg(raw) : "cannot open");
  // Several tether processes may write at once: WAL lets readers go on, and a writer waits for
  // another's short transaction instead of failing.
  sqlite3_busy_timeout(raw, 5000);
  // Switching a new file to WAL, or reading the mode while another process recovers the WAL or
  // checkpoints it, can answer SQLITE_BUSY without calling the busy handler: that is retried for as
  // long as the busy timeout (two tether processes started together both get their log).
  for (auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);;) {
    Statement wal(raw, "PRAGMA journal_mode = WAL");
    if (wal.step() == Statement::Step::row && wal.text(0) == "wal") break;
    const int code = sqlite3_errcode(raw) & 0xff;
    if ((code != SQLITE_BUSY && code != SQLITE_LOCKED) || std::chrono::steady_clock::now() > give_up)
      return path + ": cannot use WAL mode: " + sqlite3_errmsg(raw);
    sqlite3_sleep(10);
  }
  // NORMAL: in WAL mode a commit survives the process dying at any point (SIGKILL included); only
  // an OS crash or a power loss may take back the last transactions (man tether, LOG).
  if (!exec(raw, "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON"))
    return path + ": " + sqlite3_errmsg(raw);
  // Checkpoints: at the exit of every `tether prompt`, the default (the last connection to close
  // copies the WAL into the database: two fdatasyncs, 10-20 ms on a busy disk) is too dear. The WAL
  // is left on close instead, and truncated after a commit once it holds kWalPages pages (~20
  // turns). Truncated, not only copied back (SQLite's autocheckpoint): the next process's first
  // connection reads the whole WAL to rebuild its index and forgets what was copied, so a WAL left
  // long makes every later commit copy all of it again.
  sqlite3_db_config(raw, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  sqlite3_wal_hook(raw, truncate_wal, nullptr);
  if (auto err = migrate(raw)) return path + ": " + *err;
  return db;
}

std::string LogDb::last_error() const { return sqlite3_errmsg(db_); }

std::optional<ConversationSummary> LogDb::latest_conversation(std::string_view agent, std::string_view cwd) {
  auto list = conversations(agent, cwd, 1);
  if (list.empty()) return std::nullopt;
  return list.front();
}

std::vector<ConversationSummary> LogDb::conversations(std::string_view agent, std::string_view cwd, int limit) {
  // A read while another connection recovers the WAL (this process's own writer thread, opening
  // the log as `-c` looks in it) can answer SQLITE_BUSY without calling the busy handler: it is
  // tried again, as the WAL switch in open() is, rather than taken for "no conversation".
  for (auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);;) {
    Statement st(db_, std::string("SELECT ") + kConversationColumns +
                          " FROM conversations WHERE agent = ?1 AND cwd = ?2 AND session_id <> '' "
                          "ORDER BY updated_ms DESC, id DESC LIMIT ?3");
    st.bind(agent).bind(cwd).bind(static_cast<std::int64_t>(limit > 0 ? limit : -1));
    std::vector<ConversationSummary> out;
    Statement::Step step;
    while ((step = st.step()) == Statement::Step::row) out.push_back(read_conversation(st));
    const int code = sqlite3_errcode(db_) & 0xff;
    if (step != Statement::Step::error || (code != SQLITE_BUSY && code != SQLITE_LOCKED) ||
        std::chrono::steady_clock::now() > give_up)
      return out;
    sqlite3_sleep(10);
  }
}

std::optional<ConversationSummary> LogDb::conversation(std::int64_t id) {
  Statement st(db_, std::string("SELECT ") + kConversationColumns + " FROM conversations WHERE id = ?1");
  st.bind(id);
  if (st.step() != Statement::Step::row) return std::nullopt;
  return read_conversation(st);
}

std::optional<std::int64_t> LogDb::conversation_by_session(std::string_view session_id) {
  Statement st(db_, "SELECT id FROM conversations WHERE session_id = ?1 ORDER BY updated_ms DESC LIMIT 1");
  st.bind(session_id);
  if (st.step() != Statement::Step::row) return std::nullopt;
  return st.integer(0);
}

std::optional<std::string> LogDb::session_for_name(std::string_view agent, std::string_view cwd,
                                                   std::string_view name) {
  Statement st(db_, "SELECT session_id FROM session_names WHERE agent = ?1 AND cwd = ?2 AND name = ?3");
  st.bind(agent).bind(cwd).bind(name);
  if (st.step() != Statement::Step::row) return std::nullopt;
  return st.text(0);
}

bool LogDb::bind_name(std::string_view agent, std::string_view cwd, std::string_view name,
                      std::string_view session_id) {
  Statement st(db_,
               "INSERT OR REPLACE INTO session_names (agent, cwd, name, session_id, bound_ms) "
               "VALUES (?1, ?2, ?3, ?4, ?5)");
  return st.bind(agent).bind(cwd).bind(name).bind(session_id).bind(now_ms()).run();
}

// The statements an insert runs, prepared once per connection: parsing and planning them again
// for every turn cost as much as storing it.
struct LogDb::Inserts {
  explicit Inserts(sqlite3* db)
      : find(db, "SELECT id, title FROM conversations WHERE agent = ?1 AND session_id = ?2"),
        // No RETURNING here: it buffers its rows in an ephemeral table, opened and closed per run,
        // which made this UPDATE cost five times the INSERT into turns.
        touch(db, "UPDATE conversations SET updated_ms = MAX(updated_ms, ?1), turns = turns + 1 WHERE id = ?2"),
        conversation(db,
                     "INSERT INTO conversations (agent, command, session_id, cwd, title, created_ms, updated_ms, "
                     "turns) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)"),
        turn(db,
             "INSERT INTO turns (conversation, seq, prompt, attachments, answer, thoughts, tool_calls, plan, "
             "permissions, stop_reason, usage, started_ms, ended_ms, elapsed_ms, restarts, error, source, "
             "connect, batch_run, batch_item, batch_index) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM "
             "turns WHERE conversation = ?1), ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
             "?16, ?17, ?18, ?19, ?20)"),
        fts(db, "INSERT INTO turns_fts (rowid, prompt, answer, title) VALUES (?1, ?2, ?3, ?4)") {}
  bool ok() const { return find.ok() && touch.ok() && conversation.ok() && turn.ok() && fts.ok(); }
  // After each turn, failed or not: a kept statement must not hold the record's text (bind_ref)
  // nor stay mid-run into the COMMIT.
  void reset() {
    for (Statement* st : {&find, &touch, &conversation, &turn, &fts}) st->reset();
  }
  Statement find, touch, conversation, turn, fts;
};

LogDb::LogDb(sqlite3* db) : db_(db) {}

LogDb::~LogDb() {
  inserts_.reset();  // finalized before the connection they belong to
  sqlite3_close_v2(db_);
}

LogDb::Inserts* LogDb::inserts() {
  if (!inserts_) {
    auto st = std::make_unique<Inserts>(db_);
    if (!st->ok()) return nullptr;
    inserts_ = std::move(st);
  }
  return inserts_.get();
}

// One turn's rows in conversations and turns, inside the caller's transaction; its full-text
// row comes later (store()). The record's text is bound by reference: it outlives the statements'
// runs, which st.reset() ends. `title` is set to the conversation's title.
std::variant<std::int64_t, std::string> LogDb::insert_row(Inserts& st, const TurnRecord& t, std::string& title) {
  struct ResetAfter {
    Inserts& st;
    ~ResetAfter() { st.reset(); }
  } reset_after{st};
  std::int64_t conversation = 0;
  if (!t.session_id.empty()) {
    st.find.bind_ref(t.agent).bind_ref(t.session_id);
    if (st.find.step() == Statement::Step::row) {
      conversation = st.find.integer(0);
      title = st.find.text(1);
    }
  }
  if (conversation) {
    if (!st.touch.bind(t.ended_ms).bind(conversation).run()) return last_error();
  } else {
    title = make_title(t.prompt);
    if (!st.conversation.bind_ref(t.agent).bind_ref(t.command).bind_ref(t.session_id).bind_ref(t.cwd)
             .bind_ref(title).bind(t.started_ms).bind(t.ended_ms).run())
      return last_error();
    conversation = sqlite3_last_insert_rowid(db_);
  }
  Statement& ins = st.turn;
  ins.bind(conversation).bind_ref(t.prompt).bind_ref(t.attachments).bind_ref(t.answer).bind_ref(t.thoughts);
  ins.bind_ref(t.tool_calls).bind_ref(t.plan).bind_ref(t.permissions).bind_ref(t.stop_reason).bind_ref(t.usage);
  ins.bind(t.started_ms).bind(t.ended_ms).bind(t.ended_ms - t.started_ms).bind(t.restarts).bind_ref(t.error);
  ins.bind_ref(t.source).bind_ref(t.connect).bind_ref(t.batch_run).bind_ref(t.batch_item).bind(t.batch_index);
  if (!ins.run()) return last_error();
  return sqlite3_last_insert_rowid(db_);
}

// The turns in one transaction: first every row of conversations and turns, then every full-text
// row. In that order because each statement that opens a statement savepoint (the UPDATE, the
// INSERT with its subquery) makes FTS5, once it is part of the transaction, flush what it holds
// into a new segment: interleaved, a batch cost one segment and its merges per turn (half of the
// writer's time); grouped, one per batch.
std::optional<std::string> LogDb::store(std::span<const TurnRecord> turns, std::vector<std::int64_t>& ids) {
  Inserts* st = inserts();
  if (!st) return last_error();
  Transaction tx(db_);
  if (!tx.began()) return last_error();
  std::vector<std::string> titles(turns.size());
  ids.clear();
  for (std::size_t i = 0; i < turns.size(); ++i) {
    auto id = insert_row(*st, turns[i], titles[i]);
    if (auto* err = std::get_if<std::string>(&id)) return *err;
    ids.push_back(std::get<std::int64_t>(id));
  }
  for (std::size_t i = 0; i < turns.size(); ++i) {
    const TurnRecord& t = turns[i];
    bool ok = st->fts.bind(ids[i]).bind_ref(t.prompt).bind_ref(t.answer).bind_ref(titles[i]).run();
    st->fts.reset();
    if (!ok) return last_error();
  }
  if (!tx.commit()) return last_error();
  return std::nullopt;
}

std::variant<std::int64_t, std::string> LogDb::insert_turn(const TurnRecord& t) {
  std::vector<std::int64_t> ids;
  if (auto err = store({&t, 1}, ids)) return *err;
  return ids.front();
}

std::optional<std::string> LogDb::insert_turns(std::span<const TurnRecord> turns) {
  std::vector<std::int64_t> ids;
  return store(turns, ids);
}

std::variant<std::vector<TurnRow>, std::string> LogDb::turns(const TurnQuery& q) {
  std::string match = fts_query(q.search);
  if (!q.search.empty() && match.empty()) return std::string("nothing to search for: give words after -q");
  Statement st(db_, std::string(kTurnSelect) +
                        "WHERE (?1 = '' OR c.agent = ?1) AND (?2 = '' OR c.cwd = ?2) AND t.started_ms >= ?3 "
                        "AND (?4 = '' OR t.id IN (SELECT rowid FROM turns_fts WHERE turns_fts MATCH ?4)) "
                        "ORDER BY t.started_ms DESC, t.id DESC LIMIT ?5");
  if (!st.ok()) return last_error();
  st.bind(q.agent).bind(q.cwd).bind(q.since_ms).bind(match).bind(static_cast<std::int64_t>(q.limit > 0 ? q.limit : -1));
  std::vector<TurnRow> out;
  for (;;) {
    auto step = st.step();
    if (step == Statement::Step::done) break;
    if (step == Statement::Step::error) return last_error();
    out.push_back(read_turn(st));
  }
  return out;
}

std::vector<TurnRow> LogDb::conversation_turns(std::int64_t conversation) {
  Statement st(db_, std::string(kTurnSelect) + "WHERE t.conversation = ?1 ORDER BY t.seq");
  st.bind(conversation);
  std::vector<TurnRow> out;
  while (st.step() == Statement::Step::row) out.push_back(read_turn(st));
  return out;
}

std::string default_log_path() {
  if (const char* x = std::getenv("XDG_STATE_HOME"); x && x[0] == '/') return std::string(x) + "/tether/logs.db";
  const char* home = std::getenv("HOME");
  if (!home || home[0] != '/') return {};  // nowhere that is the user's: no log rather than one in /
  return std::string(home) + "/.local/state/tether/logs.db";
}

}  // namespace tether::store
