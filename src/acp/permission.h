// The permission policy: how tether answers an agent's `session/request_permission` when no person
// is asked. Pure functions over the offered options: a chosen option is always one the agent
// offered (never invented, never options[0] by default); nothing means the outcome `cancelled`.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tether::acp {

enum class PermissionPolicy {
  ask,    // a person picks one of the offered options (talk)
  allow,         // allow_once, else cancelled: never a persistent option
  allow_always,  // asked for explicitly (--permission allow-always): allow_always, else allow_once
  deny,   // prefer reject_once, else cancelled
};
std::optional<PermissionPolicy> parse_policy(std::string_view word);
const char* to_string(PermissionPolicy p);

struct PermissionOption {
  std::string id;    // optionId, echoed verbatim
  std::string name;
  std::string kind;  // allow_once, allow_always, reject_once, reject_always (or unknown)
};

// The offered options of a request's params; malformed entries (no string optionId) are skipped.
std::vector<PermissionOption> parse_options(const nlohmann::json& params);

// The option the policy picks; nothing for `cancelled` (and always nothing for `ask`).
std::optional<PermissionOption> choose_option(PermissionPolicy policy,
                                              const std::vector<PermissionOption>& options);

// The result to send: {"outcome":{"outcome":"selected","optionId":…}} or {"outcome":{"outcome":"cancelled"}}.
nlohmann::json permission_result(const std::optional<std::string>& option_id);

}  // namespace tether::acp
