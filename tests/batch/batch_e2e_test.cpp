// `tether batch` as a user runs it: the built binary, the fake ACP agent (tests/fakes, mode batch:
// behaviours chosen by words in each prompt) and the demo agent, real pipes, real signals.
#include <doctest/doctest.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "pty_session.h"
#include "support/run.h"
#include "support/sanitizers.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::Pty;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::RunResult;

namespace {

std::string env_or_fail(const char* name) {
  const char* v = std::getenv(name);
  REQUIRE_MESSAGE(v, name << " is not set (run through meson test)");
  return v;
}

// A fresh directory for the fake agent's once-markers and logs.
struct Scratch {
  std::string dir;
  Scratch() {
    char tmpl[] = "/tmp/tether-batch-XXXXXX";
    REQUIRE(::mkdtemp(tmpl));
    dir = tmpl;
  }
  ~Scratch() { [[maybe_unused]] int rc = std::system(("rm -rf '" + dir + "'").c_str()); }
  std::string path(const std::string& name) const { return dir + "/" + name; }
};

std::vector<std::string> batch_argv(std::vector<std::string> args, std::vector<std::string> bridge = {}) {
  std::vector<std::string> argv{env_or_fail("TETHER_BIN"), "batch", "--restart-delay", "0.05"};
  argv.insert(argv.end(), args.begin(), args.end());
  if (bridge.empty()) bridge = {env_or_fail("BATCH_FAKE_AGENT"), "batch"};
  argv.push_back("--");
  argv.insert(argv.end(), bridge.begin(), bridge.end());
  return argv;
}

RunOptions input(const std::string& text, const Scratch& s) {
  RunOptions o;
  o.stdin_text = text;
  o.env = {"FAKE_STATE_DIR=" + s.dir, "FAKE_LOG=" + s.path("log")};
  o.limit = std::chrono::milliseconds(60000);
  return o;
}

std::vector<json> records(const RunResult& r) {
  std::vector<json> out;
  for (const auto& line : r.out_lines()) {
    json j = json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << line);
    out.push_back(j);
  }
  return out;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// How many times the agents were asked each prompt.
std::map<std::string, int> prompt_counts(const Scratch& s) {
  std::map<std::string, int> counts;
  std::istringstream in(slurp(s.path("log")));
  std::string pid, line;
  while (in >> pid && std::getline(in, line)) ++counts[line.substr(1)];
  return counts;
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// `tether batch ARGS < in > out` typed at a terminal (or `cat in | tether batch ARGS > out`):
// stderr (the progress line) is the pty, and Ctrl-C typed into it reaches tether as SIGINT.
// `to_terminal`: stdout is the terminal too.
std::unique_ptr<Pty> batch_on_terminal(const Scratch& s, const std::vector<std::string>& args, bool pipe = false,
                                       bool to_terminal = false, bool via_dev_tty = false) {
  std::string in = "'" + s.path("in") + "'";
  std::string out = !to_terminal ? " > '" + s.path("out") + "'" : via_dev_tty ? " > /dev/tty" : "";
  std::string script = pipe ? "cat " + in + " | exec \"$@\"" + out : "exec \"$@\" < " + in + out;
  std::vector<std::string> argv{"/bin/sh", "-c", script, "sh"};
  for (auto& a : batch_argv(args)) argv.push_back(a);
  return std::make_unique<Pty>(argv, std::vector<std::string>{"FAKE_STATE_DIR=" + s.dir, "FAKE_LOG=" + s.path("log")});
}

// The command on the line after "to resume, ...:" (indented by two spaces).
std::string resume_hint(const std::string& err) {
  auto at = err.find("to resume, run the same command again");
  if (at == std::string::npos) return {};
  auto start = err.find("\n  ", at);
  if (start == std::string::npos) return {};
  start += 3;
  return err.substr(start, err.find('\n', start) - start);
}

std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}


// An on_output hook that sends `sig` once, after the first result line, when the agents have
// every prompt in `hanging` (else a rerun would hang on one, or the signal would meet a turn still
// being set up).
std::function<void(pid_t, const std::string&, const std::string&)> signal_once_hanging(
    const Scratch& s, int sig, std::vector<std::string> hanging) {
  return [&s, sig, hanging, sent = std::make_shared<bool>(false)](pid_t pid, const std::string& out, const std::string&) {
    if (*sent || count_lines(out) < 1) return;
    *sent = true;
    CHECK(tether::test::eventually([&] {
      auto counts = prompt_counts(s);
      for (const auto& h : hanging)
        if (counts.count(h) != 1) return false;
      return true;
    }));
    ::kill(pid, sig);
  };
}

}  // namespace

TEST_CASE("--jobs 4 with varying latencies: every item once, in input order") {
  Scratch s;
  std::string in;
  const int n = 16;
  for (int i = 1; i <= n; ++i) in += "{\"id\":\"q" + std::to_string(i) + "\",\"prompt\":\"item " + std::to_string(i) +
                                     " sleep:" + std::to_string(((n - i) % 5) * 40) + "\"}\n";
  auto r = run(batch_argv({"--jobs", "4"}), input(in, s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == n);
  for (int i = 1; i <= n; ++i) {
    const json& j = recs[i - 1];
    CHECK(j["id"] == "q" + std::to_string(i));
    CHECK(j["index"] == i);
    CHECK(j["ok"] == true);
    CHECK(j["stopReason"] == "end_turn");
    CHECK(j["attempts"] == 1);
    CHECK(j["elapsedMs"].is_number_integer());
    CHECK(j["text"].get<std::string>().rfind("echo: item " + std::to_string(i) + " ", 0) == 0);
    CHECK(!j.contains("error"));
  }
  // The keys come in the documented order.
  CHECK(r.out_lines()[0].rfind("{\"id\":\"q1\",\"index\":1,\"ok\":true,\"text\":", 0) == 0);
  CHECK(r.err.find("16 items, 16 ok, 0 failed") != std::string::npos);
  // Four bridges shared the work.
  std::set<std::string> pids;
  std::istringstream log(slurp(s.path("log")));
  std::string pid, rest;
  while (log >> pid && std::getline(log, rest)) pids.insert(pid);
  CHECK(pids.size() == 4);
}

TEST_CASE("many fast items, shared sessions: the read-ahead window fills and drains to the end") {
  Scratch s;
  std::string in;
  const int n = 400;
  for (int i = 1; i <= n; ++i) in += "fast " + std::to_string(i) + "\n";
  for (const char* session : {"shared", "per-item"}) {
    auto r = run(batch_argv({"--jobs", "3", "--session", session}), input(in, s));
    CHECK(r.shell_status() == 0);
    auto recs = records(r);
    REQUIRE(recs.size() == n);
    for (int i = 1; i <= n; ++i) CHECK(recs[i - 1]["index"] == i);
  }
}

TEST_CASE("--unordered writes in completion order") {
  Scratch s;
  auto r = run(batch_argv({"--jobs", "4", "--unordered"}),
               input("slow sleep:600\nfast one\nfast two\nfast three\n", s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 4);
  CHECK(recs.back()["index"] == 1);
  std::set<int> seen;
  for (const auto& j : recs) seen.insert(j["index"].get<int>());
  CHECK(seen == std::set<int>{1, 2, 3, 4});
}

TEST_CASE("bad input lines become error records; the others run; meta is copied; exit 1") {
  Scratch s;
  std::string in =
      "plain text prompt\n"
      "\n"
      "{\"id\":\"a\",\"prompt\":\"with meta\",\"lang\":\"fr\",\"n\":2}\n"
      "{\"prompt\":\"unterminated\n"
      "{\"id\":\"b\",\"text\":\"no prompt\"}\n"
      "{\"id\":\"a\",\"prompt\":\"duplicate\"}\n"
      "{\"id\":7,\"prompt\":\"numeric id\"}\n"
      "{\"id\":{\"x\":1},\"prompt\":\"object id\"}\n"
      "   \n"
      "last line without newline";
  auto r = run(batch_argv({"--jobs", "2"}), input(in, s));
  CHECK(r.shell_status() == 1);
  auto recs = records(r);
  REQUIRE(recs.size() == 8);
  CHECK(recs[0]["id"] == 1);
  CHECK(recs[0]["ok"] == true);
  CHECK(recs[0]["text"] == "echo: plain text prompt");
  CHECK(recs[1]["id"] == "a");
  CHECK(recs[1]["index"] == 3);
  CHECK(recs[1]["ok"] == true);
  CHECK(recs[1]["meta"] == json({{"lang", "fr"}, {"n", 2}}));
  auto bad = [&](std::size_t i, int index) {
    CHECK(recs[i]["index"] == index);
    CHECK(recs[i]["ok"] == false);
    CHECK(recs[i]["error"]["code"] == "bad_input");
    CHECK(recs[i]["attempts"] == 0);
    CHECK(!recs[i].contains("text"));
  };
  bad(2, 4);
  bad(3, 5);
  CHECK(recs[3]["id"] == "b");
  bad(4, 6);
  CHECK(recs[4]["error"]["message"].get<std::string>().find("duplicate id") != std::string::npos);
  CHECK(recs[5]["id"] == 7);
  CHECK(recs[5]["ok"] == true);
  bad(6, 8);
  CHECK(recs[7]["index"] == 10);
  CHECK(recs[7]["ok"] == true);
  CHECK(prompt_counts(s).size() == 4);  // bad lines never reach the agent
}

TEST_CASE("invalid UTF-8 in a prompt reaches the agent as U+FFFD, and the output stays valid JSON") {
  Scratch s;
  auto r = run(batch_argv({}), input("caf\xe9 \xff end\n", s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 1);
  CHECK(recs[0]["text"] == "echo: caf\xef\xbf\xbd \xef\xbf\xbd end");
}

TEST_CASE("an item interrupted by a bridge crash is retried on the restarted bridge") {
  Scratch s;
  auto r = run(batch_argv({}), input("before\ncrash-once:k1 middle\nafter\n", s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 3);
  CHECK(recs[1]["ok"] == true);
  CHECK(recs[1]["attempts"] == 2);
  CHECK(recs[1]["text"] == "echo: crash-once:k1 middle");
  CHECK(recs[0]["attempts"] == 1);
  CHECK(recs[2]["attempts"] == 1);
  CHECK(r.err.find("trying again (attempt 2 of 2)") != std::string::npos);

  SUBCASE("--retries 0: the crash is the item's error") {
    Scratch s2;
    auto r2 = run(batch_argv({"--retries", "0"}), input("crash-once:k2 x\nafter\n", s2));
    CHECK(r2.shell_status() == 1);
    auto recs2 = records(r2);
    REQUIRE(recs2.size() == 2);
    CHECK(recs2[0]["ok"] == false);
    CHECK(recs2[0]["error"]["code"] == "bridge_exited");
    CHECK(recs2[0]["attempts"] == 1);
    CHECK(recs2[1]["ok"] == true);
  }
}

TEST_CASE("a timed-out item is cancelled and retried") {
  Scratch s;
  auto r = run(batch_argv({"--timeout", "0.5"}), input("hang-once:t1 slow\nquick\n", s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0]["ok"] == true);
  CHECK(recs[0]["attempts"] == 2);
  CHECK(recs[0]["elapsedMs"].get<int>() >= 500);
  CHECK(recs[1]["attempts"] == 1);
}

TEST_CASE("agent errors and refusals are not retried") {
  Scratch s;
  auto r = run(batch_argv({}), input("error please\nrefuse please\n", s));
  CHECK(r.shell_status() == 1);
  auto recs = records(r);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0]["error"]["code"] == "agent_error");
  CHECK(recs[0]["attempts"] == 1);
  CHECK(recs[1]["ok"] == false);
  CHECK(recs[1]["stopReason"] == "refusal");
  CHECK(recs[1]["text"] == "echo: refuse please");
  CHECK(prompt_counts(s)["error please"] == 1);
}

TEST_CASE("a bridge past its restart budget: remaining items are restart_limit records, exit 69") {
  Scratch s;
  auto r = run(batch_argv({"--max-restarts", "1"}), input("crash now\nsecond\nthird\nfourth\n", s));
  CHECK(r.shell_status() == 69);
  auto recs = records(r);
  REQUIRE(recs.size() == 4);
  CHECK(recs[0]["error"]["code"] == "bridge_exited");
  CHECK(recs[0]["attempts"] == 2);
  for (int i = 1; i < 4; ++i) {
    CHECK(recs[i]["index"] == i + 1);
    CHECK(recs[i]["ok"] == false);
    CHECK(recs[i]["error"]["code"] == "restart_limit");
  }
  CHECK(r.err.find("no bridge left") != std::string::npos);
}

// The next item can start while the bridge's "gave up" status still waits in the event queue: its
// turn then ends inside prompt() itself, and batch must see that without a wake-up (it hung until
// killed, a few runs in a hundred, before Turn::next_deadline() said that events were waiting).
TEST_CASE("a bridge that gives up between two items: the next items end at once, every time") {
  for (int run_no = 0; run_no < 20; ++run_no) {
    Scratch s;
    RunOptions o = input("crash now\nsecond\nthird\n", s);
    o.limit = std::chrono::seconds(10);
    auto r = run(batch_argv({"--max-restarts", "1", "--no-log"}), o);
    CAPTURE(run_no);
    CAPTURE(r.err);
    REQUIRE(r.shell_status() == 69);
    REQUIRE(records(r).size() == 3);
  }
}

TEST_CASE("a retired bridge's item goes to another bridge") {
  Scratch s;
  std::string in = "crash-once:m1 first\n";
  for (int i = 2; i <= 8; ++i) in += "item " + std::to_string(i) + " sleep:20\n";
  auto r = run(batch_argv({"--jobs", "2", "--max-restarts", "0"}), input(in, s));
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 8);
  for (const auto& j : recs) CHECK(j["ok"] == true);
  CHECK(recs[0]["attempts"] == 2);
  CHECK(r.err.find("out of service") != std::string::npos);
}

TEST_CASE("| head: EPIPE on stdout ends quietly with SIGPIPE") {
  Scratch s;
  std::string in;
  for (int i = 0; i < 200; ++i) in += "item " + std::to_string(i) + "\n";
  RunOptions o = input(in, s);
  o.close_stdout_after_first_line = true;
  auto r = run(batch_argv({"--jobs", "2"}), o);
  CHECK(r.shell_status() == 141);
  CHECK(r.err.empty());
}

TEST_CASE("SIGTERM: in-flight items are cancelled, what is finished is written, the signal is re-raised") {
  Scratch s;
  std::string in = "quick\n";
  for (int i = 0; i < 6; ++i) in += "slow " + std::to_string(i) + " sleep:30000\n";
  RunOptions o = input(in, s);
  bool sent = false;
  o.on_output = [&](pid_t pid, const std::string& out, const std::string&) {
    if (!sent && count_lines(out) >= 1) {
      sent = true;
      ::kill(pid, SIGTERM);
    }
  };
  auto r = run(batch_argv({"--jobs", "2"}), o);
  CHECK(r.shell_status() == 143);
  CHECK(r.seconds < 15);  // long before the slow items' 30 s: they were cancelled, not waited for
  auto recs = records(r);
  REQUIRE(recs.size() >= 1);
  CHECK(recs[0]["ok"] == true);
  for (std::size_t i = 1; i < recs.size(); ++i) {
    CHECK(recs[i]["index"] == i + 1);  // a prefix of the input, each item once
    CHECK(recs[i]["error"]["code"] == "cancelled");
  }
}

TEST_CASE("--journal: SIGKILL at several points, then resume: exactly one line per item, in order") {
  const int n = 12;
  std::string in;
  for (int i = 1; i <= n; ++i) in += "{\"id\":\"j" + std::to_string(i) + "\",\"prompt\":\"item " + std::to_string(i) +
                                     " sleep:" + std::to_string((i * 37) % 90) + "\"}\n";
  // Kill after this many output lines; several kills in a row for the last schedule.
  const std::vector<std::vector<std::size_t>> schedules = {{0}, {1}, {4}, {9}, {11}, {2, 5, 8}};
  int kills_landed = 0;
  for (const auto& kills : schedules) {
    CAPTURE(kills.size());
    CAPTURE(kills.front());
    Scratch s;
    std::string journal = s.path("journal");
    std::size_t journaled_before = 0;
    for (std::size_t k : kills) {
      RunOptions o = input(in, s);
      bool killed = false;
      o.on_output = [&](pid_t pid, const std::string& out, const std::string&) {
        if (!killed && count_lines(out) >= k) {
          killed = true;
          ::kill(pid, SIGKILL);
        }
      };
      auto r = run(batch_argv({"--jobs", "3", "--journal", journal}), o);
      if (r.signal != SIGKILL) {  // finished before the kill landed: nothing to resume
        CHECK(r.shell_status() == 0);
        continue;
      }
      ++kills_landed;
      // Whatever the killed run wrote is valid, in order, and was in the journal first.
      std::set<int> in_journal;
      std::istringstream jl(slurp(journal));
      for (std::string line; std::getline(jl, line);) {
        json rec = json::parse(line, nullptr, false);
        if (rec.is_object() && rec.value("ok", false)) in_journal.insert(rec["index"].get<int>());
      }
      auto recs = records(r);
      CHECK(recs.size() >= k);
      for (std::size_t i = 0; i < recs.size(); ++i) {
        CHECK(recs[i]["index"] == i + 1);
        CHECK(in_journal.count(static_cast<int>(i + 1)) == 1);
      }
      journaled_before = in_journal.size();
    }
    auto r = run(batch_argv({"--jobs", "3", "--journal", journal}), input(in, s));
    CHECK(r.shell_status() == 0);
    auto recs = records(r);
    REQUIRE(recs.size() == n);
    for (int i = 1; i <= n; ++i) {
      CHECK(recs[i - 1]["id"] == "j" + std::to_string(i));
      CHECK(recs[i - 1]["index"] == i);
      CHECK(recs[i - 1]["ok"] == true);
    }
    // Items the journal held were not run again; each item ran at most once more than it was killed.
    auto counts = prompt_counts(s);
    for (const auto& [prompt, c] : counts) CHECK(c <= static_cast<int>(kills.size()) + 1);
    if (journaled_before > 1) CHECK(r.err.find("from the journal") != std::string::npos);
    // A further rerun is served entirely from the journal.
    auto again = run(batch_argv({"--jobs", "3", "--journal", journal}), input(in, s));
    CHECK(again.out == r.out);
    CHECK(again.err.find("(12 from the journal)") != std::string::npos);
  }
  // The kill points are reached well before the end (the items take tens of milliseconds each).
  CHECK(kills_landed >= 6);
}

TEST_CASE("--journal: a torn last line is ignored and repaired; a journal from another input is not trusted") {
  Scratch s;
  std::string journal = s.path("journal");
  auto first = run(batch_argv({"--journal", journal}), input("one\ntwo\nthree\n", s));
  REQUIRE(first.shell_status() == 0);
  {
    std::ofstream j(journal, std::ios::app);
    j << "{\"index\":3,\"id\":3,\"hash\":\"00";  // a torn append
  }
  auto resumed = run(batch_argv({"--journal", journal}), input("one\ntwo\nthree\n", s));
  CHECK(resumed.shell_status() == 0);
  CHECK(resumed.out == first.out);
  CHECK(resumed.err.find("(3 from the journal)") != std::string::npos);
  std::string text = slurp(journal);
  CHECK(text.back() == '\n');
  CHECK(count_lines(text) == 4);  // header + 3 records: the torn tail was cut off

  auto other = run(batch_argv({"--journal", journal}), input("uno\ntwo\ntres\n", s));
  CHECK(other.shell_status() == 0);
  auto recs = records(other);
  REQUIRE(recs.size() == 3);
  CHECK(recs[0]["text"] == "echo: uno");
  CHECK(recs[2]["text"] == "echo: tres");
  CHECK(other.err.find("2 journal records were made from a different input") != std::string::npos);

  // A file that is not a journal is never written to.
  std::string foreign = s.path("notes.txt");
  { std::ofstream(foreign) << "precious\n"; }
  auto refused = run(batch_argv({"--journal", foreign}), input("x\n", s));
  CHECK(refused.shell_status() == 74);
  CHECK(slurp(foreign) == "precious\n");
}

TEST_CASE("--shard K/N: the shards partition the items") {
  Scratch s;
  std::string in;
  for (int i = 1; i <= 20; ++i) in += "item " + std::to_string(i) + "\n";
  std::multiset<int> all;
  for (int k = 0; k < 3; ++k) {
    auto r = run(batch_argv({"--shard", std::to_string(k) + "/3"}), input(in, s));
    CHECK(r.shell_status() == 0);
    for (const auto& j : records(r)) all.insert(j["index"].get<int>());
  }
  CHECK(all.size() == 20);
  CHECK(std::set<int>(all.begin(), all.end()).size() == 20);
  auto bad = run(batch_argv({"--shard", "3/3"}), input(in, s));
  CHECK(bad.shell_status() == 64);
}

TEST_CASE("--session shared: one session per bridge; usage errors") {
  Scratch s;
  auto r = run(batch_argv({"--session", "shared", "--jobs", "2"}), input("a\nb\nc\nd\n", s));
  CHECK(r.shell_status() == 0);
  CHECK(records(r).size() == 4);
  auto ask = run(batch_argv({"--permission", "ask"}), input("a\n", s));
  CHECK(ask.shell_status() == 64);
  auto empty = run(batch_argv({}), input("", s));
  CHECK(empty.shell_status() == 0);
  CHECK(empty.out.empty());
}

TEST_CASE("against the demo agent (the default bridge)") {
  Scratch s;
  auto probe = run({env_or_fail("TETHER_BIN"), "demo-agent"}, input("", s));
  if (probe.shell_status() != 0) {
    MESSAGE("tether demo-agent is not available in this build; skipped");
    return;
  }
  RunOptions o = input("{\"id\":\"d1\",\"prompt\":\"hello there\"}\nsecond /sleep 30\n", s);
  o.env.push_back("TETHER_BRIDGE=");
  std::vector<std::string> argv{env_or_fail("TETHER_BIN"), "batch", "--jobs", "2"};
  auto r = run(argv, o);
  CHECK(r.shell_status() == 0);
  auto recs = records(r);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0]["id"] == "d1");
  CHECK(recs[0]["ok"] == true);
  CHECK(!recs[0]["text"].get<std::string>().empty());
  CHECK(recs[1]["ok"] == true);
}

// --- hostile input (issue 12) -------------------------------------------------------------------

namespace {
std::string nested_meta_line(std::size_t depth) {
  return "{\"prompt\":\"deep\",\"meta\":" + std::string(depth, '[') + std::string(depth, ']') + "}\n";
}
}  // namespace

TEST_CASE("a line nested 100,000 deep is bad input, not a crash, and a rerun with the journal is fine too") {
  Scratch s;
  const std::string text = "{\"id\":\"a\",\"prompt\":\"first\"}\n" + nested_meta_line(100000) +
                           "{\"id\":\"b\",\"prompt\":\"last\",\"m\":" + std::string(500, '[') + std::string(500, ']') + "}\n";
  const std::string journal = s.path("journal");
  for (int pass = 0; pass < 2; ++pass) {
    CAPTURE(pass);
    auto r = run(batch_argv({"--journal", journal}), input(text, s));
    CHECK(r.signal == 0);
    CHECK(r.exit_code == 1);
    auto recs = records(r);
    REQUIRE(recs.size() == 3);
    CHECK(recs[0]["ok"] == true);
    CHECK(recs[1]["ok"] == false);
    CHECK(recs[1]["error"]["code"] == "bad_input");
    CHECK(recs[1]["error"]["message"].get<std::string>().find("nested deeper than 512") != std::string::npos);
    CHECK(recs[2]["ok"] == true);  // 501 deep as a line: within the limit
    CHECK(recs[2]["text"] == "echo: last");
  }
}

TEST_CASE("number ids come back exactly as written, however large; they are distinct ids") {
  Scratch s;
  const std::string text =
      "{\"id\":12345678901234567890123,\"prompt\":\"one\"}\n"
      "{\"id\":12345678901234567890124,\"prompt\":\"two\"}\n"
      "{\"id\":1.50,\"prompt\":\"three\"}\n"
      "{\"id\":-7,\"prompt\":\"four\"}\n";
  const std::string journal = s.path("journal");
  for (int pass = 0; pass < 2; ++pass) {  // the second one comes from the journal
    CAPTURE(pass);
    auto r = run(batch_argv({"--journal", journal}), input(text, s));
    CHECK(r.exit_code == 0);
    auto lines = r.out_lines();
    REQUIRE(lines.size() == 4);
    CHECK(lines[0].rfind("{\"id\":12345678901234567890123,\"index\":1,\"ok\":true", 0) == 0);
    CHECK(lines[1].rfind("{\"id\":12345678901234567890124,\"index\":2,\"ok\":true", 0) == 0);
    CHECK(lines[2].rfind("{\"id\":1.50,\"index\":3,\"ok\":true", 0) == 0);
    CHECK(lines[3].rfind("{\"id\":-7,\"index\":4,\"ok\":true", 0) == 0);
    records(r);  // each is still valid JSON
  }
  // The journal holds them as written as well.
  auto j = slurp(journal);
  CHECK(j.find("\"id\":12345678901234567890123,") != std::string::npos);
  CHECK(j.find("\"id\":1.50,") != std::string::npos);
}

TEST_CASE("--journal that is not a regular file (/dev/zero, /dev/full, a directory): exit 74 at once") {
  Scratch s;
  for (std::string path : {std::string("/dev/zero"), std::string("/dev/full"), s.dir}) {
    CAPTURE(path);
    RunOptions o = input("hello\n", s);
    o.limit = std::chrono::milliseconds(20000);
    // Without the check, tether reads /dev/zero into memory until it runs out: a cap on its
    // address space makes that a quick failure here instead of a machine's worth of RAM.
    std::vector<std::string> argv = batch_argv({"--journal", path});
#if !TETHER_TEST_ASAN && !TETHER_TEST_TSAN
    argv.insert(argv.begin(), {"/bin/sh", "-c", "ulimit -v 1000000; exec \"$0\" \"$@\""});
#endif
    auto r = run(argv, o);
    CHECK_FALSE(r.timed_out);
    CHECK(r.signal == 0);
    CHECK(r.exit_code == 74);
    CHECK(r.out.empty());
    CHECK(r.seconds < 10);
  }
}

TEST_CASE("stdin closed (`batch <&-`): exit 74 at once, never a hang") {
  Scratch s;
  RunOptions o = input("", s);
  o.limit = std::chrono::milliseconds(20000);
  std::vector<std::string> argv = batch_argv({});
  argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$0\" \"$@\" <&-"});
  auto r = run(argv, o);
  CHECK_FALSE(r.timed_out);
  CHECK(r.exit_code == 74);
  CHECK(r.err.find("stdin") != std::string::npos);
}

TEST_CASE("an answer chunk longer than --max-line: the item is not ok, its error says why, exit 1") {
  Scratch s;
  auto r = run(batch_argv({"--max-line", "2000"}), input("fine\nbig oversize:5000\n", s));
  CHECK(r.exit_code == 1);
  auto recs = records(r);
  REQUIRE(recs.size() == 2);
  CHECK(recs[0]["ok"] == true);
  CHECK(recs[1]["ok"] == false);
  CHECK(recs[1]["error"]["code"] == "agent_error");
  CHECK(recs[1]["error"]["message"].get<std::string>().find("longer than --max-line") != std::string::npos);
  CHECK(recs[1]["text"] == "echo: big oversize:5000");  // what did arrive is kept
}

TEST_CASE("on a terminal, the total and the time left show from the first items on: a regular file, a short pipe") {
  // A regular file is counted ahead; a pipe as it is read, and a short one's end is seen at once.
  for (bool pipe : {false, true}) {
    CAPTURE(pipe);
    Scratch s;
    std::string in;
    for (int i = 1; i <= 6; ++i) in += "item " + std::to_string(i) + " sleep:150\n";
    write_file(s.path("in"), in);
    auto p = batch_on_terminal(s, {}, pipe);
    auto status = p->wait_exit(std::chrono::seconds(30));
    REQUIRE(status);
    CHECK(*status == 0);
    const std::string text = p->text();
    auto summary = text.find("tether: batch: 6 items, 6 ok, 0 failed");
    REQUIRE(summary != std::string::npos);
    // A frame drawn while at least three items were still to come has the total and the ETA (with
    // --jobs 1 all input is admitted only when the fifth item starts).
    bool early = false;
    for (std::string frame : {"batch: 1/6 done", "batch: 2/6 done", "batch: 3/6 done"}) {
      for (auto at = text.find(frame); at != std::string::npos && at < summary; at = text.find(frame, at + 1)) {
        std::string line = text.substr(at, text.find("batch:", at + 1) - at);
        if (line.find(", ETA ") != std::string::npos) early = true;
      }
    }
    CHECK_MESSAGE(early, text);
    CHECK(count_lines(slurp(s.path("out"))) == 6);
  }
}

TEST_CASE("Ctrl-C: a summary line and the command that resumes; running it completes the rest") {
  Scratch s;
  write_file(s.path("in"), "one\ntwo\nthree hang-once:c3\nfour\nfive\nsix\n");
  std::string journal = s.path("journal");
  auto p = batch_on_terminal(s, {"--journal", journal});
  REQUIRE(p->wait_for("batch: 2"));  // two done, the third hangs until cancelled
  // ... once the agent has it (else the rerun would be the first time it sees it, and hang).
  CHECK(tether::test::eventually([&] { return prompt_counts(s).count("three hang-once:c3") == 1; }));
  p->send("\x03");
  auto status = p->wait_exit(std::chrono::seconds(30));
  REQUIRE(status);
  CHECK(*status == 130);
  const std::string text = p->text();
  CHECK_MESSAGE(text.find("tether: interrupted by SIGINT: 2 of 6 items done (2 ok, 0 failed), 1 cancelled while "
                          "running, 3 not started\n") != std::string::npos,
                text);
  CHECK(text.find("tether: to resume, run the same command again with the same journal (the 2 items that are ok "
                  "will not run again):") != std::string::npos);
  std::string command = resume_hint(text);
  REQUIRE_MESSAGE(!command.empty(), text);
  CHECK(command.rfind(env_or_fail("TETHER_BIN") + " batch ", 0) == 0);
  CHECK(command.find(" --journal " + journal + " ") != std::string::npos);
  CHECK(command.substr(command.size() - s.path("in").size() - 3) == " < " + s.path("in"));
  auto before = records(RunResult{0, 0, false, slurp(s.path("out")), "", 0});
  REQUIRE(before.size() == 4);  // two answers, the cancelled third, the fourth that was read
  CHECK(before[2]["error"]["code"] == "cancelled");

  // The hint, run by a shell as printed: only what was not ok runs.
  RunOptions o = input("", s);
  auto resumed = run({"/bin/sh", "-c", command}, o);
  CHECK(resumed.shell_status() == 0);
  auto recs = records(resumed);
  REQUIRE(recs.size() == 6);
  for (int i = 0; i < 6; ++i) {
    CHECK(recs[i]["index"] == i + 1);
    CHECK(recs[i]["ok"] == true);
  }
  CHECK(resumed.err.find("(2 from the journal)") != std::string::npos);
  auto counts = prompt_counts(s);
  CHECK(counts["one"] == 1);
  CHECK(counts["two"] == 1);
  CHECK(counts["three hang-once:c3"] == 2);
  CHECK(counts["six"] == 1);
}

TEST_CASE("SIGTERM with --journal, stdin a pipe: the summary, and the hint asks for the same input") {
  Scratch s;
  std::string in = "quick\nslow hang-once:a\nslow hang-once:b\nlater 1\nlater 2\nlater 3\n";
  std::string journal = s.path("journal");
  RunOptions o = input(in, s);
  o.on_output = signal_once_hanging(s, SIGTERM, {"slow hang-once:a", "slow hang-once:b"});
  auto r = run(batch_argv({"--jobs", "2", "--journal", journal}), o);
  CHECK(r.shell_status() == 143);
  // Both bridges were busy with the hanging items and the queue was full: the rest was not read.
  CHECK_MESSAGE(r.err.find("tether: interrupted by SIGTERM: 1 item done (1 ok, 0 failed), 2 cancelled while running; "
                           "the rest of the input was not started\n") != std::string::npos,
                r.err);
  CHECK(r.err.find("with the same journal and the same input on stdin (the 1 item that is ok will not run again):") !=
        std::string::npos);
  std::string command = resume_hint(r.err);
  REQUIRE_MESSAGE(!command.empty(), r.err);
  CHECK(command.find(" < ") == std::string::npos);
  auto resumed = run({"/bin/sh", "-c", command}, input(in, s));
  CHECK(resumed.shell_status() == 0);
  auto recs = records(resumed);
  REQUIRE(recs.size() == 6);
  for (const auto& j : recs) CHECK(j["ok"] == true);
  CHECK(prompt_counts(s)["quick"] == 1);
}

TEST_CASE("ids: a line without an id does not take an explicit id's place, whatever its type") {
  Scratch s;
  std::string in =
      "alpha\n"                                  // no id: 1
      "{\"id\":1,\"prompt\":\"beta\"}\n"         // explicit 1
      "{\"id\":\"3\",\"prompt\":\"gamma\"}\n"    // explicit "3"
      "{\"prompt\":\"delta\"}\n"                 // no id: 4
      "{\"id\":4,\"prompt\":\"epsilon\"}\n"      // explicit 4, after the line 4 without one
      "{\"id\":1,\"prompt\":\"again\"}\n";       // explicit 1 again: a duplicate
  auto r = run(batch_argv({}), input(in, s));
  CHECK(r.shell_status() == 1);
  auto recs = records(r);
  REQUIRE(recs.size() == 6);
  const std::vector<json> ids = {1, 1, "3", 4, 4, 1};
  for (std::size_t i = 0; i < ids.size(); ++i) {
    CAPTURE(i);
    CHECK(recs[i]["id"] == ids[i]);
    CHECK(recs[i]["index"] == i + 1);
    CHECK(recs[i]["ok"] == (i < 5));
  }
  CHECK(recs[5]["error"]["code"] == "bad_input");
  CHECK(recs[5]["error"]["message"] == "input line 6: duplicate id 1");
}

TEST_CASE("Ctrl-C on `batch | tee`, tee gone first: still the summary and the hint, and the exit is SIGINT's") {
  Scratch s;
  std::string in = "quick\nslow hang-once:a\nslow hang-once:b\n";
  RunOptions o = input(in, s);
  o.close_stdout_after_first_line = true;  // tee dies first: the cancelled records meet EPIPE
  o.on_output = signal_once_hanging(s, SIGINT, {"slow hang-once:a", "slow hang-once:b"});
  auto r = run(batch_argv({"--jobs", "2", "--journal", s.path("journal")}), o);
  CHECK(r.shell_status() == 130);
  CHECK_MESSAGE(r.err.find("tether: interrupted by SIGINT: 1 of 3 items done (1 ok, 0 failed), 2 cancelled while running") !=
                    std::string::npos,
                r.err);
  CHECK(r.err.find("tether: to resume, run the same command again with the same journal") != std::string::npos);
}

TEST_CASE("a second signal: the item still running gets a cancelled line, and those finished behind it are written") {
  Scratch s;
  std::string in = "first deaf-once:h\n";
  for (int i = 2; i <= 6; ++i) in += "quick " + std::to_string(i) + "\n";
  std::string journal = s.path("journal");
  RunOptions o = input(in, s);
  bool sent = false;
  // --progress writes on stderr at once: the first call waits until items 2-6 are recorded (their
  // lines wait behind item 1; the journal has a header line), then sends both signals (the agent
  // never answers item 1, not even its cancel).
  o.on_output = [&](pid_t pid, const std::string&, const std::string&) {
    if (sent) return;
    sent = true;
    CHECK(tether::test::eventually([&] { return count_lines(slurp(journal)) == 6; }));
    ::kill(pid, SIGINT);
    ::kill(pid, SIGTERM);
  };
  auto r = run(batch_argv({"--jobs", "2", "--progress", "--journal", journal}), o);
  CHECK(r.shell_status() == 143);
  auto recs = records(r);
  REQUIRE_MESSAGE(recs.size() == 6, r.out << r.err);
  CHECK(recs[0]["error"]["code"] == "cancelled");
  for (int i = 1; i < 6; ++i) {
    CHECK(recs[i]["index"] == i + 1);
    CHECK(recs[i]["ok"] == true);
  }
  CHECK_MESSAGE(r.err.find("tether: interrupted by SIGTERM: 5 of 6 items done (5 ok, 0 failed), 1 cancelled while running, "
                           "0 not started\n") != std::string::npos,
                r.err);
}

TEST_CASE("stdout the terminal of the progress line: each result line starts a line of its own") {
  // The same terminal as stderr's fd, or under its other name (/dev/tty: another inode).
  for (bool via_dev_tty : {false, true}) {
    CAPTURE(via_dev_tty);
    Scratch s;
    write_file(s.path("in"), "one sleep:250\ntwo sleep:250\nthree sleep:250\n");
    auto p = batch_on_terminal(s, {}, false, true, via_dev_tty);
    auto status = p->wait_exit(std::chrono::seconds(30));
    REQUIRE(status);
    CHECK(*status == 0);
    const std::string& raw = p->raw();
    int lines = 0;
    for (auto at = raw.find("{\"id\":"); at != std::string::npos; at = raw.find("{\"id\":", at + 1)) {
      ++lines;
      // After a newline, or after the progress line was erased ("\r\e[K").
      bool own_line = at == 0 || raw[at - 1] == '\n' || (at >= 4 && raw.compare(at - 4, 4, "\r\x1b[K") == 0);
      CHECK_MESSAGE(own_line, raw.substr(at >= 80 ? at - 80 : 0, 120));
    }
    CHECK(lines == 3);
  }
}

TEST_CASE("a file on stdin read from past its start: the hint asks for the same input, not `< FILE`") {
  Scratch s;
  write_file(s.path("in"), "header line\nquick\nslow hang-once:a\n");
  RunOptions o = input("", s);
  o.on_output = signal_once_hanging(s, SIGTERM, {"slow hang-once:a"});
  std::vector<std::string> argv{"/bin/sh", "-c", "{ read -r hdr; exec \"$@\"; } < '" + s.path("in") + "'", "sh"};
  for (auto& a : batch_argv({"--journal", s.path("journal")})) argv.push_back(a);
  auto r = run(argv, o);
  CHECK(r.shell_status() == 143);
  CHECK_MESSAGE(r.err.find("with the same journal and the same input on stdin (the 1 item that is ok will not run again):") !=
                    std::string::npos,
                r.err);
  std::string command = resume_hint(r.err);
  REQUIRE_MESSAGE(!command.empty(), r.err);
  CHECK(command.find(" < ") == std::string::npos);
  CHECK(prompt_counts(s).count("header line") == 0);
}

TEST_CASE("interrupted while a retry waits for a bridge: it ran, so it is cancelled, not \"not started\"") {
  Scratch s;
  RunOptions o = input("one crash\ntwo hang-once:a\n", s);
  bool sent = false;
  // Bridge 1 dies with item 1 and is out of service (--max-restarts 0); bridge 2 hangs on item 2,
  // so item 1's retry waits in the queue.
  o.on_output = [&](pid_t pid, const std::string&, const std::string& err) {
    if (!sent && err.find("out of service") != std::string::npos) {
      sent = true;
      CHECK(tether::test::eventually([&] { return prompt_counts(s).count("two hang-once:a") == 1; }));
      ::kill(pid, SIGINT);
    }
  };
  auto r = run(batch_argv({"--jobs", "2", "--max-restarts", "0", "--retries", "2"}), o);
  CHECK(r.shell_status() == 130);
  auto recs = records(r);
  REQUIRE_MESSAGE(recs.size() == 2, r.out << r.err);
  CHECK(recs[0]["error"]["code"] == "cancelled");
  CHECK(recs[0]["attempts"] == 1);
  CHECK_MESSAGE(recs[0]["error"]["message"] == "tether was interrupted while the item waited to be tried again", recs[0]);
  CHECK_MESSAGE(r.err.find("tether: interrupted by SIGINT: 0 of 2 items done (0 ok, 0 failed), 2 cancelled while running, "
                           "0 not started\n") != std::string::npos,
                r.err);
}

TEST_CASE("after a stop signal no progress frame is drawn: none counts the cancelled items as failed") {
  Scratch s;
  RunOptions o = input("quick\nslow hang-once:a\n", s);
  o.on_output = signal_once_hanging(s, SIGINT, {"slow hang-once:a"});
  auto r = run(batch_argv({"--jobs", "2", "--progress"}), o);
  CHECK(r.shell_status() == 130);
  CHECK(r.err.find("batch: ") != std::string::npos);  // frames were drawn before the signal
  // The summary counts the cancelled item as cancelled; no frame may say it failed.
  CHECK_MESSAGE(r.err.find(" 1 failed") == std::string::npos, r.err);
  CHECK(r.err.find("tether: interrupted by SIGINT: 1 of 2 items done (1 ok, 0 failed), 1 cancelled while running") !=
        std::string::npos);
}
