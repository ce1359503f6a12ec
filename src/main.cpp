// tether's entry point: CLI11 wiring only. Parse, pick the subcommand, return its exit code.
#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "base/std_fds.h"
#include "cli/batch.h"
#include "cli/call.h"
#include "cli/common.h"
#include "cli/completion.h"
#include "cli/demo_agent_main.h"
#include "cli/log_cmd.h"
#include "cli/prompt.h"
#include "cli/serve.h"
#include "cli/talk.h"
#include "cli/turn_log.h"
#include "cli/usage.h"
#include "proc/child.h"
#include "tether_config.h"

int main(int argc, char** argv) {
  using namespace tether;
  // First of all: a closed stdin, stdout or stderr must not become the next file opened.
  base::reserve_standard_fds();
  // Before any thread exists: signals are read from a signalfd by each front-end.
  cli::block_signals();
  proc::become_subreaper();

  // Everything after the first `--` is the bridge command, never parsed as tether's options.
  std::vector<std::string> bridge;
  int own_argc = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      own_argc = i;
      bridge.assign(argv + i + 1, argv + argc);
      break;
    }
  }

  CLI::App app{"tether: a supervisor for AI-agent bridges that speak JSON-RPC over stdio", "tether"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tether ") + TETHER_VERSION);
  app.footer("Run `tether COMMAND --help` for a command's options; `man tether` for the whole story.");
  app.formatter(cli::help_formatter());  // before the subcommands: they inherit it

  std::map<std::string, std::function<int()>> runs;
  runs["batch"] = cli::setup_batch(app, bridge);
  runs["call"] = cli::setup_call(app, bridge);
  runs["completion"] = cli::setup_completion(app, bridge);
  runs["demo-agent"] = cli::setup_demo_agent(app, bridge);
  runs["log"] = cli::setup_log(app, bridge);
  runs["prompt"] = cli::setup_prompt(app, bridge);
  runs["serve"] = cli::setup_serve(app, bridge);
  runs["talk"] = cli::setup_talk(app, bridge);

  // CLI11 would say "A subcommand is required" for a misspelt one: name it, and the real ones.
  if (own_argc > 1 && argv[1][0] != '-') {
    if (auto err = cli::unknown_command(app, argv[1])) {
      cli::print_usage_error(*err);
      return cli::kExitUsage;
    }
  }
  try {
    app.parse(own_argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    cli::print_usage_error(cli::describe_parse_error(app, e));
    return cli::kExitUsage;
  }
  for (CLI::App* sub : app.get_subcommands()) {
    auto it = runs.find(sub->get_name());
    if (it == runs.end()) continue;
    int status = it->second();
    cli::close_turn_log();  // the turns it logged are stored before we exit
    return status;
  }
  return cli::kExitUsage;
}
