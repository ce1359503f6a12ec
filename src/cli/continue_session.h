// Which ACP session a front-end opens (issue 15): a new one, or one to continue. `-c/--continue`
// continues the most recent conversation with this agent in this directory (from the turn log),
// `--session ID` a given one (an id from the log, from `tether log`, or from the agent's
// session/list; a conversation number of `tether log` works too), `-s/--name NAME` the session
// bound to NAME for this agent and directory (in the turn log), or a new one that NAME is then
// bound to. The session itself is opened by acp::AcpSession (ClientOptions::session_id): resume,
// else load, else exit 69.
//
// The agent is named by cli::agent_label, the directory is --cwd (absolute): the same keys the
// turn log records conversations under.
#pragma once

#include <string>
#include <variant>

#include "cli/common.h"

namespace CLI {
class App;
}

namespace tether::cli {

struct ContinueOptions {
  bool last = false;    // -c, --continue
  std::string session;  // --session ID
  std::string name;     // -s, --name NAME
  bool any() const { return last || !session.empty() || !name.empty(); }
};

// Adds -c/--continue, --session ID and -s/--name NAME (one of them at most).
void add_continue_options(CLI::App& app, ContinueOptions& options);

// What the options mean once the agent and cwd are known (after finish_options / plan_launch).
struct ContinuePlan {
  std::string session_id;  // the session to continue; "" for a new one
  std::string bind_name;   // -s NAME used for the first time: bind it to the new session once open
};

// Looks the session up in the turn log. -c with no log (--no-log) or no earlier conversation,
// and -s with no log: a SetupError (exit 64) that says what to do instead. A log that cannot be
// opened: a SetupError (exit 74 for -c and -s; --session ID goes on with the id as given).
std::variant<ContinuePlan, SetupError> plan_continue(const ContinueOptions& continued, const CommonOptions& common);

// After the session opened: binds -s NAME (first use) to it in the turn log. A failure is a
// warning on stderr (unless -q); the session goes on.
void bind_session_name(const ContinuePlan& plan, const CommonOptions& common, const std::string& session_id);

}  // namespace tether::cli
