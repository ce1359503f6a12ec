// TOML to a ConfigValue tree (see config_file.h). The only file that includes toml++: its header
// costs seconds of compile time per translation unit, and the tree below is all the rest needs.
// toml++ reports errors by exception; they are caught here and become values.
#include "cli/config_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

// Header-only (meson.build says why): the parser is compiled here, once.
#define TOML_HEADER_ONLY 1
#include <toml++/toml.h>

#include "cli/option_values.h"

namespace tether::cli {
namespace {

// toml++ tables are sorted by key; a config is read (and its errors met) in the order written.
bool written_before(const ConfigEntry& a, const ConfigEntry& b) {
  return a.line != b.line ? a.line < b.line : a.column < b.column;
}

// Nesting is bounded by toml++ itself (its parser refuses deep nesting); the recursion follows it.
ConfigValue convert(const toml::node& node) {
  ConfigValue v;
  v.line = static_cast<int>(node.source().begin.line);
  v.column = static_cast<int>(node.source().begin.column);
  switch (node.type()) {
    case toml::node_type::string:
      v.kind = ConfigValue::Kind::string;
      v.text = node.as_string()->get();
      break;
    case toml::node_type::integer:
      v.kind = ConfigValue::Kind::integer;
      v.number = static_cast<double>(node.as_integer()->get());
      break;
    case toml::node_type::floating_point:
      v.kind = ConfigValue::Kind::floating;
      v.number = node.as_floating_point()->get();
      break;
    case toml::node_type::boolean:
      v.kind = ConfigValue::Kind::boolean;
      v.boolean = node.as_boolean()->get();
      break;
    case toml::node_type::array:
      v.kind = ConfigValue::Kind::array;
      for (const auto& item : *node.as_array()) v.items.push_back(convert(item));
      break;
    case toml::node_type::table:
      v.kind = ConfigValue::Kind::table;
      for (const auto& [key, child] : *node.as_table()) {
        ConfigEntry e;
        e.key = std::string(key.str());
        e.line = static_cast<int>(key.source().begin.line);
        e.column = static_cast<int>(key.source().begin.column);
        e.value = convert(child);
        v.entries.push_back(std::move(e));
      }
      std::stable_sort(v.entries.begin(), v.entries.end(), written_before);
      break;
    default:  // dates and times: tether has no key that takes one
      v.kind = ConfigValue::Kind::date_time;
      v.text = "a date or time";
  }
  return v;
}

}  // namespace

const ConfigValue* ConfigValue::find(const std::string& key) const {
  for (const auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}

bool ConfigValue::is_string_array() const {
  return kind == Kind::array &&
         std::all_of(items.begin(), items.end(), [](const ConfigValue& i) { return i.kind == Kind::string; });
}

std::vector<std::string> ConfigValue::strings() const {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.text);
  return out;
}

const char* kind_name(ConfigValue::Kind kind) {
  switch (kind) {
    case ConfigValue::Kind::string: return "a string";
    case ConfigValue::Kind::integer: return "an integer";
    case ConfigValue::Kind::floating: return "a number";
    case ConfigValue::Kind::boolean: return "true or false";
    case ConfigValue::Kind::array: return "an array";
    case ConfigValue::Kind::table: return "a table";
    case ConfigValue::Kind::date_time: return "a date or time";
  }
  return "a value";
}

std::string config_text(const ConfigValue& v) {
  switch (v.kind) {
    case ConfigValue::Kind::string: return quoted_value(v.text);
    case ConfigValue::Kind::boolean: return v.boolean ? "true" : "false";
    case ConfigValue::Kind::integer:
    case ConfigValue::Kind::floating: {
      char buf[64];
      if (std::isfinite(v.number) && v.number == std::floor(v.number) && std::fabs(v.number) < 1e18)
        std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v.number));
      else
        std::snprintf(buf, sizeof buf, "%.17g", v.number);
      return buf;
    }
    case ConfigValue::Kind::date_time: return v.text;
    default: return kind_name(v.kind);
  }
}

std::variant<ConfigValue, std::string> parse_config(const std::string& text) {
  try {
    toml::table root = toml::parse(text);
    return convert(root);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return std::to_string(at.line) + ":" + std::to_string(at.column) + ": " + std::string(e.description());
  }
}

}  // namespace tether::cli
