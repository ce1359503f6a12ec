// `tether prompt`: one scripted prompt to an ACP agent, the answer on stdout (DESIGN §7). The
// answer is streamed chunk by chunk when stdout is a terminal and written once the turn completed
// otherwise (so a retried turn never leaves a partial answer in a script's output); tool calls,
// plans, thoughts and notices go to stderr as short lines. `--json` prints one JSON object per
// turn instead. `--repeat N` sends the same prompt N times in one session (benchmarks).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace tether::cli {

struct PromptOptions {
  CommonOptions common;
  std::vector<std::string> text;  // words joined by spaces; empty or "-": read stdin
  bool json = false;              // --json
  std::optional<bool> stream;     // --stream / --no-stream; default: stdout is a terminal
  int repeat = 1;                 // --repeat N
  std::vector<std::string> attach;  // -a/--attach PATH (repeatable; "-": stdin)
  bool no_stdin = false;          // --no-stdin: never read stdin as context under the words
  bool events = false;            // --events: one JSON line per turn event (cli/event_stream.h)
};

int run_prompt(PromptOptions& options);

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_prompt(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
