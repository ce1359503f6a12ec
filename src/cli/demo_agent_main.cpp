#include "cli/demo_agent_main.h"

#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <memory>

#include "acp/demo_agent.h"

namespace tether::cli {

std::function<int()> setup_demo_agent(CLI::App& app, const std::vector<std::string>& /*bridge_argv*/) {
  auto* sub = app.add_subcommand("demo-agent",
                                 "Run the built-in demo ACP agent on stdin/stdout (the default bridge)");
  sub->footer(
      "Trigger words in a prompt: /chunks N, /flood N, /big BYTES, /sleep MS, /crash, /hang, /exit CODE, "
      "/stop REASON, /error, /read PATH, /write PATH. A prompt that mentions \"edit\" or \"write\" asks for "
      "permission first.");
  auto images = std::make_shared<bool>(true);
  sub->add_flag_callback("--no-images", [images] { *images = false; },
                         "Say that images are not accepted in prompts (promptCapabilities.image), as many agents do");
  return [images] {
    // main() blocked the signals tether reads from a signalfd; an agent takes them the default
    // way, so that the stop ladder's SIGTERM (or a Ctrl-C when run by hand) ends it.
    sigset_t all;
    sigfillset(&all);
    ::pthread_sigmask(SIG_UNBLOCK, &all, nullptr);
    return acp::run_demo_agent(STDIN_FILENO, STDOUT_FILENO, *images);
  };
}

}  // namespace tether::cli
