// Unit tests of the config file and of finish_options' precedence (cli/config.h, cli/common.h):
// TOML read into settings, sections and agents; errors that name the file, line, column and key;
// the order command line > agent > [command] > top level > default; the agent's env and MCP
// servers; the mcpServers param; agent_label. No processes: CLI11 apps built here, config files
// in a scratch directory.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <deque>
#include <filesystem>
#include <memory>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/agents.h"
#include "cli/common.h"
#include "cli/config.h"

using namespace tether::cli;
using nlohmann::json;

namespace {

ConfigKeys test_keys() {
  ConfigKeys k;
  k.top = {"cwd", "timeout", "retries", "permission", "quiet", "mode", "model", "auth", "color"};
  k.sections["talk"] = k.top;
  k.sections["prompt"] = k.top;
  k.sections["serve"] = {"cwd", "mode", "model", "auth"};
  return k;
}

std::string error_of(const std::string& text) {
  auto r = load_config_text(text, "/c.toml", test_keys());
  REQUIRE(std::holds_alternative<std::string>(r));
  return std::get<std::string>(r);
}

ConfigFile read(const std::string& text) {
  auto r = load_config_text(text, "/c.toml", test_keys());
  if (auto* err = std::get_if<std::string>(&r)) FAIL(*err);
  return std::get<ConfigFile>(r);
}

// A command as main sets it up: its own app under a root, the common and session options.
struct Command {
  CLI::App root{"test"};
  CommonOptions options;
  CLI::App* sub;
  explicit Command(const std::string& name) {
    sub = root.add_subcommand(name);
    add_common_options(*sub, options);
    add_session_options(*sub, options);
  }
  std::optional<SetupError> run(std::vector<std::string> args, const std::string& config) {
    args.insert(args.begin(), sub->get_name());
    args.insert(args.begin(), "tether");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    root.parse(static_cast<int>(argv.size()), const_cast<char**>(argv.data()));
    options.config = config;
    return finish_options(options);
  }
};

// add_common_options registers each options struct for the process's life (main's are): the
// commands of these tests live as long.
Command& make_command(const std::string& name) {
  static std::deque<std::unique_ptr<Command>> all;
  all.push_back(std::make_unique<Command>(name));
  return *all.back();
}

std::string write_file(const std::string& name, const std::string& text) {
  std::string dir = "/tmp/tether-config-unit-" + std::to_string(::getpid());
  ::mkdir(dir.c_str(), 0700);
  std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

struct CleanEnv {
  CleanEnv() {
    ::unsetenv("TETHER_AGENT");
    ::unsetenv("TETHER_BRIDGE");
  }
  ~CleanEnv() { std::filesystem::remove_all("/tmp/tether-config-unit-" + std::to_string(::getpid())); }
};

}  // namespace

TEST_CASE("the file: top-level keys, command sections, agents with env and MCP servers, in the order written") {
  auto c = read(R"(timeout = 30
default_agent = "mine"
[talk]
permission = "ask"
[agents.mine]
command = ["my-agent", "--acp"]
env = { TOKEN = "x" }
cwd = "/tmp"
mcp = [{ name = "fs", command = ["mcp-fs", "/srv"], env = { A = "1" } },
       { name = "docs", type = "http", url = "https://example.com/mcp", headers = { Authorization = "Bearer t" } }]
)");
  REQUIRE(c.top.size() == 1);
  CHECK(c.top[0].key == "timeout");
  CHECK(c.where(c.top[0].line, c.top[0].column) == "/c.toml:1:1");
  REQUIRE(c.default_agent);
  CHECK(c.default_agent->value.text == "mine");
  REQUIRE(c.sections["talk"].size() == 1);
  CHECK(c.sections["talk"][0].value.text == "ask");
  const AgentDef& a = c.agents.at("mine");
  CHECK(a.command == std::vector<std::string>{"my-agent", "--acp"});
  CHECK(a.env == std::vector<std::pair<std::string, std::string>>{{"TOKEN", "x"}});
  CHECK(a.origin == "/c.toml:5");
  REQUIRE(a.settings.size() == 1);
  CHECK(a.settings[0].key == "cwd");
  REQUIRE(a.mcp.size() == 2);
  CHECK(a.mcp[0].command == "mcp-fs");
  CHECK(a.mcp[0].args == std::vector<std::string>{"/srv"});
  CHECK(a.mcp[1].type == "http");
  CHECK(a.mcp[1].headers.size() == 1);
}

TEST_CASE("errors name the file, line, column and key; a misspelt key gets did-you-mean") {
  CHECK(error_of("timeout = 30\nretries = [1\n").rfind("/c.toml:2:", 0) == 0);
  CHECK(error_of("timeot = 5\n") == "/c.toml:1:1: unknown key 'timeot'; did you mean timeout?");
  CHECK(error_of("[talk]\npermision = \"ask\"\n") == "/c.toml:2:1: unknown key 'talk.permision'; did you mean talk.permission?");
  CHECK(error_of("[serve]\ntimeout = 5\n") == "/c.toml:2:1: serve.timeout: means nothing for tether serve (it has no --timeout)");
  CHECK(error_of("[promt]\ntimeout = 5\n") == "/c.toml:1:2: unknown key 'promt'; did you mean prompt?");
  CHECK(error_of("[agents.x]\ncommand = [\"a\"]\ncomand = 1\n") ==
        "/c.toml:3:1: unknown key 'agents.x.comand'; did you mean agents.x.command?");
  CHECK(error_of("[agents.x]\nenv = { A = \"1\" }\n") == "/c.toml:1:9: agents.x: an agent needs command = [\"program\", \"arg\", ...]");
  CHECK(error_of("[agents.x]\ncommand = [\"a\", 1]\n") == "/c.toml:2:11: agents.x.command: expected an array of strings, got an array");
  CHECK(error_of("[agents.x]\ncommand = [\"a\"]\ntimeout = 3\n").find("put timeout at the top level") != std::string::npos);
  CHECK(error_of("mcp = [{ name = \"a\" }]\n").find("mcp[0] (a): a stdio MCP server needs command") != std::string::npos);
  CHECK(error_of("mcp = [{ name = \"a\", type = \"ws\", url = \"x\" }]\n").find("expected \"stdio\", \"http\" or \"sse\"") !=
        std::string::npos);
  CHECK(error_of("default_agent = \"a\"\nbridge = [\"b\"]\n").find("bridge and default_agent both name the agent") != std::string::npos);
}

TEST_CASE("what toml++ must not see is refused first: control characters, non-ASCII outside strings") {
  // Found by fuzz_config: toml++ 3.3 aborts (an assertion) or reaches __builtin_unreachable on these.
  CHECK(error_of(std::string("timeout = 3\n[\0]\n", 16)) == "/c.toml:2:2: control character 0x00 (TOML allows none but tab and line ends)");
  CHECK(error_of("mode = caf\xC3\xA9\n") == "/c.toml:1:11: a non-ASCII character outside a string or a comment (quote the value)");
  CHECK(error_of("[&\"a\"]\n").rfind("/c.toml:1:", 0) == 0);  // a parse error, not an abort
  // Non-ASCII inside strings (all four kinds) and comments is TOML, and passes.
  ConfigFile ok = read("# caf\xC3\xA9\nmode = \"caf\xC3\xA9\"\nmodel = 'caf\xC3\xA9'\nauth = \"\"\"caf\xC3\xA9\n\xC3\xA9\"\"\"\n");
  CHECK(ok.top.size() == 3);
}

TEST_CASE("precedence: command line > agent table > [command] section > top level > default") {
  CleanEnv env;
  auto path = write_file("p.toml", R"(timeout = 10
retries = 4
mode = "top"
[prompt]
timeout = 20
mode = "section"
permission = "allow"
[agents.a]
command = ["/bin/true"]
mode = "agent"
)");
  {
    Command& cmd = make_command("prompt");
    REQUIRE_FALSE(cmd.run({"--agent", "a"}, path));
    CHECK(cmd.options.timeout == 20);      // section over top level
    CHECK(cmd.options.retries == 4);       // top level over default
    CHECK(cmd.options.mode == "agent");    // agent over section
    CHECK(cmd.options.max_restarts == 3);  // default
    CHECK(cmd.options.sources["timeout"] == path + ":5:1");
    CHECK(cmd.options.sources["mode"] == "agent a, " + path + ":10:1");
    CHECK(cmd.options.sources.count("max_restarts") == 0);
    CHECK(cmd.options.agent == "a");
    CHECK(cmd.options.bridge == std::vector<std::string>{"/bin/true"});
  }
  {
    Command& cmd = make_command("prompt");
    REQUIRE_FALSE(cmd.run({"--agent", "a", "--timeout", "1", "--mode", "cli", "--retries", "0"}, path));
    CHECK(cmd.options.timeout == 1);  // flags always win
    CHECK(cmd.options.mode == "cli");
    CHECK(cmd.options.retries == 0);
    CHECK(cmd.options.sources["mode"] == "command line");
  }
  {
    // [prompt] is prompt's alone: talk gets the top level's.
    Command& cmd = make_command("talk");
    REQUIRE_FALSE(cmd.run({}, path));
    CHECK(cmd.options.timeout == 10);
    CHECK(cmd.options.mode == "top");
    CHECK(cmd.options.permission.empty());
    CHECK(cmd.options.agent == "demo");
  }
}

TEST_CASE("permission = \"ask\": under [talk] not for prompt; in [prompt] an error naming the place") {
  CleanEnv env;
  auto talk_ask = write_file("t.toml", "[talk]\npermission = \"ask\"\n");
  Command& prompt = make_command("prompt");
  REQUIRE_FALSE(prompt.run({}, talk_ask));
  CHECK(prompt.options.permission.empty());
  Command& talk = make_command("talk");
  REQUIRE_FALSE(talk.run({}, talk_ask));
  CHECK(talk.options.permission == "ask");
  auto prompt_ask = write_file("pa.toml", "[prompt]\npermission = \"ask\"\n");
  Command& p2 = make_command("prompt");
  auto err = p2.run({}, prompt_ask);
  REQUIRE(err);
  CHECK(err->exit_code == 78);
  CHECK(err->message == prompt_ask + ":2:14: prompt.permission: tether prompt cannot ask anyone for permission: use \"allow\", "
                                     "\"allow-always\" or \"deny\"");
}

TEST_CASE("-v on the command line beats quiet = true in the file") {
  CleanEnv env;
  auto path = write_file("q.toml", "quiet = true\n");
  Command& loud = make_command("prompt");
  REQUIRE_FALSE(loud.run({"-v"}, path));
  CHECK_FALSE(loud.options.quiet);
  Command& quiet = make_command("prompt");
  REQUIRE_FALSE(quiet.run({}, path));
  CHECK(quiet.options.quiet);
}

TEST_CASE("the agent: --agent, TETHER_AGENT, default_agent, presets replaced by a table; mistakes") {
  CleanEnv env;
  auto path = write_file("a.toml", R"(default_agent = "claude"
[agents.claude]
command = ["my-claude"]
env = { IS_SANDBOX = "1" }
mcp = [{ name = "fs", command = ["mcp-fs"] }, { name = "web", command = ["mcp-web"] }]
)");
  Command& by_default = make_command("prompt");
  REQUIRE_FALSE(by_default.run({}, path));
  CHECK(by_default.options.agent == "claude");
  CHECK(by_default.options.bridge == std::vector<std::string>{"my-claude"});  // the table replaces the preset
  CHECK(by_default.options.bridge_env == std::vector<std::string>{"IS_SANDBOX=1"});
  CHECK(by_default.options.sources["agent"] == path + ":1:1");

  Command& preset = make_command("prompt");
  REQUIRE_FALSE(preset.run({"-A", "codex", "--mcp", "fs=other-fs --root /x"}, path));
  CHECK(preset.options.bridge == std::vector<std::string>{"npx", "-y", "@zed-industries/codex-acp"});
  CHECK(preset.options.bridge_env.empty());
  REQUIRE(preset.options.mcp.size() == 1);
  CHECK(preset.options.mcp[0].args == std::vector<std::string>{"--root", "/x"});

  Command& flag_over_table = make_command("prompt");
  REQUIRE_FALSE(flag_over_table.run({"--mcp", "fs=other-fs"}, path));
  REQUIRE(flag_over_table.options.mcp.size() == 2);  // --mcp's fs, then the agent's web
  CHECK(flag_over_table.options.mcp[0].command == "other-fs");
  CHECK(flag_over_table.options.mcp[1].name == "web");

  ::setenv("TETHER_AGENT", "gemini", 1);
  Command& by_env = make_command("prompt");
  REQUIRE_FALSE(by_env.run({}, path));
  CHECK(by_env.options.bridge == std::vector<std::string>{"gemini", "--acp"});
  CHECK(by_env.options.sources["agent"] == "env TETHER_AGENT");
  ::unsetenv("TETHER_AGENT");

  Command& unknown = make_command("prompt");
  auto err = unknown.run({"--agent", "claud"}, path);
  REQUIRE(err);
  CHECK(err->exit_code == 64);
  CHECK(err->message.find("unknown agent 'claud'; did you mean claude?") == 0);

  Command& both = make_command("prompt");
  both.options.bridge = {"cat"};
  err = both.run({"--agent", "claude"}, path);
  REQUIRE(err);
  CHECK(err->exit_code == 64);
}

TEST_CASE("--mcp: NAME=COMMAND ARGS split into words, NAME=URL an http server") {
  auto s = std::get<tether::acp::McpServer>(parse_mcp_option("git=uvx mcp-server-git --repository '/a b'"));
  CHECK(s.name == "git");
  CHECK(s.command == "uvx");
  CHECK(s.args == std::vector<std::string>{"mcp-server-git", "--repository", "/a b"});
  auto h = std::get<tether::acp::McpServer>(parse_mcp_option("docs=https://example.com/mcp"));
  CHECK(h.type == "http");
  CHECK(std::holds_alternative<std::string>(parse_mcp_option("=x")));
  CHECK(std::holds_alternative<std::string>(parse_mcp_option("a=")));
}

TEST_CASE("mcpServers: stdio always, http and sse only when advertised") {
  tether::acp::McpServer stdio{"fs", "stdio", "mcp-fs", {"/srv"}, {{"A", "1"}}, {}, {}};
  tether::acp::McpServer http{"docs", "http", {}, {}, {}, "https://x/mcp", {{"H", "v"}}};
  std::vector<std::string> left_out;
  json none = tether::acp::mcp_servers_param({stdio, http}, json::object(), &left_out);
  CHECK(none == json::parse(R"([{"name":"fs","command":"mcp-fs","args":["/srv"],"env":[{"name":"A","value":"1"}]}])"));
  CHECK(left_out == std::vector<std::string>{"docs"});
  json both = tether::acp::mcp_servers_param({stdio, http}, json::parse(R"({"mcpCapabilities":{"http":true}})"));
  REQUIRE(both.size() == 2);
  CHECK(both[1] == json::parse(R"({"type":"http","name":"docs","url":"https://x/mcp","headers":[{"name":"H","value":"v"}]})"));
}

TEST_CASE("agent_label: the --agent name, demo, serve:NAME, else the program's name") {
  CommonOptions o;
  o.agent = "work";
  o.bridge = {"npx", "-y", "@zed-industries/claude-agent-acp"};
  CHECK(agent_label(o) == "work");
  o.agent.clear();
  CHECK(agent_label(o) == "claude-agent-acp");
  o.bridge = {"node", "/opt/lib/node_modules/@qwen-code/qwen-code/cli.js", "--acp"};
  CHECK(agent_label(o) == "qwen-code");
  o.bridge = {"/usr/local/bin/gemini", "--acp"};
  CHECK(agent_label(o) == "gemini");
  o.bridge = {self_exe(), "demo-agent"};
  CHECK(agent_label(o) == "demo");
  o.connect = "default";
  CHECK(agent_label(o) == "serve:default");
}

TEST_CASE("presets: the well-known agents and demo; check_installed finds a program on PATH") {
  ConfigFile none;
  for (const char* name : {"claude", "codex", "gemini", "qwen", "opencode", "demo"}) CHECK(find_agent(name, none));
  CHECK(check_installed({"sh", "-c", "true"}).ok);
  CHECK_FALSE(check_installed({"no-such-program-tether-test"}).ok);
}
