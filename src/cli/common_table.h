// Inside cli/common: the one table of common options (command line and config file), the
// registry of what each command offers, and the config-file value check. Shared by common.cpp
// (the command line) and options_config.cpp (the config file and the agent); not for front-ends.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "cli/common.h"
#include "cli/option_values.h"

namespace tether::cli::detail {

// One common option: its names on the command line, its config key, the variable it sets, what
// its value may be, and which commands offer it. The one table for the command line and the
// config file, so that the two cannot drift apart.
using Field = std::variant<std::string CommonOptions::*, double CommonOptions::*, int CommonOptions::*,
                           std::size_t CommonOptions::*, bool CommonOptions::*>;
struct CommonOption {
  const char* names;                            // CLI11's names: "-q,--quiet"
  const char* key;                              // its config key
  Field field;
  std::function<ValueKind()> kind;              // empty for a flag
  const char* group;
  const char* help;
  bool CommonOptionSet::*offered_if = nullptr;  // nullptr: every command with a bridge
  bool session = false;                         // added by add_session_options
  bool show_default = false;                    // --help shows the variable's default value
};
const std::vector<CommonOption>& common_option_table();

// What add_common_options registered for each options struct: its command, and the options of
// the config keys it offers. A key applies only when its option was not given on the command
// line, and only to a command that offers it.
struct Registered {
  CLI::App* app = nullptr;
  std::map<std::string, CLI::Option*> options;  // config key -> its option
  CLI::Option* verbose = nullptr;               // -v, when offered
};
std::map<const CommonOptions*, Registered>& option_registry();

// Sets `entry`'s variable in `o` from a config value, through the same check as the command
// line; an error says what was expected and what was given.
std::optional<std::string> apply_value(const CommonOption& entry, const ConfigValue& v, CommonOptions& o);

}  // namespace tether::cli::detail
