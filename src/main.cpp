// tether's entry point: CLI11 wiring only. Parse, pick the subcommand, return its exit code.
#include <CLI/CLI.hpp>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/std_fds.h"
#include "cli/agents.h"
#include "cli/batch.h"
#include "cli/call.h"
#include "cli/common.h"
#include "cli/completion.h"
#include "cli/config_cmd.h"
#include "cli/demo_agent_main.h"
#include "cli/log_cmd.h"
#include "cli/prompt.h"
#include "cli/serve.h"
#include "cli/talk.h"
#include "cli/turn_log.h"
#include "cli/usage.h"
#include "proc/child.h"
#include "tether_config.h"

namespace {

using Runs = std::map<std::string, std::function<int()>>;
using Setup = std::function<int()> (*)(CLI::App&, const std::vector<std::string>&);
struct Command {
  const char* name;
  Setup setup;
};

// Every command, by its name on the command line.
const Command kCommands[] = {
    {"agents", [](CLI::App& app, const std::vector<std::string>&) { return tether::cli::setup_agents(app); }},
    {"batch", tether::cli::setup_batch},
    {"call", tether::cli::setup_call},
    {"completion", tether::cli::setup_completion},
    {"config", [](CLI::App& app, const std::vector<std::string>&) { return tether::cli::setup_config(app); }},
    {"demo-agent", tether::cli::setup_demo_agent},
    {"log", tether::cli::setup_log},
    {"prompt", tether::cli::setup_prompt},
    {"serve", tether::cli::setup_serve},
    {"talk", tether::cli::setup_talk},
};

// The whole app: the top level's options and help, and every command.
void setup_all(CLI::App& app, const std::vector<std::string>& bridge, Runs& runs) {
  app.name("tether");
  app.description("tether: a supervisor for AI-agent bridges that speak JSON-RPC over stdio");
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("tether ") + TETHER_VERSION);
  app.footer("Run `tether COMMAND --help` for a command's options; `man tether` for the whole story.");
  app.formatter(tether::cli::help_formatter());  // before the subcommands: they inherit it
  for (const Command& c : kCommands) runs[c.name] = c.setup(app, bridge);
}

// Every command's options, set up when first asked for (cli::set_command_catalog_builder) and
// kept, with the options structs they fill, until the process ends.
const CLI::App* all_commands() {
  static const std::vector<std::string> no_bridge;
  static CLI::App app;
  static Runs runs;
  setup_all(app, no_bridge, runs);
  return &app;
}

int run_and_close(const std::function<int()>& run) {
  int status = run();
  tether::cli::close_turn_log();  // the turns it logged are stored before we exit
  return status;
}

// `tether COMMAND ...` with only COMMAND's options set up: building all ten commands' CLI11
// options costs ~0.4 ms, most of what a one-shot `tether prompt` spends before its work, and
// again in the demo agent it spawns. nullopt when the words do not parse (nothing has run): a
// usage error, --help or --version is told by the whole app, since its sentences name the other
// commands. Never for `completion` and `config`, which read every command's options.
std::optional<int> run_one_command(int argc, char** argv, const std::vector<std::string>& bridge) {
  if (argc < 2 || argv[1] == std::string_view("completion") || argv[1] == std::string_view("config")) return std::nullopt;
  for (const Command& c : kCommands) {
    if (argv[1] != std::string_view(c.name)) continue;
    CLI::App app;
    app.require_subcommand(1);
    auto run = c.setup(app, bridge);
    bool parsed = false;
    try {
      app.parse(argc, argv);
      parsed = true;
    } catch (const CLI::ParseError&) {
    }
    if (!parsed) {
      tether::cli::forget_registered_options(app);  // they die with `app`
      return std::nullopt;
    }
    tether::cli::set_command_catalog_builder(all_commands);  // a config file is checked against all
    return run_and_close(run);
  }
  return std::nullopt;
}

}  // namespace

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
  if (auto status = run_one_command(own_argc, argv, bridge)) return *status;

  CLI::App app;
  Runs runs;
  setup_all(app, bridge, runs);
  cli::set_command_catalog(&app);

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
    if (it != runs.end()) return run_and_close(it->second);
  }
  return cli::kExitUsage;
}
