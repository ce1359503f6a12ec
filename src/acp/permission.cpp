#include "acp/permission.h"

namespace tether::acp {

std::optional<PermissionPolicy> parse_policy(std::string_view word) {
  if (word == "ask") return PermissionPolicy::ask;
  if (word == "allow") return PermissionPolicy::allow;
  if (word == "allow-always") return PermissionPolicy::allow_always;
  if (word == "deny") return PermissionPolicy::deny;
  return std::nullopt;
}

const char* to_string(PermissionPolicy p) {
  switch (p) {
    case PermissionPolicy::ask: return "ask";
    case PermissionPolicy::allow: return "allow";
    case PermissionPolicy::allow_always: return "allow-always";
    case PermissionPolicy::deny: return "deny";
  }
  return "?";
}

std::vector<PermissionOption> parse_options(const nlohmann::json& params) {
  std::vector<PermissionOption> out;
  if (!params.is_object()) return out;
  auto opts = params.find("options");
  if (opts == params.end() || !opts->is_array()) return out;
  for (const auto& o : *opts) {
    if (!o.is_object()) continue;
    auto id = o.find("optionId");
    if (id == o.end() || !id->is_string()) continue;
    PermissionOption opt;
    opt.id = id->get<std::string>();
    if (auto n = o.find("name"); n != o.end() && n->is_string()) opt.name = n->get<std::string>();
    if (auto k = o.find("kind"); k != o.end() && k->is_string()) opt.kind = k->get<std::string>();
    out.push_back(std::move(opt));
  }
  return out;
}

std::optional<PermissionOption> choose_option(PermissionPolicy policy,
                                              const std::vector<PermissionOption>& options) {
  auto first_of = [&](std::string_view kind) -> std::optional<PermissionOption> {
    for (const auto& o : options)
      if (o.kind == kind) return o;
    return std::nullopt;
  };
  switch (policy) {
    case PermissionPolicy::ask:
      return std::nullopt;
    case PermissionPolicy::allow:
      // Once only: real agents turn allow_always into lasting rules in their own config (Codex
      // writes one into $CODEX_HOME/rules), which a one-shot answer must never do unasked.
      return first_of("allow_once");
    case PermissionPolicy::allow_always:
      if (auto o = first_of("allow_always")) return o;
      return first_of("allow_once");
    case PermissionPolicy::deny:
      // reject_always would also persist a rule in the agent: a one-shot run must not do that.
      return first_of("reject_once");
  }
  return std::nullopt;
}

nlohmann::json permission_result(const std::optional<std::string>& option_id) {
  if (option_id) return {{"outcome", {{"outcome", "selected"}, {"optionId", *option_id}}}};
  return {{"outcome", {{"outcome", "cancelled"}}}};
}

}  // namespace tether::acp
