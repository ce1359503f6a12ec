#include "cli/config_file.h"

#include <cctype>
#include <cstdlib>
#include <sstream>

namespace tether::cli {
namespace {

struct Cursor {
  const std::string& s;
  std::size_t i = 0;
  void skip_ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) ++i;
  }
  bool at_end_or_comment() {
    skip_ws();
    return i >= s.size() || s[i] == '#';
  }
};

std::optional<std::string> parse_string(Cursor& c, std::string& err) {
  char quote = c.s[c.i++];
  std::string out;
  while (c.i < c.s.size()) {
    char ch = c.s[c.i++];
    if (ch == quote) return out;
    if (ch == '\\' && quote == '"' && c.i < c.s.size()) {
      char e = c.s[c.i++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        default: err = std::string("unknown escape \\") + e; return std::nullopt;
      }
      continue;
    }
    out += ch;
  }
  err = "unterminated string";
  return std::nullopt;
}

std::optional<ConfigValue> parse_value(Cursor& c, std::string& err) {
  c.skip_ws();
  if (c.i >= c.s.size()) {
    err = "missing value";
    return std::nullopt;
  }
  char ch = c.s[c.i];
  if (ch == '"' || ch == '\'') {
    auto s = parse_string(c, err);
    if (!s) return std::nullopt;
    return ConfigValue(*s);
  }
  if (ch == '[') {
    ++c.i;
    std::vector<std::string> items;
    for (;;) {
      c.skip_ws();
      if (c.i < c.s.size() && c.s[c.i] == ']') {
        ++c.i;
        return ConfigValue(items);
      }
      if (c.i >= c.s.size() || (c.s[c.i] != '"' && c.s[c.i] != '\'')) {
        err = "arrays hold strings only, on one line";
        return std::nullopt;
      }
      auto s = parse_string(c, err);
      if (!s) return std::nullopt;
      items.push_back(*s);
      c.skip_ws();
      if (c.i < c.s.size() && c.s[c.i] == ',') ++c.i;
    }
  }
  std::size_t start = c.i;
  while (c.i < c.s.size() && c.s[c.i] != '#' && c.s[c.i] != ' ' && c.s[c.i] != '\t') ++c.i;
  std::string word = c.s.substr(start, c.i - start);
  if (word == "true") return ConfigValue(true);
  if (word == "false") return ConfigValue(false);
  char* end = nullptr;
  double d = std::strtod(word.c_str(), &end);
  if (!word.empty() && end && *end == '\0') return ConfigValue(d);
  err = "cannot read value '" + word + "' (strings need quotes)";
  return std::nullopt;
}

}  // namespace

std::variant<ConfigMap, std::string> parse_config(const std::string& text) {
  ConfigMap map;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    Cursor c{line};
    if (c.at_end_or_comment()) continue;
    auto fail = [&](const std::string& what) { return "line " + std::to_string(n) + ": " + what; };
    if (line[c.i] == '[') return fail("tables ([section]) are not supported; put keys at the top level");
    std::size_t start = c.i;
    while (c.i < line.size() && (std::isalnum(static_cast<unsigned char>(line[c.i])) || line[c.i] == '_' || line[c.i] == '-')) ++c.i;
    std::string key = line.substr(start, c.i - start);
    if (key.empty()) return fail("expected a key");
    c.skip_ws();
    if (c.i >= line.size() || line[c.i] != '=') return fail("expected '=' after " + key);
    ++c.i;
    std::string err;
    auto value = parse_value(c, err);
    if (!value) return fail(err);
    if (!c.at_end_or_comment()) return fail("unexpected text after the value of " + key);
    if (map.count(key)) return fail(key + " is set twice");
    map[key] = std::move(*value);
  }
  return map;
}

}  // namespace tether::cli
