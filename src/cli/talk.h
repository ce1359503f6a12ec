// `tether talk`: the interactive REPL. On a terminal it edits lines with libedit (history, Ctrl-R,
// pasted lines kept together), streams each answer as it arrives with thoughts, tool calls, plans
// and usage set apart, cancels only the answer on Ctrl-C, asks the person about permission
// requests, and survives its bridge: a crash is restarted and the prompt retried with one line of
// explanation; past the restart budget the REPL stays up and /restart tries again. With stdin not
// a terminal it reads one prompt per line (slash commands included) and exits at end of input.
//
// With --connect it talks through a `tether serve` server, in the server's main session: other
// clients' turns are drawn between ours (their prompt first), a permission request the server
// routes to us between our turns is asked at once (the line being typed waits), /restart
// restarts the server's bridge, and /status and /stderr ask the server.
//
// One thread runs one poll loop over stdin, the signalfd and the session's event fd; it never
// touches an fd of the bridge.
//
// The machinery is the Talk class (talk_private.h), defined section by section in talk*.cpp; it
// launches through cli::launch() (launch.h) like prompt and batch.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace CLI {
class App;
}

namespace tether::cli {

struct TalkOptions {
  CommonOptions common;
  bool no_history = false;  // --no-history: neither read nor write the history file
  bool events = false;      // --events (script mode): one JSON line per turn event on stdout
};

int run_talk(TalkOptions& options);

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_talk(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
