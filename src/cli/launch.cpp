// The launch path of the front-ends (see launch.h): the colour and permission rules, and the
// steps from options to a bridge and its ACP session.
#include "cli/launch.h"

#include <stdlib.h>
#include <unistd.h>

#include "tether_config.h"

namespace tether::cli {

bool color_rule(std::string_view option, const char* no_color, const char* term, bool is_terminal) {
  if (option == "always") return true;
  if (option == "never") return false;
  if (no_color && *no_color) return false;  // https://no-color.org: set and not empty
  if (term && std::string_view(term) == "dumb") return false;
  return is_terminal;
}

bool use_color(std::string_view option, int fd) {
  return color_rule(option, ::getenv("NO_COLOR"), ::getenv("TERM"), ::isatty(fd) == 1);
}

std::variant<PermissionChoice, SetupError> permission_rule(std::string_view option, std::string_view command,
                                                           Asker asker, bool at_terminal, Source source) {
  const bool person = asker == Asker::person_at_terminal && at_terminal;
  if (option.empty()) return PermissionChoice{person ? acp::PermissionPolicy::ask : acp::PermissionPolicy::deny, {}};
  auto policy = acp::parse_policy(option);
  if (!policy)
    return SetupError{"--permission must be ask, allow, allow-always or deny, not '" + std::string(option) + "'", kExitUsage};
  if (*policy != acp::PermissionPolicy::ask || person) return PermissionChoice{*policy, {}};
  // `permission = "ask"` in the config file, which serves every command, means: ask where someone
  // can be asked. Elsewhere the command's own default (deny) applies, without a word each run.
  if (source == Source::config_file) return PermissionChoice{acp::PermissionPolicy::deny, {}};
  if (asker == Asker::nobody) {
    return SetupError{"tether " + std::string(command) +
                          " cannot ask anyone for permission: use --permission allow or --permission deny",
                      kExitUsage};
  }
  return PermissionChoice{acp::PermissionPolicy::deny, "--permission ask needs a terminal; permission requests are denied"};
}

std::variant<LaunchPlan, SetupError> plan_launch(CommonOptions& o, const LaunchSpec& spec) {
  if (auto err = finish_options(o)) return *err;
  auto choice = permission_rule(o.permission, spec.command, spec.asker, spec.at_terminal,
                                o.permission_from_config ? Source::config_file : Source::command_line);
  if (auto* err = std::get_if<SetupError>(&choice)) return *err;
  const auto& permission = std::get<PermissionChoice>(choice);
  if (!permission.warning.empty() && !o.quiet) error_line(permission.warning);

  LaunchPlan plan;
  acp::ClientOptions& c = plan.client;
  if (auto err = session_settings(o, c.settings)) return *err;
  c.cwd = o.cwd;
  c.permission = permission.policy;
  c.allow_fs = o.allow_fs;
  c.allow_terminal = o.allow_terminal;  // ignored through a tether server (see ClientOptions)
  if (o.allow_terminal && c.via_server && !o.quiet)
    error_line("--allow-terminal has no effect through a tether server (--connect): its agent runs no commands "
               "through clients; run the agent directly to let it");
  c.retries = o.retries;
  c.client_version = TETHER_VERSION;
  c.via_server = !o.connect.empty();  // a session of its own there (session/new), as directly
  c.auth = o.auth;
  c.mcp = o.mcp;
  // Last: it opens the --trace and --bridge-stderr files.
  if (auto err = make_bridge_options(o, spec.auto_restart, plan.bridge)) return *err;
  plan.color = use_color(o.color, STDERR_FILENO);
  return plan;
}

StartedBridge launch_bridge(const LaunchPlan& plan, int signal_fd) {
  StartedBridge s;
  s.bridge = std::make_unique<supervisor::Bridge>(plan.bridge);
  s.failed = start_bridge(*s.bridge, signal_fd, &s.caught);
  return s;
}

std::unique_ptr<acp::AcpSession> make_session(supervisor::Bridge& bridge, const LaunchPlan& plan) {
  return std::make_unique<acp::AcpSession>(bridge, plan.client);
}

Launched launch(const LaunchPlan& plan, int signal_fd) {
  Launched l;
  l.started = launch_bridge(plan, signal_fd);
  if (!l.started.caught && !l.started.failed) l.session = make_session(*l.started.bridge, plan);
  return l;
}

}  // namespace tether::cli
