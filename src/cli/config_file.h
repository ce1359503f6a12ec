// The config file's syntax: TOML (https://toml.io, v1.0), read by toml++ into a plain tree that
// remembers where each key and value was written, so that every later error can name the file,
// the line and the column. What the keys mean is cli/config.h's; this file knows nothing of them.
//
// toml++ is a heavy header: it is included by config_file.cpp alone, and nothing of it shows here.
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace tether::cli {

struct ConfigEntry;

// One TOML value and where it starts (1-based line and column; 0 when unknown).
struct ConfigValue {
  enum class Kind { string, integer, floating, boolean, array, table, date_time };
  Kind kind = Kind::table;
  std::string text;     // string: its value; date_time: as written
  double number = 0;    // integer, floating
  bool boolean = false;
  std::vector<ConfigValue> items;     // array
  std::vector<ConfigEntry> entries;   // table, in the order written
  int line = 0;
  int column = 0;

  // A table's entry named `key`, or null.
  const ConfigValue* find(const std::string& key) const;
  // An array whose items are all strings.
  bool is_string_array() const;
  std::vector<std::string> strings() const;
};

struct ConfigEntry {
  std::string key;
  int line = 0;  // where the key is written
  int column = 0;
  ConfigValue value;
};

// "a string", "an integer", "an array", ... for messages.
const char* kind_name(ConfigValue::Kind kind);
// The value as an error quotes it: strings quoted, numbers and booleans as TOML writes them.
std::string config_text(const ConfigValue& value);

// Parses `text` into the root table. On a syntax error, "LINE:COLUMN: what is wrong".
std::variant<ConfigValue, std::string> parse_config(const std::string& text);

}  // namespace tether::cli
