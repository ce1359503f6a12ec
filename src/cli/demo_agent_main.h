// `tether demo-agent`: runs the built-in ACP agent (acp/demo_agent.h) on stdin and stdout. It is
// the default bridge: tether runs `tether demo-agent` as a child process like any other bridge.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace tether::cli {

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_demo_agent(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
