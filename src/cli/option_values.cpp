// The kinds of option values (see option_values.h).
#include "cli/option_values.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace tether::cli {
namespace {

// Whole numbers are plain decimal digits: no sign, no exponent, no fraction (`5.0` for a job count
// is more likely a mistake than a wish).
std::optional<std::uint64_t> parse_whole(const std::string& s, bool& overflow) {
  overflow = false;
  if (s.empty()) return std::nullopt;
  for (char c : s)
    if (c < '0' || c > '9') return std::nullopt;
  std::uint64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec == std::errc::result_out_of_range) {
    overflow = true;
    return std::nullopt;
  }
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return n;
}

std::string join_choices(const std::vector<std::string>& words, const std::string& last_word) {
  std::string out;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) out += i + 1 == words.size() ? " " + last_word + " " : ", ";
    out += words[i];
  }
  return out;
}

}  // namespace

ValueKind seconds_value(bool zero_allowed) {
  ValueKind k;
  k.metavar = "SECS";
  k.expected = zero_allowed ? "seconds (a number ≥ 0)" : "seconds (a number > 0)";
  k.accept = [zero_allowed](const std::string& s, std::string&) -> std::optional<std::string> {
    // strtod alone would take leading blanks, "inf", "nan" and hex; only finite decimals pass.
    if (s.empty() || s.find_first_not_of("0123456789.eE+-") != std::string::npos) return std::nullopt;
    char* end = nullptr;
    double d = std::strtod(s.c_str(), &end);
    if (*end != '\0' || !std::isfinite(d) || d < 0 || (!zero_allowed && d == 0)) return std::nullopt;
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return std::string(buf);
  };
  return k;
}

ValueKind count_value(std::uint64_t min, std::uint64_t max) {
  ValueKind k;
  k.metavar = "N";
  k.expected = "a whole number ≥ " + std::to_string(min);
  k.accept = [min, max](const std::string& s, std::string& note) -> std::optional<std::string> {
    bool overflow = false;
    auto n = parse_whole(s, overflow);
    if (overflow || (n && *n > max)) note = "at most " + std::to_string(max);
    if (!n || *n < min || *n > max) return std::nullopt;
    return std::to_string(*n);
  };
  return k;
}

ValueKind bytes_value() {
  ValueKind k = count_value(1, UINT64_MAX);
  k.metavar = "BYTES";
  k.expected = "a size in bytes (a whole number ≥ 1)";
  return k;
}

ValueKind choice_value(std::vector<std::string> choices, std::string other, std::string other_text) {
  ValueKind k;
  std::vector<std::string> shown = choices;
  if (!other.empty()) shown.push_back(other);
  for (const auto& c : shown) k.metavar += (k.metavar.empty() ? "" : "|") + c;
  std::vector<std::string> said = choices;
  if (!other.empty()) said.push_back(other_text);
  k.expected = join_choices(said, "or");
  const bool any = !other.empty();
  k.accept = [choices, any](const std::string& s, std::string&) -> std::optional<std::string> {
    for (const auto& c : choices)
      if (s == c) return s;
    if (any && !s.empty()) return s;
    return std::nullopt;
  };
  return k;
}

ValueKind file_value() { return custom_value("FILE", "a file name", [](std::string_view s) { return !s.empty(); }); }

ValueKind dir_value() { return custom_value("DIR", "a directory", [](std::string_view s) { return !s.empty(); }); }

ValueKind custom_value(std::string metavar, std::string expected, std::function<bool(std::string_view)> ok) {
  ValueKind k;
  k.metavar = std::move(metavar);
  k.expected = std::move(expected);
  k.accept = [ok = std::move(ok)](const std::string& s, std::string&) -> std::optional<std::string> {
    if (!ok(s)) return std::nullopt;
    return s;
  };
  return k;
}

std::string quoted_value(std::string_view value) {
  std::string out = "\"";
  for (char c : value) {
    auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::optional<std::string> value_error(const ValueKind& kind, std::string& value) {
  std::string note;
  if (auto plain = kind.accept(value, note)) {
    value = *plain;
    return std::nullopt;
  }
  return "expected " + kind.expected + ", got " + quoted_value(value) + (note.empty() ? "" : " (" + note + ")");
}

CLI::Option* expects(CLI::Option* option, const ValueKind& kind) {
  // A transform, not a check: CLI11 then converts the plain form we accepted, so its own
  // conversion errors ("Could not convert") cannot happen. The empty description keeps the
  // metavar exactly `kind.metavar` (CLI11 appends validator descriptions to it).
  option->transform(CLI::Validator([kind](std::string& value) { return value_error(kind, value).value_or(""); }, ""));
  option->type_name(kind.metavar);
  // Given twice, the last one wins, as with most tools (an alias with `--jobs 2` and a `--jobs 3`
  // after it). CLI11 would refuse it. Repeatable options (--set) keep every value.
  if (option->get_expected_max() == 1) option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return option;
}

}  // namespace tether::cli
