// `tether call` as a user runs it: the built binary, real fake bridges, real pipes.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <thread>
#include <nlohmann/json.hpp>
#include <sstream>

#include "support/run.h"
#include "support/support.h"

using nlohmann::json;
using tether::test::fake;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::tether_bin;

namespace {

std::vector<std::string> call(std::vector<std::string> args, std::vector<std::string> bridge) {
  std::vector<std::string> argv{tether_bin(), "call"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("--");
  argv.insert(argv.end(), bridge.begin(), bridge.end());
  return argv;
}

json line_json(const std::string& line) {
  json j = json::parse(line, nullptr, false);
  REQUIRE_MESSAGE(!j.is_discarded(), "not JSON: " << line);
  return j;
}

std::string temp_path(const std::string& name) {
  return "/tmp/tether-e2e-" + std::to_string(::getpid()) + "-" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<pid_t> pids_in(const std::string& path) {
  std::vector<pid_t> pids;
  std::istringstream in(slurp(path));
  pid_t p;
  while (in >> p) pids.push_back(p);
  return pids;
}

RunOptions with_env(std::vector<std::string> env) {
  RunOptions o;
  o.env = std::move(env);
  return o;
}

}  // namespace

TEST_CASE("one request from the command line prints its response and exits 0") {
  auto r = run(call({"echo", R"({"a":1,"s":"x"})"}, {fake("echo")}));
  CHECK(r.shell_status() == 0);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 1);
  json j = line_json(lines[0]);
  CHECK(j["jsonrpc"] == "2.0");
  CHECK(j["id"] == 1);
  CHECK(j["result"] == json({{"a", 1}, {"s", "x"}}));
  CHECK(r.err.empty());
}

TEST_CASE("a script on stdin: ids restored, notifications not answered, bad lines reported, exit 65") {
  RunOptions o;
  o.stdin_text =
      "{\"id\":\"first\",\"method\":\"m\",\"params\":{\"n\":1}}\n"
      "{\"method\":\"just/notify\"}\n"
      "\n"
      "this is not json\n"
      "{\"jsonrpc\":\"2.0\",\"id\":42,\"method\":\"m\",\"params\":[2]}\r\n"
      "{\"id\":7}\n"
      "{\"id\":null,\"method\":\"m\"}";  // no final newline
  auto r = run(call({}, {fake("echo")}), o);
  CHECK(r.shell_status() == 65);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 5);
  json a = line_json(lines[0]);
  CHECK(a["id"] == "first");
  CHECK(a["result"]["n"] == 1);
  json bad = line_json(lines[1]);
  CHECK(bad["error"]["code"] == "bad_input");
  CHECK(bad["error"]["message"].get<std::string>().find("line 3") != std::string::npos);
  json b = line_json(lines[2]);
  CHECK(b["id"] == 42);
  CHECK(b["result"] == json::array({2}));
  json c = line_json(lines[3]);
  CHECK(c["id"] == 7);
  CHECK(c["error"]["code"] == "bad_input");
  json d = line_json(lines[4]);
  CHECK(d["id"].is_null());
  CHECK(d.contains("result"));
}

TEST_CASE("a JSON-RPC error answer is printed as such and exits 1") {
  const char* script =
      "read -r line; echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32601,\"message\":\"no such method\"}}'; cat >/dev/null";
  auto r = run(call({"nope"}, {"/bin/bash", "-c", script}));
  CHECK(r.shell_status() == 1);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 1);
  json j = line_json(lines[0]);
  CHECK(j["id"] == 1);
  CHECK(j["error"]["code"] == -32601);
  CHECK(j["error"]["message"] == "no such method");
}

TEST_CASE("the bridge dying mid-request: error object with the stderr tail, exit 69, rest not sent") {
  RunOptions o;
  o.stdin_text = "{\"id\":1,\"method\":\"a\"}\n{\"id\":2,\"method\":\"b\"}\n";
  auto r = run(call({}, {fake("crash_mid_request")}), o);
  CHECK(r.shell_status() == 69);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 1);
  json j = line_json(lines[0]);
  CHECK(j["id"] == 1);
  CHECK(j["error"]["code"] == "bridge_exited");
  CHECK((j["error"].contains("signal") || j["error"].contains("exitStatus")));
  CHECK(j["error"]["stderrTail"].get<std::string>().find("about to crash") != std::string::npos);
  CHECK(r.err.find("about to crash") != std::string::npos);
  CHECK(r.err.find("1 more input line was not sent") != std::string::npos);
  // It waited for nothing: long before the run's limit (an ordering, not a speed a busy machine
  // could miss).
  CHECK(r.seconds < std::chrono::duration<double>(o.limit).count() / 2);
}

TEST_CASE("a bridge that cannot start: exit 69 with the reason") {
  auto r = run(call({"x"}, {"/nonexistent/bridge"}));
  CHECK(r.shell_status() == 69);
  CHECK(r.out.empty());
  CHECK(r.err.find("cannot start the bridge") != std::string::npos);
  CHECK(r.err.find("No such file") != std::string::npos);
}

TEST_CASE("--timeout: exit 75, a timeout error line, and the bridge is stopped") {
  std::string pids = temp_path("timeout-pids");
  auto r = run(call({"--timeout", "0.3", "x"}, {fake("silent")}),
               with_env({"FAKE_COUNT_FILE=" + pids}));
  CHECK(r.shell_status() == 75);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 1);
  CHECK(line_json(lines[0])["error"]["code"] == "timeout");
  auto spawned = pids_in(pids);
  REQUIRE(spawned.size() == 1);
  CHECK_FALSE(tether::test::process_exists(spawned[0]));
  ::unlink(pids.c_str());
}

TEST_CASE("--notifications prints the bridge's notifications in wire order before the response") {
  auto r = run(call({"--notifications", "flood", R"({"n":3})"}, {fake("notification_flood")}));
  CHECK(r.shell_status() == 0);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 4);
  for (int i = 0; i < 3; ++i) {
    json n = line_json(lines[static_cast<std::size_t>(i)]);
    CHECK(n["method"] == "tick");
    CHECK(n["params"]["seq"] == i);
  }
  CHECK(line_json(lines[3]).contains("result"));
  // Without the flag, only the response.
  auto quiet = run(call({"flood", R"({"n":3})"}, {fake("notification_flood")}));
  CHECK(quiet.out_lines().size() == 1);
}

TEST_CASE("a request from the bridge is answered -32601 (call serves nothing)") {
  // The bridge asks us something first, then answers our request with what it got back.
  const char* script =
      "echo '{\"jsonrpc\":\"2.0\",\"id\":\"b1\",\"method\":\"fs/read_text_file\",\"params\":{}}'; "
      "read -r ours; read -r answer; "
      "echo \"{\\\"jsonrpc\\\":\\\"2.0\\\",\\\"id\\\":1,\\\"result\\\":$answer}\"; cat >/dev/null";
  auto r = run(call({"go"}, {"/bin/bash", "-c", script}));
  CHECK(r.shell_status() == 0);
  auto lines = r.out_lines();
  REQUIRE(lines.size() == 1);
  json got = line_json(lines[0])["result"];
  CHECK(got["id"] == "b1");
  CHECK(got["error"]["code"] == -32601);
}

TEST_CASE("SIGINT while waiting: the bridge is stopped and tether dies of SIGINT") {
  std::string pids = temp_path("sigint-pids");
  RunOptions o;
  o.env = {"FAKE_COUNT_FILE=" + pids};
  o.close_stdin = false;  // keep stdin open: tether must not exit on its own
  o.stdin_text = "{\"id\":1,\"method\":\"x\"}\n";
  bool sent = false;
  o.limit = std::chrono::milliseconds(20000);
  std::thread killer;
  auto r = [&] {
    std::vector<std::string> argv = call({}, {fake("silent")});
    // The runner polls; deliver the signal from a helper thread once the bridge exists.
    killer = std::thread([&] {
      if (tether::test::eventually([&] { return pids_in(pids).size() == 1; })) {
        // tether is the parent of the bridge.
        std::ifstream stat("/proc/" + std::to_string(pids_in(pids)[0]) + "/stat");
        std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
        std::istringstream rest(all.substr(all.rfind(')') + 2));
        char state;
        pid_t ppid = 0;
        rest >> state >> ppid;
        if (ppid > 0) sent = ::kill(ppid, SIGINT) == 0;
      }
    });
    return run(argv, o);
  }();
  killer.join();
  REQUIRE(sent);
  CHECK(r.signal == SIGINT);
  CHECK(r.shell_status() == 130);
  auto spawned = pids_in(pids);
  REQUIRE(spawned.size() == 1);
  CHECK_FALSE(tether::test::process_exists(spawned[0]));
  ::unlink(pids.c_str());
}

TEST_CASE("stdout closed early (| head -n 1): quiet SIGPIPE exit, bridge stopped") {
  std::string pids = temp_path("pipe-pids");
  RunOptions o;
  o.env = {"FAKE_COUNT_FILE=" + pids};
  for (int i = 1; i <= 2000; ++i) o.stdin_text += "{\"id\":" + std::to_string(i) + ",\"method\":\"m\",\"params\":{\"pad\":\"" + std::string(100, 'x') + "\"}}\n";
  o.close_stdout_after_first_line = true;
  auto r = run(call({}, {fake("echo")}), o);
  CHECK(r.signal == SIGPIPE);
  CHECK(r.err.find("Broken pipe") == std::string::npos);
  CHECK(r.err.empty());
  auto spawned = pids_in(pids);
  REQUIRE(spawned.size() == 1);
  CHECK_FALSE(tether::test::process_exists(spawned[0]));
  ::unlink(pids.c_str());
}

TEST_CASE("usage errors exit 64") {
  CHECK(run({tether_bin()}).shell_status() == 64);
  CHECK(run({tether_bin(), "call", "--no-such-option"}).shell_status() == 64);
  auto bad_params = run(call({"m", "{not json"}, {fake("echo")}));
  CHECK(bad_params.shell_status() == 64);
  CHECK(bad_params.err.find("PARAMS_JSON") != std::string::npos);
  CHECK(run({tether_bin(), "call", "--help"}).shell_status() == 0);
}

TEST_CASE("bridge command from TETHER_BRIDGE and from the config file; config errors exit 78") {
  auto from_env = run({tether_bin(), "call", "m", R"({"v":"env"})"},
                      with_env({"TETHER_BRIDGE=" + fake("echo")}));
  CHECK(from_env.shell_status() == 0);
  CHECK(from_env.out.find("\"env\"") != std::string::npos);

  std::string cfg = temp_path("config.toml");
  {
    std::ofstream f(cfg);
    f << "# tether config\nbridge = [\"" << fake("echo") << "\"]\ntimeout = 5\n";
  }
  auto from_cfg = run({tether_bin(), "call", "--config", cfg, "m", R"({"v":"cfg"})"});
  CHECK(from_cfg.shell_status() == 0);
  CHECK(from_cfg.out.find("\"cfg\"") != std::string::npos);
  {
    std::ofstream f(cfg);
    f << "no_such_key = 1\n";
  }
  auto bad = run({tether_bin(), "call", "--config", cfg, "m"});
  CHECK(bad.shell_status() == 78);
  CHECK(bad.err.find("no_such_key") != std::string::npos);
  auto missing = run({tether_bin(), "call", "--config", cfg + ".absent", "m"});
  CHECK(missing.shell_status() == 78);
  ::unlink(cfg.c_str());
}

TEST_CASE("--trace records every frame both ways with timestamps and direction") {
  std::string trace = temp_path("trace");
  auto r = run(call({"--trace", trace, "m", R"({"k":1})"}, {fake("echo")}));
  CHECK(r.shell_status() == 0);
  std::string t = slurp(trace);
  CHECK(t.find(" -> {") != std::string::npos);
  CHECK(t.find(" <- {") != std::string::npos);
  CHECK(t.find("\"method\":\"m\"") != std::string::npos);
  CHECK(t.find("Z g1 ") != std::string::npos);  // UTC timestamp, generation
  ::unlink(trace.c_str());
}

namespace tether::e2e_extra {
TEST_CASE("an unknown command is named, with the real ones, and exits 64") {
  auto r = test::run({test::tether_bin(), "serv"});
  CHECK(r.shell_status() == 64);
  CHECK(r.out.empty());
  CHECK(r.err.find("unknown command \"serv\"") != std::string::npos);
  for (const char* name : {"talk", "prompt", "batch", "call", "demo-agent", "serve"})
    CHECK(r.err.find(name) != std::string::npos);
  auto typo = test::run({test::tether_bin(), "promt", "hi"});
  CHECK(typo.shell_status() == 64);
  CHECK(typo.err.find("unknown command \"promt\"") != std::string::npos);
}
}  // namespace tether::e2e_extra
