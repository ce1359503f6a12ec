// The turn log as a user meets it: prompt, talk and batch against the demo agent write it, and
// `tether log` reads it back (list, -q, show, path, --json); a SIGKILL right after a turn never
// corrupts it; two tethers log at once. Every test logs to a file of its own (--log or
// TETHER_LOG), never the user's.
#include <doctest/doctest.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstdlib>
#include <set>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "support/run.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::RunResult;
using tether::test::tether_bin;

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tether-log-e2e-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { [[maybe_unused]] int rc = std::system(("rm -rf '" + path + "'").c_str()); }
  std::string log() const { return path + "/logs.db"; }
};

RunResult run_tether(std::vector<std::string> args, const std::string& log, std::string stdin_text = {}) {
  std::vector<std::string> argv{tether_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  RunOptions o;
  o.env = {"TETHER_LOG=" + log};
  o.stdin_text = std::move(stdin_text);
  return run(argv, o);
}

std::vector<json> json_lines(const RunResult& r) {
  std::vector<json> out;
  for (const auto& line : r.out_lines()) {
    json j = json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << line);
    out.push_back(std::move(j));
  }
  return out;
}

std::string sql_value(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE_MESSAGE(sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK, sqlite3_errmsg(db));
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
    out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
  sqlite3_finalize(st);
  sqlite3_close(db);
  return out;
}

}  // namespace

TEST_CASE("two prompts, then tether log --json lists both; -q finds the right one; log show renders it") {
  TempDir dir;
  REQUIRE(run_tether({"prompt", "tell me about lighthouses"}, dir.log()).exit_code == 0);
  REQUIRE(run_tether({"prompt", "my name is Ada"}, dir.log()).exit_code == 0);

  auto listed = run_tether({"log", "--json"}, dir.log());
  CHECK(listed.exit_code == 0);
  char here[PATH_MAX];
  REQUIRE(::realpath(".", here));
  std::string cwd = here;
  auto turns = json_lines(listed);
  REQUIRE(turns.size() == 2);
  CHECK(turns[0]["prompt"] == "tell me about lighthouses");  // oldest first
  CHECK(turns[1]["prompt"] == "my name is Ada");
  for (const auto& t : turns) {
    CHECK(t["agent"] == "demo");
    CHECK(t["cwd"] == cwd);
    CHECK(t["answer"].get<std::string>().find("Echo: " + t["prompt"].get<std::string>()) == 0);
    CHECK(t["stopReason"] == "end_turn");
    CHECK(t["source"] == "prompt");
    CHECK(t["sessionId"].get<std::string>() != "");
    CHECK(t["startedMs"].get<std::int64_t>() > 0);
    CHECK(t["elapsedMs"].get<std::int64_t>() >= 0);
    CHECK(t["toolCalls"].size() == 1);
    CHECK(t["usage"]["used"].get<std::int64_t>() > 0);
  }

  auto found = json_lines(run_tether({"log", "-q", "ada", "--json"}, dir.log()));
  REQUIRE(found.size() == 1);
  CHECK(found[0]["prompt"] == "my name is Ada");
  CHECK(json_lines(run_tether({"log", "-q", "lighthouse*", "--json"}, dir.log())).size() == 1);
  auto odd = run_tether({"log", "-q", "\"", "AND", "(", "--json"}, dir.log());  // FTS5 syntax is only words here
  CHECK(odd.exit_code == 0);
  CHECK(odd.out.empty());

  auto shown = run_tether({"log", "show"}, dir.log());  // the latest conversation
  CHECK(shown.exit_code == 0);
  CHECK(shown.out.find("> my name is Ada") != std::string::npos);
  CHECK(shown.out.find("Echo: my name is Ada") != std::string::npos);
  CHECK(shown.out.find("tool: Count words") != std::string::npos);
  auto by_id = json_lines(run_tether({"log", "show", std::to_string(turns[0]["conversation"].get<int>()), "--json"}, dir.log()));
  REQUIRE(by_id.size() == 1);
  CHECK(by_id[0]["turns"].size() == 1);
  CHECK(by_id[0]["turns"][0]["prompt"] == "tell me about lighthouses");
  CHECK(run_tether({"log", "show", "no-such-session"}, dir.log()).exit_code == 65);

  auto path = json_lines(run_tether({"log", "path", "--json"}, dir.log()));
  REQUIRE(path.size() == 1);
  CHECK(path[0]["path"] == dir.log());
}

TEST_CASE("an absent log is no turns logged yet; --no-log logs nothing; an unwritable log is one warning") {
  TempDir dir;
  auto empty = run_tether({"log"}, dir.log());
  CHECK(empty.exit_code == 0);
  CHECK(empty.err.find("no turns logged yet") != std::string::npos);
  CHECK(::access(dir.log().c_str(), F_OK) != 0);  // reading never creates it

  CHECK(run_tether({"prompt", "--no-log", "hello"}, dir.log()).exit_code == 0);
  CHECK(::access(dir.log().c_str(), F_OK) != 0);

  auto bad = run_tether({"prompt", "--log", "/proc/self/none/logs.db", "hello"}, dir.log());
  CHECK(bad.exit_code == 0);
  CHECK(bad.out.find("Echo: hello") == 0);
  CHECK(bad.err.find("tether: warning: cannot open the turn log") != std::string::npos);
  auto quiet = run_tether({"prompt", "-q", "--log", "/proc/self/none/logs.db", "hello"}, dir.log());
  CHECK(quiet.exit_code == 0);
  CHECK(quiet.err.empty());
}

TEST_CASE("talk's turns make one conversation; batch items are linked to their run") {
  TempDir dir;
  REQUIRE(run_tether({"talk"}, dir.log(), "first line\nsecond line\n").exit_code == 0);
  auto talked = json_lines(run_tether({"log", "--json"}, dir.log()));
  REQUIRE(talked.size() == 2);
  CHECK(talked[0]["conversation"] == talked[1]["conversation"]);
  CHECK(talked[1]["seq"] == 2);
  CHECK(talked[1]["source"] == "talk");
  CHECK(talked[1]["answer"].get<std::string>().find("turn 2 of this session") != std::string::npos);

  REQUIRE(run_tether({"batch"}, dir.log(), "{\"id\":\"a\",\"prompt\":\"one\"}\n{\"id\":7,\"prompt\":\"two\"}\n").exit_code == 0);
  auto batched = json_lines(run_tether({"log", "--json", "-n", "2"}, dir.log()));
  REQUIRE(batched.size() == 2);
  CHECK(batched[0]["source"] == "batch");
  CHECK(batched[0]["batch"]["run"] == batched[1]["batch"]["run"]);
  std::set<std::string> items{batched[0]["batch"]["item"].get<std::string>(), batched[1]["batch"]["item"].get<std::string>()};
  CHECK(items == std::set<std::string>{"a", "7"});
}

TEST_CASE("SIGKILL right after a turn loses at most that turn and never corrupts the log") {
  TempDir dir;
  REQUIRE(run_tether({"prompt", "the first turn"}, dir.log()).exit_code == 0);
  for (int i = 0; i < 3; ++i) {
    RunOptions o;
    o.env = {"TETHER_LOG=" + dir.log()};
    // The answer is written once the turn has ended (stdout is a pipe): the record is queued, or
    // being written, when the kill lands.
    o.on_output = [](pid_t pid, const std::string& out, const std::string&) {
      if (out.find("Echo:") != std::string::npos) ::kill(pid, SIGKILL);
    };
    auto killed = run({tether_bin(), "prompt", "killed turn " + std::to_string(i)}, o);
    CHECK(killed.signal == SIGKILL);
  }
  CHECK(sql_value(dir.log(), "PRAGMA integrity_check") == "ok");
  CHECK(sql_value(dir.log(), "SELECT prompt FROM turns ORDER BY id LIMIT 1") == "the first turn");
  auto listed = run_tether({"log", "--json"}, dir.log());
  CHECK(listed.exit_code == 0);
  CHECK(json_lines(listed).size() >= 1);
}

TEST_CASE("two tethers logging at once both succeed") {
  TempDir dir;
  RunResult a, b;
  auto many = [&](RunResult& r, const char* word) {
    r = run_tether({"prompt", "--repeat", "15", word}, dir.log());
  };
  std::thread ta(many, std::ref(a), "alpha");
  std::thread tb(many, std::ref(b), "beta");
  ta.join();
  tb.join();
  CHECK(a.exit_code == 0);
  CHECK(b.exit_code == 0);
  CHECK(a.err.find("warning") == std::string::npos);
  CHECK(b.err.find("warning") == std::string::npos);
  CHECK(sql_value(dir.log(), "SELECT count(*) FROM turns") == "30");
  CHECK(sql_value(dir.log(), "SELECT count(*) FROM conversations") == "2");
  CHECK(sql_value(dir.log(), "PRAGMA integrity_check") == "ok");
}
