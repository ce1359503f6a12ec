// The turn log's store on a real SQLite file: migrations, inserts and queries, FTS5 search, named
// sessions, the writer thread; and the pure helpers of `tether log` (search words, --since, diff
// summaries).
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "acp/session.h"
#include "cli/log_cmd.h"
#include "cli/turn_log.h"
#include "store/log_db.h"
#include "store/log_writer.h"

using namespace tether;

namespace {

// A fresh directory per test case, removed with it.
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tether-log-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { [[maybe_unused]] int rc = std::system(("rm -rf '" + path + "'").c_str()); }
};

std::unique_ptr<store::LogDb> open_ok(const std::string& path) {
  auto opened = store::LogDb::open(path);
  if (auto* err = std::get_if<std::string>(&opened)) FAIL("open: " << *err);
  return std::move(std::get<std::unique_ptr<store::LogDb>>(opened));
}

// A query on the file through a connection of its own (what the store wrote, not what it says).
std::string sql_value(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

store::TurnRecord turn(std::string session, std::string prompt, std::string answer, std::int64_t at,
                       std::string agent = "demo", std::string cwd = "/w") {
  store::TurnRecord t;
  t.agent = std::move(agent);
  t.command = R"(["tether","demo-agent"])";
  t.session_id = std::move(session);
  t.cwd = std::move(cwd);
  t.prompt = std::move(prompt);
  t.answer = std::move(answer);
  t.stop_reason = "end_turn";
  t.started_ms = at;
  t.ended_ms = at + 5;
  t.source = "prompt";
  return t;
}

std::vector<store::TurnRow> search(store::LogDb& db, std::string words) {
  store::TurnQuery q;
  q.search = std::move(words);
  auto found = db.turns(q);
  if (auto* err = std::get_if<std::string>(&found)) FAIL("search: " << *err);
  return std::get<std::vector<store::TurnRow>>(found);
}

}  // namespace

TEST_CASE("open creates the file 0600 in new 0700 directories and migrates it to the current schema") {
  TempDir dir;
  std::string path = dir.path + "/state/tether/logs.db";
  auto db = open_ok(path);
  struct stat st;
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat((dir.path + "/state/tether").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  CHECK(sql_value(path, "PRAGMA user_version") == std::to_string(store::kSchemaVersion));
  CHECK(sql_value(path, "PRAGMA journal_mode") == "wal");
  CHECK(sql_value(path, "SELECT count(*) FROM sqlite_master WHERE name IN ('conversations','turns','session_names','turns_fts')") == "4");
}

TEST_CASE("an empty file is migrated; a v1 database opens with its rows; a newer schema is refused") {
  TempDir dir;
  std::string path = dir.path + "/logs.db";
  { std::ofstream(path).flush(); }  // an empty file, as a crash right after creating it leaves
  {
    auto db = open_ok(path);
    CHECK(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s1", "hello", "hi", 1000))));
  }
  CHECK(sql_value(path, "PRAGMA user_version") == "1");
  {
    auto db = open_ok(path);  // already v1: nothing to migrate, nothing lost
    CHECK(db->conversations("demo", "/w", 0).size() == 1);
  }
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &raw) == SQLITE_OK);
    sqlite3_exec(raw, "PRAGMA user_version = 99", nullptr, nullptr, nullptr);
    sqlite3_close(raw);
  }
  auto opened = store::LogDb::open(path);
  REQUIRE(std::holds_alternative<std::string>(opened));
  CHECK(std::get<std::string>(opened).find("newer tether") != std::string::npos);
}

TEST_CASE("turns of one session make one conversation; latest and listed conversations are per agent and cwd") {
  TempDir dir;
  auto db = open_ok(dir.path + "/logs.db");
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s1", "my name is Ada", "ok", 1000))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s1", "what is my name?", "Ada", 2000))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s2", "other", "x", 3000))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s3", "elsewhere", "x", 4000, "demo", "/other"))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("", "never opened", "", 5000))));

  auto list = db->conversations("demo", "/w", 0);
  REQUIRE(list.size() == 2);  // s2, s1; not /other's, not the one without a session
  CHECK(list[0].session_id == "s2");
  CHECK(list[1].session_id == "s1");
  CHECK(list[1].turns == 2);
  CHECK(list[1].title == "my name is Ada");
  CHECK(list[1].created_ms == 1000);
  CHECK(list[1].updated_ms == 2005);
  CHECK(db->conversations("demo", "/w", 1).size() == 1);
  auto latest = db->latest_conversation("demo", "/w");
  REQUIRE(latest);
  CHECK(latest->session_id == "s2");
  CHECK_FALSE(db->latest_conversation("claude", "/w"));

  auto rows = db->conversation_turns(list[1].id);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].seq == 1);
  CHECK(rows[1].seq == 2);
  CHECK(rows[1].record.prompt == "what is my name?");
  CHECK(db->conversation_by_session("s1") == list[1].id);

  store::TurnQuery q;
  q.limit = 2;
  auto recent = std::get<std::vector<store::TurnRow>>(db->turns(q));
  REQUIRE(recent.size() == 2);
  CHECK(recent[0].record.prompt == "never opened");  // newest first
  q = {};
  q.cwd = "/other";
  CHECK(std::get<std::vector<store::TurnRow>>(db->turns(q)).size() == 1);
  q = {};
  q.since_ms = 2000;
  CHECK(std::get<std::vector<store::TurnRow>>(db->turns(q)).size() == 4);
}

TEST_CASE("full-text search over prompt, answer and title; user syntax never reaches FTS5 as syntax") {
  TempDir dir;
  auto db = open_ok(dir.path + "/logs.db");
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s1", "tell me about lighthouses", "They guide ships.", 1))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s1", "and their keepers?", "Lonely work.", 2))));
  REQUIRE(std::holds_alternative<std::int64_t>(db->insert_turn(turn("s2", "bake bread", "Use flour.", 3))));
  CHECK(search(*db, "flour").size() == 1);
  CHECK(search(*db, "ships").at(0).record.prompt == "tell me about lighthouses");
  CHECK(search(*db, "lighthouses").size() == 2);  // the second turn matches by its conversation's title
  CHECK(search(*db, "lonely work").size() == 1);
  CHECK(search(*db, "lonely bread").empty());     // all words must match
  CHECK(search(*db, "light*").size() == 2);
  for (const char* hostile : {"\"", "AND", "(", "a OR", "NEAR(", "col:x", "*", "-x", "'"})
    CHECK_MESSAGE(std::holds_alternative<std::vector<store::TurnRow>>(db->turns(store::TurnQuery{20, "", "", 0, hostile})),
                  hostile);
  CHECK(store::fts_query("a \"b\" c*") == "\"a\" \"\"\"b\"\"\" \"c\"*");
  CHECK(store::fts_query("   ").empty());
}

TEST_CASE("a name binds to one session per agent and cwd; binding it again replaces the older binding") {
  TempDir dir;
  auto db = open_ok(dir.path + "/logs.db");
  CHECK_FALSE(db->session_for_name("demo", "/w", "work"));
  CHECK(db->bind_name("demo", "/w", "work", "s1"));
  CHECK(db->session_for_name("demo", "/w", "work") == "s1");
  CHECK(db->bind_name("demo", "/w", "work", "s2"));
  CHECK(db->session_for_name("demo", "/w", "work") == "s2");
  CHECK_FALSE(db->session_for_name("demo", "/elsewhere", "work"));
  CHECK_FALSE(db->session_for_name("claude", "/w", "work"));
}

TEST_CASE("two connections write to one file at once") {
  TempDir dir;
  std::string path = dir.path + "/logs.db";
  auto a = open_ok(path);
  auto b = open_ok(path);
  for (int i = 0; i < 20; ++i) {
    REQUIRE(std::holds_alternative<std::int64_t>(a->insert_turn(turn("a", "a" + std::to_string(i), "", i))));
    REQUIRE(std::holds_alternative<std::int64_t>(b->insert_turn(turn("b", "b" + std::to_string(i), "", i))));
  }
  CHECK(sql_value(path, "SELECT count(*) FROM turns") == "40");
  CHECK(sql_value(path, "SELECT max(seq) FROM turns") == "20");
}

TEST_CASE("the writer stores every queued turn by close(); a log it cannot open is one warning") {
  TempDir dir;
  std::string path = dir.path + "/logs.db";
  {
    store::LogWriter writer(path);
    for (int i = 0; i < 50; ++i) writer.add(turn("s", "p" + std::to_string(i), "", i));
    writer.close();
    CHECK_FALSE(writer.warning());
  }
  CHECK(sql_value(path, "SELECT count(*) FROM turns") == "50");
  store::LogWriter bad("/proc/self/no/such/logs.db");
  bad.add(turn("s", "p", "", 1));
  bad.close();
  REQUIRE(bad.warning());
  CHECK(bad.warning()->find("cannot open the turn log") != std::string::npos);
}

TEST_CASE("group commit: turns queued while the writer waits for the database go in one transaction") {
  TempDir dir;
  std::string path = dir.path + "/logs.db";
  open_ok(path);  // created and migrated: the writer's own open needs no write lock
  // Another connection holds the write lock, so the writer's first transaction waits (in its busy
  // timeout) while the rest is queued behind it.
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_exec(other, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK);
  constexpr int kTurns = 200;
  store::LogWriter writer(path);
  for (int i = 0; i < kTurns; ++i) writer.add(turn("s", "p" + std::to_string(i), "a" + std::to_string(i), i));
  REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  writer.close();
  CHECK_FALSE(writer.warning());
  // The first batch is what was queued when the writer first woke (one turn or more); the rest,
  // queued while it waited, is the second. Turn by turn it would be 200.
  CHECK(writer.batches() <= 2);
  CHECK(sql_value(path, "SELECT count(*) FROM turns") == std::to_string(kTurns));
  CHECK(sql_value(path, "SELECT group_concat(seq) = group_concat(n) FROM (SELECT seq, row_number() OVER "
                        "(ORDER BY id) AS n FROM turns ORDER BY id)") == "1");
  CHECK(sql_value(path, "SELECT prompt FROM turns ORDER BY id DESC LIMIT 1") == "p199");
  auto db = open_ok(path);
  CHECK(search(*db, "a150").size() == 1);
}

TEST_CASE("a batch the database refuses is stored turn by turn: one bad turn costs that turn only") {
  TempDir dir;
  std::string path = dir.path + "/logs.db";
  open_ok(path);
  sqlite3* other = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &other, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  // A trigger that refuses one prompt: the batch's transaction fails on it.
  REQUIRE(sqlite3_exec(other,
                       "CREATE TRIGGER refuse BEFORE INSERT ON turns WHEN NEW.prompt = 'bad' "
                       "BEGIN SELECT RAISE(ABORT, 'refused'); END; BEGIN IMMEDIATE",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  store::LogWriter writer(path);
  for (int i = 0; i < 10; ++i) writer.add(turn("s", i == 5 ? "bad" : "p" + std::to_string(i), "", i));
  REQUIRE(sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(other);
  writer.close();
  REQUIRE(writer.warning());
  CHECK(writer.warning()->find("refused") != std::string::npos);
  CHECK(sql_value(path, "SELECT count(*) FROM turns") == "9");
}

TEST_CASE("the recorder keeps text as it came: invalid UTF-8 replaced, a long answer cut on a character") {
  // The last case of this binary to log through cli::close_turn_log, which closes the process's
  // log for good.
  TempDir dir;
  cli::CommonOptions o;
  o.log = dir.path + "/logs.db";
  o.quiet = true;
  o.bridge = {"tether", "demo-agent"};
  acp::SessionState state;
  state.session_id = "s-utf8";
  cli::TurnRecorder rec(o, "prompt", "bad \xff byte, caf\xc3\xa9", state);
  acp::TurnEvent chunk;
  chunk.kind = acp::TurnEvent::Kind::update;
  chunk.update.kind = acp::Update::Kind::agent_message;
  // 5-byte chunks: 4 MiB is 4 (mod 5), so the cap falls between the two bytes of an é.
  chunk.update.text = "aaa\xc3\xa9";
  for (int i = 0; i < 840000; ++i) rec.see(chunk);
  acp::TurnEvent done;
  done.kind = acp::TurnEvent::Kind::completed;
  done.stop_reason = "end_turn";
  rec.see(done);
  rec.finish(state);
  cli::close_turn_log();
  std::string path = o.log;
  CHECK(sql_value(path, "SELECT prompt FROM turns") == "bad \xef\xbf\xbd byte, caf\xc3\xa9");
  std::string answer = sql_value(path, "SELECT answer FROM turns");
  const std::string note = "\n[… cut: the turn log keeps 4 MiB of it]";
  REQUIRE(answer.size() > note.size());
  CHECK(answer.substr(answer.size() - note.size()) == note);
  // Whole characters only: the é the cap fell into is left out, not half kept (nor replaced).
  std::string kept = answer.substr(0, answer.size() - note.size());
  CHECK(kept.size() == (std::size_t{4} << 20) - 1);
  CHECK(kept.substr(kept.size() - 5) == "\xc3\xa9" "aaa");
  CHECK(sql_value(path, "SELECT answer = CAST(CAST(answer AS BLOB) AS TEXT) FROM turns") == "1");
}

TEST_CASE("--since: a time back or a date") {
  const std::int64_t now = 1'800'000'000'000;
  CHECK(cli::parse_since("2h", now) == now - 2 * 3600 * 1000);
  CHECK(cli::parse_since("3d", now) == now - 3 * 86400 * std::int64_t{1000});
  CHECK(cli::parse_since("30m", now) == now - 30 * 60 * 1000);
  CHECK(cli::parse_since("2026-12-01Z", now) == std::int64_t{1796083200} * 1000);
  CHECK(cli::parse_since("2026-12-01T10:00Z", now) == (std::int64_t{1796083200} + 36000) * 1000);
  CHECK(cli::parse_since("2026-12-01T10:00:30Z", now) == (std::int64_t{1796083200} + 36030) * 1000);
  CHECK_FALSE(cli::parse_since("yesterday", now));
  CHECK_FALSE(cli::parse_since("2h30", now));
  CHECK_FALSE(cli::parse_since("", now));
}

TEST_CASE("a diff's summary counts the lines only in the new text and only in the old") {
  CHECK(cli::diff_summary("a.c", "x\ny\nz\n", "x\nY\nz\nw\n") == "+2 -1 a.c");
  CHECK(cli::diff_summary("new.txt", "", "one\ntwo") == "+2 -0 new.txt");
  CHECK(cli::diff_summary("gone.txt", "one\n", "") == "+0 -1 gone.txt");
}

TEST_CASE("the default log follows XDG_STATE_HOME, else HOME; nowhere without either") {
  std::string saved_state = std::getenv("XDG_STATE_HOME") ? std::getenv("XDG_STATE_HOME") : "";
  std::string saved_home = std::getenv("HOME") ? std::getenv("HOME") : "";
  ::setenv("XDG_STATE_HOME", "/s", 1);
  ::setenv("HOME", "/h", 1);
  CHECK(store::default_log_path() == "/s/tether/logs.db");
  ::setenv("XDG_STATE_HOME", "relative", 1);  // the XDG spec: a relative path is ignored
  CHECK(store::default_log_path() == "/h/.local/state/tether/logs.db");
  ::unsetenv("XDG_STATE_HOME");
  ::unsetenv("HOME");
  CHECK(store::default_log_path().empty());
  if (!saved_state.empty()) ::setenv("XDG_STATE_HOME", saved_state.c_str(), 1);
  if (!saved_home.empty()) ::setenv("HOME", saved_home.c_str(), 1);
}
