// Fuzz target: the config file parser (cli/config_file.h). The input is a whole file. The oracle,
// besides not crashing: an error names its line; a file that parses, written back out in the
// subset's own syntax (keys as parsed, strings double-quoted with the escapes the parser knows,
// numbers with 17 significant digits), parses again to the same map.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <variant>

#include "cli/config_file.h"
#include "fuzz_support.h"

using namespace tether::cli;

namespace {

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default: out += c;
    }
  }
  return out + "\"";
}

std::string write(const ConfigMap& map) {
  std::string out;
  for (const auto& [key, value] : map) {
    out += key + " = ";
    if (auto* s = std::get_if<std::string>(&value)) {
      out += quoted(*s);
    } else if (auto* d = std::get_if<double>(&value)) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", *d);
      out += buf;
    } else if (auto* b = std::get_if<bool>(&value)) {
      out += *b ? "true" : "false";
    } else {
      out += "[";
      for (const auto& item : std::get<std::vector<std::string>>(value)) out += quoted(item) + ", ";
      out += "]";
    }
    out += "\n";
  }
  return out;
}

bool same_value(const ConfigValue& a, const ConfigValue& b) {
  auto* x = std::get_if<double>(&a);
  auto* y = std::get_if<double>(&b);
  if (x && y && std::isnan(*x) && std::isnan(*y)) return true;
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto parsed = parse_config(text);
  if (auto* err = std::get_if<std::string>(&parsed)) {
    FUZZ_CHECK(err->rfind("line ", 0) == 0);
    return 0;
  }
  const auto& map = std::get<ConfigMap>(parsed);
  auto again = parse_config(write(map));
  FUZZ_CHECK(std::holds_alternative<ConfigMap>(again));
  const auto& map2 = std::get<ConfigMap>(again);
  FUZZ_CHECK(map2.size() == map.size());
  for (const auto& [key, value] : map) {
    auto it = map2.find(key);
    FUZZ_CHECK(it != map2.end() && same_value(it->second, value));
  }
  return 0;
}
