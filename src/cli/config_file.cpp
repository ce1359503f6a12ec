// TOML to a ConfigValue tree (see config_file.h). The only file that includes toml++: its header
// costs seconds of compile time per translation unit, and the tree below is all the rest needs.
// toml++ reports errors by exception; they are caught here and become values.
#include "cli/config_file.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <optional>

// Header-only (meson.build says why): the parser is compiled here, once.
#define TOML_HEADER_ONLY 1
// toml++ 3.3 states some of its parser's expectations as assertions (TOML_ASSERT_ASSUME): without
// NDEBUG a malformed file such as `[&` aborts tether, and with NDEBUG they become optimizer
// assumptions, so the same file is undefined behaviour. Each is followed by the parser's own error
// path, so they are made into nothing (NDEBUG is lifted for the include, or TOML_ASSERT_ASSUME would
// still be TOML_ASSUME) and the mistake is reported as a parse error. Found by fuzz_config.
#ifdef NDEBUG
#undef NDEBUG
#define TETHER_NDEBUG_WAS_SET
#endif
#define TOML_ASSERT(expr) static_assert(true)
#include <toml++/toml.h>
#ifdef TETHER_NDEBUG_WAS_SET
#define NDEBUG
#undef TETHER_NDEBUG_WAS_SET
#endif

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

namespace {

// What toml++ 3.3 must not see (found by fuzz_config): control characters, which TOML allows
// nowhere but tab and line ends (its parser asserts on a NUL in a table header), and non-ASCII
// characters outside strings and comments, which TOML allows nowhere else either (its whitespace
// check reaches __builtin_unreachable for U+00A1..U+0499 there: undefined behaviour). A small scan
// that knows comments and the four kinds of strings says "LINE:COLUMN: ..." instead.
std::optional<std::string> refuse_before_toml(const std::string& text) {
  int line = 1, column = 1;
  std::string_view quote;  // the open string's delimiter: " ' """ ''' (empty: none)
  bool comment = false;
  // The last character outside strings, comments and blanks: a quote opens a string only where a
  // key or a value can start (after = [ { , . or at a line's start), as toml++ reads it; one in
  // the middle of a bare word is not a string, and what follows it is checked as such.
  char before = '\n';
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const bool crlf = c == '\r' && i + 1 < text.size() && text[i + 1] == '\n';
    auto at = [&] { return std::to_string(line) + ":" + std::to_string(column) + ": "; };
    if ((c < 0x20 && c != '\t' && c != '\n' && !crlf) || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "0x%02X", c);
      return at() + "control character " + hex + " (TOML allows none but tab and line ends)";
    }
    if (c >= 0x80 && quote.empty() && !comment)
      return at() + "a non-ASCII character outside a string or a comment (quote the value)";
    const std::string_view rest(text.data() + i, text.size() - i);
    std::size_t skip = 0;  // more bytes of a delimiter or an escape, taken with this one
    if (comment) {
      comment = c != '\n';
    } else if (!quote.empty()) {
      if (c == '\\' && quote[0] == '"' && i + 1 < text.size() && text[i + 1] != '\n') {
        skip = 1;  // an escaped character
      } else if (rest.substr(0, quote.size()) == quote) {
        skip = quote.size() - 1;
        quote = {};
      } else if (c == '\n' && quote.size() == 1) {
        quote = {};  // a one-line string left open: toml++ reports it
      }
    } else if (c == '#') {
      comment = true;
    } else if ((c == '"' || c == '\'') && std::string_view("=[{,.\n").find(before) != std::string_view::npos) {
      const std::string_view three = c == '"' ? "\"\"\"" : "'''";
      quote = rest.substr(0, 3) == three ? three : rest.substr(0, 1);
      skip = quote.size() - 1;
    }
    if (!comment && (c == '\n' || (c != ' ' && c != '\t' && c != '\r'))) before = static_cast<char>(c);
    if (c == '\n') {
      ++line;
      column = 1;
    } else if ((c & 0xC0) != 0x80) {
      ++column;
    }
    i += skip;
    column += static_cast<int>(skip);
  }
  return std::nullopt;
}

}  // namespace

std::variant<ConfigValue, std::string> parse_config(const std::string& text) {
  if (auto why = refuse_before_toml(text)) return *why;
  try {
    toml::table root = toml::parse(text);
    return convert(root);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    return std::to_string(at.line) + ":" + std::to_string(at.column) + ": " + std::string(e.description());
  }
}

}  // namespace tether::cli
