// Continued and named sessions (see continue_session.h): the lookups in the turn log.
#include "cli/continue_session.h"

#include <CLI/CLI.hpp>
#include <cctype>
#include <memory>

#include "cli/turn_log.h"
#include "store/log_db.h"

namespace tether::cli {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty() || s.size() > 18) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

// The turn log, opened for a lookup; a SetupError when it is turned off or cannot be opened.
std::variant<std::unique_ptr<store::LogDb>, SetupError> open_log(const CommonOptions& o, const std::string& flag) {
  auto path = log_path(o);
  if (!path)
    return SetupError{flag + " needs the turn log, which --no-log (or log = false in the config file) turns off", kExitUsage};
  auto db = store::LogDb::open(*path);
  if (auto* err = std::get_if<std::string>(&db)) return SetupError{flag + ": cannot open the turn log: " + *err, kExitIoErr};
  return std::move(std::get<std::unique_ptr<store::LogDb>>(db));
}

std::string in_quotes(const std::string& s) { return "\"" + s + "\""; }

}  // namespace

void add_continue_options(CLI::App& app, ContinueOptions& o) {
  const char* group = "Session";
  auto* c = app.add_flag("-c,--continue", o.last,
                         "Continue the most recent conversation with this agent in this directory (from the turn log)")
                ->group(group);
  auto* s = app.add_option("--session", o.session,
                           "Continue the session ID (from `tether log`, talk's /sessions or the agent's own list)")
                ->type_name("ID")
                ->group(group);
  auto* n = app.add_option("-s,--name", o.name,
                           "The session named NAME for this agent and directory: created and named on first use, "
                           "continued after that")
                ->type_name("NAME")
                ->group(group);
  c->excludes(s)->excludes(n);
  s->excludes(n);
}

std::variant<ContinuePlan, SetupError> plan_continue(const ContinueOptions& k, const CommonOptions& o) {
  ContinuePlan plan;
  if (!k.any()) return plan;
  const std::string agent = agent_label(o);
  if (!k.session.empty()) {
    plan.session_id = k.session;
    // A number may be a conversation of `tether log` rather than the agent's own id.
    if (!all_digits(k.session)) return plan;
    auto path = log_path(o);
    if (!path) return plan;
    auto db = store::LogDb::open(*path);
    auto* log = std::get_if<std::unique_ptr<store::LogDb>>(&db);
    if (!log || (*log)->conversation_by_session(k.session)) return plan;
    if (auto conv = (*log)->conversation(std::stoll(k.session)); conv && !conv->session_id.empty()) {
      if (conv->agent != agent)
        return SetupError{"--session " + k.session + ": conversation " + k.session + " of the turn log is with " +
                              in_quotes(conv->agent) + ", not with " + in_quotes(agent) + "; use --agent to pick that agent",
                          kExitUsage};
      plan.session_id = conv->session_id;
    }
    return plan;
  }
  const std::string flag = k.last ? "-c" : "-s " + k.name;
  auto opened = open_log(o, flag);
  if (auto* err = std::get_if<SetupError>(&opened)) return *err;
  auto& db = *std::get<std::unique_ptr<store::LogDb>>(opened);
  if (k.last) {
    auto conv = db.latest_conversation(agent, o.cwd);
    if (!conv)
      return SetupError{"no earlier conversation with " + agent + " in " + o.cwd + " to continue; start one without -c",
                        kExitUsage};
    plan.session_id = conv->session_id;
    return plan;
  }
  if (auto bound = db.session_for_name(agent, o.cwd, k.name)) plan.session_id = *bound;
  else plan.bind_name = k.name;
  return plan;
}

void bind_session_name(const ContinuePlan& plan, const CommonOptions& o, const std::string& session_id) {
  if (plan.bind_name.empty() || session_id.empty()) return;
  auto opened = open_log(o, "-s " + plan.bind_name);
  std::string why;
  if (auto* err = std::get_if<SetupError>(&opened)) why = err->message;
  else if (!std::get<std::unique_ptr<store::LogDb>>(opened)->bind_name(agent_label(o), o.cwd, plan.bind_name, session_id))
    why = "cannot write the turn log";
  if (!why.empty() && !o.quiet)
    error_line("warning: the name " + plan.bind_name + " was not bound to session " + session_id + ": " + why);
}

}  // namespace tether::cli
