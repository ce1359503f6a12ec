// tether's command line as a user meets it: the built binary, real processes. A wrong option or
// value is one `tether: ...` line naming it and what it expected, then a hint, exit 64; a misspelt
// option or command gets a suggestion; --help names each value (SECS, N, FILE), not its C++ type;
// a command offers only the options it uses; the config file serves every command.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/run.h"
#include "support/support.h"

using tether::test::run;
using tether::test::RunOptions;
using tether::test::RunResult;
using tether::test::tether_bin;

namespace {

// A directory of our own for config files; also XDG_CONFIG_HOME, so that the user's own config
// file never takes part.
struct ScratchDir {
  std::string path = "/tmp/tether-cli-test-" + std::to_string(::getpid());
  ScratchDir() { ::mkdir(path.c_str(), 0700); }
  ~ScratchDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path, ignored);
  }
};

const std::string& scratch_dir() {
  static const ScratchDir dir;
  return dir.path;
}

RunResult run_tether(std::vector<std::string> args, const std::string& stdin_text = {}) {
  args.insert(args.begin(), tether_bin());
  RunOptions o;
  o.env = {"XDG_CONFIG_HOME=" + scratch_dir(), "TETHER_BRIDGE=", "TETHER_AGENT="};
  o.stdin_text = stdin_text;
  // Every case ends at parsing or at a bridge that exits at once; a command that instead starts
  // its work (the old code, which accepted `serve --timeout 5`) fails by this limit.
  o.limit = std::chrono::milliseconds(5000);
  return run(args, o);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// A usage error: exit 64, nothing on stdout, exactly `message` and the hint on stderr.
void check_usage_error(const std::vector<std::string>& args, const std::string& message, const std::string& command) {
  std::string shown;
  for (const auto& a : args) shown += " " + a;
  CAPTURE(shown);
  auto r = run_tether(args);
  CHECK(!r.timed_out);
  CHECK(r.shell_status() == 64);
  CHECK(r.out.empty());
  std::vector<std::string> expected{"tether: " + message,
                                    "Try 'tether " + (command.empty() ? "" : command + " ") + "--help' for more information."};
  CHECK(lines(r.err) == expected);
}

std::string write_config(const std::string& name, const std::string& text) {
  std::string path = scratch_dir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

}  // namespace

TEST_CASE("a bad value: one line naming the option, what it expects and what it got; exit 64") {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const Case cases[] = {
      {{"prompt", "--timeout", "abc", "hi"}, R"(--timeout: expected seconds (a number ≥ 0), got "abc")"},
      {{"prompt", "--timeout=-1", "hi"}, R"(--timeout: expected seconds (a number ≥ 0), got "-1")"},
      {{"talk", "--heartbeat", "nan"}, R"(--heartbeat: expected seconds (a number ≥ 0), got "nan")"},
      {{"prompt", "--restart-window", "0", "hi"}, R"(--restart-window: expected seconds (a number > 0), got "0")"},
      {{"batch", "--jobs", "0"}, R"(--jobs: expected a whole number ≥ 1, got "0")"},
      {{"batch", "-j", "abc"}, R"(--jobs: expected a whole number ≥ 1, got "abc")"},
      {{"batch", "--jobs", "2.5"}, R"(--jobs: expected a whole number ≥ 1, got "2.5")"},
      {{"batch", "--jobs", "5000"}, R"(--jobs: expected a whole number ≥ 1, got "5000" (at most 1024))"},
      {{"prompt", "--retries", "-1", "hi"}, R"(--retries: expected a whole number ≥ 0, got "-1")"},
      {{"call", "--max-restarts", "x", "m"}, R"(--max-restarts: expected a whole number ≥ 0, got "x")"},
      {{"prompt", "--max-line", "0", "hi"}, R"(--max-line: expected a size in bytes (a whole number ≥ 1), got "0")"},
      {{"prompt", "--repeat", "0", "hi"}, R"(--repeat: expected a whole number ≥ 1, got "0")"},
      {{"prompt", "--permission", "maybe", "hi"}, R"(--permission: expected ask, allow, allow-always or deny, got "maybe")"},
      {{"talk", "--color", "red"}, R"(--color: expected auto, always or never, got "red")"},
      {{"batch", "--session", "x"}, R"(--session: expected per-item or shared, got "x")"},
      {{"call", "--bridge-stderr", "", "m"}, R"(--bridge-stderr: expected tail, pass or a file name, got "")"},
      {{"call", "--trace", "", "m"}, R"(--trace: expected a file name, got "")"},
      {{"prompt", "--cwd", "", "hi"}, R"(--cwd: expected a directory, got "")"},
      {{"batch", "--shard", "3/2"}, R"(--shard: expected K/N with 0 ≤ K < N (e.g. 0/4), got "3/2")"},
      {{"prompt", "--set", "effort", "hi"}, R"(--set: expected KEY=VALUE (an option id of the agent and its value), got "effort")"},
  };
  for (const auto& c : cases) check_usage_error(c.args, c.message, c.args[0]);
}

TEST_CASE("a missing value, a flag given a value") {
  check_usage_error({"prompt", "--timeout"}, "--timeout needs a value (SECS)", "prompt");
  check_usage_error({"batch", "--journal"}, "--journal needs a value (FILE)", "batch");
  check_usage_error({"prompt", "--json=maybe", "hi"}, "--json is a flag: it takes no value", "prompt");
}

TEST_CASE("--stream and --no-stream: the last one given wins, as for every option") {
  // A turn the bridge's crash cuts short: streamed, the half answer is on stdout already; written
  // once the turn completed, nothing is.
  auto streamed = run_tether({"prompt", "--no-stream", "--stream", "--retries", "0", "/crash hello there"});
  CHECK(streamed.shell_status() == 69);
  CHECK(streamed.out.find("Echo:") != std::string::npos);
  auto whole = run_tether({"prompt", "--stream", "--no-stream", "--retries", "0", "/crash hello there"});
  CHECK(whole.shell_status() == 69);
  CHECK(whole.out.empty());
}

TEST_CASE("a misspelt option or command: did you mean") {
  check_usage_error({"prompt", "--timout", "5", "hi"}, "prompt has no option --timout; did you mean --timeout?", "prompt");
  check_usage_error({"batch", "--jbos", "2"}, "batch has no option --jbos; did you mean --jobs?", "batch");
  check_usage_error({"talk", "--no-histroy"}, "talk has no option --no-histroy; did you mean --no-history?", "talk");
  check_usage_error({"--verison"}, "unknown option --verison; did you mean --version?", "");
  // Nothing close: no guess.
  check_usage_error({"prompt", "--frobnicate", "hi"}, "prompt has no option --frobnicate", "prompt");
  check_usage_error({"prompt", "-x", "hi"}, "prompt has no option -x", "prompt");

  const std::string commands = "(the commands are agents, batch, call, completion, config, demo-agent, log, prompt, serve and talk)";
  check_usage_error({"promt", "hi"}, "unknown command \"promt\"; did you mean prompt? " + commands, "");
  check_usage_error({"tlak"}, "unknown command \"tlak\"; did you mean talk? " + commands, "");
  check_usage_error({"frobnicate"}, "unknown command \"frobnicate\" " + commands, "");
  check_usage_error({}, "no command given; the commands are agents, batch, call, completion, config, demo-agent, log, prompt, serve and talk", "");
}

TEST_CASE("an option of another command, or before the command; a stray word") {
  check_usage_error({"serve", "--jobs", "2"}, "--jobs is an option of batch, not of serve", "serve");
  check_usage_error({"--timeout", "5", "prompt", "hi"}, "--timeout goes after the command: tether prompt --timeout ...",
                    "prompt");
  check_usage_error({"--jobs", "2"}, "--jobs is an option of batch: give it after the command (tether batch --jobs ...)",
                    "");
  check_usage_error({"call", "a", "{}", "c"},
                    "unexpected argument \"c\": call takes METHOD and PARAMS_JSON (a bridge command goes after --: "
                    "tether call [OPTIONS] -- COMMAND)",
                    "call");
  check_usage_error({"serve", "my-agent"},
                    "serve takes no arguments, got \"my-agent\" (a bridge command goes after --: tether serve [OPTIONS] "
                    "-- COMMAND)",
                    "serve");
}

TEST_CASE("serve and call refuse the options they would ignore, saying why") {
  // --stop and a bridge that exits at once keep the old code (which accepted them) quick to fail.
  const std::string sock = scratch_dir() + "/none.sock";
  check_usage_error({"serve", "--stop", "--socket", sock, "--permission", "allow"},
                    "serve does not take --permission: permission requests go to the client whose turn it is "
                    "(tether talk|prompt|batch --connect --permission ...)",
                    "serve");
  check_usage_error({"serve", "--stop", "--socket", sock, "--timeout", "5"},
                    "serve does not take --timeout: each client sets its own turn timeout "
                    "(tether prompt --connect --timeout SECS)",
                    "serve");
  check_usage_error({"serve", "--stop", "--socket", sock, "--retries", "2"},
                    "serve does not take --retries: a turn cut by a bridge death is retried by its client, so that "
                    "only one side retries (tether prompt --connect --retries N)",
                    "serve");
  check_usage_error({"serve", "--stop", "--socket", sock, "--color", "never"},
                    "--color is an option of prompt and talk, not of serve", "serve");
  check_usage_error({"call", "--permission", "allow", "m", "--", "true"},
                    "call does not take --permission: tether call answers no request of the bridge's (it speaks only "
                    "the JSON-RPC it is given)",
                    "call");
  check_usage_error({"call", "--allow-fs", "m", "--", "true"},
                    "call does not take --allow-fs: tether call answers no request of the bridge's (it speaks only "
                    "the JSON-RPC it is given)",
                    "call");
  check_usage_error({"call", "--retries", "1", "m", "--", "true"},
                    "call does not take --retries: tether call never sends a request twice (it may not be idempotent)",
                    "call");
  check_usage_error({"call", "-q", "m", "--", "true"}, "-q is an option of batch, log, prompt and talk, not of call", "call");
}

TEST_CASE("--help: metavars that say what the value is, and only the options the command uses") {
  auto help = [](const std::string& command) {
    auto r = run_tether({command, "--help"});
    CHECK(r.shell_status() == 0);
    return r.out;
  };
  auto has_line = [](const std::string& text, const std::string& start) {
    for (const auto& l : lines(text))
      if (l.rfind("  " + start + " ", 0) == 0 || l == "  " + start) return true;
    return false;
  };
  for (std::string command : {"talk", "prompt", "batch", "call", "serve"}) {
    CAPTURE(command);
    std::string h = help(command);
    // CLI11's type names, validator ranges and {choice,sets} are gone from the option lines.
    for (const auto& l : lines(h)) {
      if (l.rfind("  -", 0) != 0) continue;
      const std::string names = l.substr(0, l.find("  ", 2));  // the column before the description
      CAPTURE(names);
      for (const char* type : {"TEXT", "FLOAT", "UINT", "INT", "NONNEGATIVE", "POSITIVE", "{", "Excludes"})
        CHECK(names.find(type) == std::string::npos);
    }
    for (const char* opt : {"--cwd DIR", "--max-restarts N", "--restart-window SECS", "--restart-delay SECS",
                            "--heartbeat SECS", "--bridge-stderr tail|pass|FILE", "--trace FILE", "--max-line BYTES",
                            "--config FILE"})
      CHECK_MESSAGE(has_line(h, opt), opt);
  }
  for (std::string command : {"talk", "prompt", "batch"}) {
    CAPTURE(command);
    std::string h = help(command);
    for (const char* opt : {"--timeout SECS", "--retries N", "--permission ask|allow|allow-always|deny", "--allow-fs",
                            "-q,--quiet", "-v,--verbose", "--connect[=NAME|PATH]", "--set KEY=VALUE", "--mode ID"})
      CHECK_MESSAGE(has_line(h, opt), opt);
  }
  std::string batch = help("batch");
  CHECK(has_line(batch, "-j,--jobs N"));
  CHECK(has_line(batch, "--journal FILE"));
  CHECK(has_line(batch, "--shard K/N"));
  CHECK(has_line(batch, "--session per-item|shared"));
  CHECK(has_line(help("prompt"), "--repeat N"));
  CHECK(has_line(help("talk"), "--color auto|always|never"));

  std::string serve = help("serve");
  CHECK(has_line(serve, "--name NAME"));
  CHECK(has_line(serve, "--socket PATH"));
  for (const char* gone : {"--timeout", "--retries", "--permission", "--color", "--quiet"})
    CHECK_MESSAGE(serve.find(gone) == std::string::npos, gone);
  std::string call = help("call");
  for (const char* gone : {"--retries", "--permission", "--allow-fs", "--color", "--quiet", "--verbose"})
    CHECK_MESSAGE(call.find(gone) == std::string::npos, gone);
}

TEST_CASE("the config file: keys a command does not use are checked, then ignored; typos are named") {
  // Keys of options call does not offer: no error, the bridge runs (and exits: 69).
  auto ignored = write_config("ignored.toml",
                              "permission = \"allow\"\nallow_fs = true\nretries = 2\ncolor = \"never\"\nquiet = true\n");
  auto r = run_tether({"call", "--config", ignored, "m", "--", "true"});
  CHECK(r.shell_status() == 69);
  CHECK(r.err.find(".toml") == std::string::npos);

  // A bad value is an error for every command, whether or not it uses the key.
  auto bad = write_config("bad.toml", "retries = -1\n");
  r = run_tether({"call", "--config", bad, "m", "--", "true"});
  CHECK(r.shell_status() == 78);
  CHECK(lines(r.err) == std::vector<std::string>{"tether: " + bad + ":1:11: retries: expected a whole number ≥ 0, got \"-1\""});

  auto zero = write_config("zero.toml", "max_line = 0\n");
  r = run_tether({"call", "--config", zero, "m", "--", "true"});
  CHECK(r.shell_status() == 78);
  CHECK(lines(r.err) ==
        std::vector<std::string>{"tether: " + zero + ":1:12: max_line: expected a size in bytes (a whole number ≥ 1), got \"0\""});

  auto typo = write_config("typo.toml", "timeot = 5\n");
  r = run_tether({"call", "--config", typo, "m", "--", "true"});
  CHECK(r.shell_status() == 78);
  CHECK(lines(r.err) == std::vector<std::string>{"tether: " + typo + ":1:1: unknown key 'timeot'; did you mean timeout?"});
}

TEST_CASE("an option given twice: the last one wins, as with most tools; repeatable ones keep all") {
  // The last --timeout decides: 0.5 s cuts the 5 s turn short (exit 75), 30 s lets "hello" through.
  auto cut = run_tether({"prompt", "--timeout", "30", "--timeout", "0.5", "/sleep 5000 hi"});
  CHECK(!cut.timed_out);
  CHECK(cut.shell_status() == 75);
  auto r = run_tether({"prompt", "--timeout", "abc", "--timeout", "5", "--retries", "0", "--retries", "0", "hello"});
  // Every value is still checked, the overridden one too.
  CHECK(r.shell_status() == 64);
  CHECK(lines(r.err).front() == R"(tether: --timeout: expected seconds (a number ≥ 0), got "abc")");
  r = run_tether({"prompt", "--timeout", "1", "--timeout", "30", "--retries", "0", "--retries", "1", "hello"});
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("hello") != std::string::npos);
  r = run_tether({"prompt", "--set", "a", "--set", "b=1", "hi"});  // both kept: the first is checked
  CHECK(r.shell_status() == 64);
  CHECK(r.err.find(R"(--set: expected KEY=VALUE (an option id of the agent and its value), got "a")") != std::string::npos);
}

TEST_CASE("permission = \"ask\" in the config file: prompt and batch deny without refusing (talk at a terminal asks: launch_rules_test)") {
  auto ask = write_config("ask.toml", "permission = \"ask\"\n");
  // The demo agent asks for permission when the prompt says "edit"; denied, it says so.
  auto r = run_tether({"prompt", "--config", ask, "please edit notes"});
  CHECK(r.shell_status() == 0);
  CHECK(r.err.find("cannot ask anyone") == std::string::npos);
  CHECK(r.out.find("Permission denied") != std::string::npos);
  r = run_tether({"batch", "--config", ask});  // no input: nothing to do, but no refusal either
  CHECK(r.shell_status() == 0);
  // On the command line, `ask` in prompt is still a mistake worth naming.
  r = run_tether({"prompt", "--permission", "ask", "hi"});
  CHECK(r.shell_status() == 64);
}

// Issue 15, named agents: an [agents.NAME] table (command, env) runs under --agent/-A in every
// command, a syntax error names the file and line, a command's section is its own, flags win.
TEST_CASE("named agents from the config file: --agent and -A, their env, default_agent, and mistakes") {
  // The agent's command checks that its env reached it, else it exits and tether reports 69.
  auto agents = write_config("agents.toml", "[agents.demo2]\ncommand = [\"sh\", \"-c\", \"test \\\"$FOO\\\" = bar && exec \\\"$0\\\" demo-agent\", \"" +
                                                tether_bin() + "\"]\nenv = { FOO = \"bar\" }\n");
  auto r = run_tether({"prompt", "--config", agents, "-A", "demo2", "hi"});
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("Echo: hi") != std::string::npos);
  r = run_tether({"talk", "--config", agents, "--agent", "demo2", "-q"}, "hello there\n");
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("Echo: hello there") != std::string::npos);
  auto by_default = write_config("default.toml", "default_agent = \"demo2\"\n[agents.demo2]\ncommand = [\"" + tether_bin() +
                                                     "\", \"demo-agent\"]\n");
  r = run_tether({"config", "--config", by_default, "--for", "prompt"});
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("agent = \"demo2\"  # " + by_default + ":1:1\n") != std::string::npos);

  r = run_tether({"prompt", "--config", agents, "-A", "demo-2", "hi"});
  CHECK(r.shell_status() == 64);
  CHECK(lines(r.err).front() == "tether: unknown agent 'demo-2'; did you mean demo2? (`tether agents` lists the agents)");
  r = run_tether({"prompt", "--config", agents, "-A", "demo2", "hi", "--", "cat"});
  CHECK(r.shell_status() == 64);
  CHECK(lines(r.err).front() == "tether: --agent demo2 and a bridge command after -- both name the agent: give one");

  auto broken = write_config("broken.toml", "timeout = 5\n[agents.demo2\ncommand = []\n");
  r = run_tether({"talk", "--config", broken, "--agent", "demo2"});
  CHECK(r.shell_status() == 78);
  CHECK(r.err.rfind("tether: " + broken + ":2:", 0) == 0);
}

TEST_CASE("command sections: [talk] is talk's alone; flags win over every layer") {
  // allow under [talk] would let the demo agent edit; prompt keeps its own default (deny).
  auto talk_only = write_config("talk_only.toml", "[talk]\npermission = \"allow\"\n[prompt]\ntimeout = 0.3\n");
  auto r = run_tether({"prompt", "--config", talk_only, "--timeout", "30", "please edit notes"});
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("Permission denied") != std::string::npos);
  auto ask = write_config("talk_ask.toml", "[talk]\npermission = \"ask\"\n");
  r = run_tether({"prompt", "--config", ask, "hi"});
  CHECK(r.shell_status() == 0);
  // [prompt] timeout = 0.3 cuts a 1.5 s turn; --timeout on the command line wins over it.
  r = run_tether({"prompt", "--config", talk_only, "/sleep 1500 hi"});
  CHECK(r.shell_status() == 75);
  r = run_tether({"config", "--config", talk_only, "--for", "prompt", "--json"});
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("\"source\": \"" + talk_only + ":4:1\"") != std::string::npos);
}

TEST_CASE("--mcp and the config's mcp reach session/new as stdio servers; tether agents lists the agents") {
  auto with_mcp = write_config("mcp.toml", "[agents.d]\ncommand = [\"" + tether_bin() +
                                               "\", \"demo-agent\"]\nmcp = [{ name = \"fs\", command = [\"mcp-fs\", \"/srv\"], env = { A = \"1\" } }]\n");
  std::string trace = scratch_dir() + "/mcp.trace";
  auto r = run_tether({"prompt", "--config", with_mcp, "-A", "d", "--trace", trace, "--mcp", "git=uvx mcp-git --repo '/a b'", "hi"});
  CHECK(r.shell_status() == 0);
  std::ifstream in(trace);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find(R"("method":"session/new","params":{"cwd":)") != std::string::npos);
  CHECK(text.find(R"("mcpServers":[{"args":["mcp-git","--repo","/a b"],"command":"uvx","env":[],"name":"git"},)"
                  R"({"args":["/srv"],"command":"mcp-fs","env":[{"name":"A","value":"1"}],"name":"fs"}])") != std::string::npos);
  r = run_tether({"prompt", "--mcp", "nothing", "hi"});
  CHECK(r.shell_status() == 64);
  // talk's /status lists them; an http server the demo agent does not advertise is left out.
  r = run_tether({"talk", "--mcp", "a=b c", "--mcp", "docs=https://x/mcp"}, "/status\n");
  CHECK(r.shell_status() == 0);
  CHECK(r.out.find("mcp:       a: b c\nmcp:       docs: http https://x/mcp (left out: the agent takes no http servers)\n") !=
        std::string::npos);

  r = run_tether({"agents", "--config", with_mcp, "--json"});
  CHECK(r.shell_status() == 0);
  for (const char* name : {"\"claude\"", "\"codex\"", "\"gemini\"", "\"qwen\"", "\"opencode\"", "\"demo\"", "\"d\""})
    CHECK_MESSAGE(r.out.find(std::string("\"name\": ") + name) != std::string::npos, name);
  CHECK(r.out.find("\"source\": \"" + with_mcp + ":1\"") != std::string::npos);
}
