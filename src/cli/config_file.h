// The config file ($XDG_CONFIG_HOME/tether/config.toml): a small TOML subset, read at the edge.
// Supported: `key = value` lines, `#` comments, strings ("…" with \" \\ \n \t escapes, or '…'),
// integers, floats, booleans, and one-line arrays of strings. Tables ([section]) are not used by
// tether and are rejected, so a typo never silently does nothing.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tether::cli {

using ConfigValue = std::variant<std::string, double, bool, std::vector<std::string>>;
using ConfigMap = std::map<std::string, ConfigValue>;

// Parses `text`; on error, a sentence naming the line ("line 3: …").
std::variant<ConfigMap, std::string> parse_config(const std::string& text);

}  // namespace tether::cli
