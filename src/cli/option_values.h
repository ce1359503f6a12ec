// What an option's value may be, said once: the metavar --help shows (SECS, N, BYTES, FILE,
// auto|always|never), the check, and the sentence a wrong value gets
// (`expected seconds (a number ≥ 0), got "abc"`). The command line (through a CLI11 transform, so
// that CLI11 never prints its own message) and the config file (config keys are the same values)
// use the same kinds, so an option and its key accept the same values and say the same thing.
//
// Metavars are set with CLI11's type_name(), so a walker of the CLI11 App (shell completions) can
// read them: an upper-case word is a placeholder (SECS, FILE); words joined by '|' are the choices,
// some of which may be placeholders (`tail|pass|FILE`).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class Option;
}

namespace tether::cli {

struct ValueKind {
  std::string metavar;   // what --help calls the value: SECS, N, BYTES, FILE, DIR, ask|allow|...
  std::string expected;  // what an error says was expected: "seconds (a number ≥ 0)"
  // The value as the option's variable is to read it (numbers in plain decimal), or nothing when
  // it is not one of this kind. The second argument receives a note for the error ("at most 1024").
  std::function<std::optional<std::string>(const std::string& value, std::string& note)> accept;
};

// SECS: a finite number of seconds, ≥ 0 (or > 0 when zero makes no sense).
ValueKind seconds_value(bool zero_allowed = true);
// N: a whole number in [min, max], plain decimal digits.
ValueKind count_value(std::uint64_t min, std::uint64_t max);
// BYTES: a size in bytes, a whole number ≥ 1.
ValueKind bytes_value();
// One of `choices`; `other` (a placeholder such as "FILE") when any other non-empty word is
// accepted too, described by `other_text` ("a file name").
ValueKind choice_value(std::vector<std::string> choices, std::string other = {}, std::string other_text = {});
// FILE, DIR: a non-empty path (whether it can be opened is found out where it is opened).
ValueKind file_value();
ValueKind dir_value();
// Anything else: a metavar, what is expected, and a test.
ValueKind custom_value(std::string metavar, std::string expected, std::function<bool(std::string_view)> ok);

// nullopt and `value` rewritten to its plain form when accepted; else the sentence
// `expected <kind.expected>, got "<value>"` (plus the note, if any).
std::optional<std::string> value_error(const ValueKind& kind, std::string& value);

// Gives `option` the kind's metavar and check; returns `option` for chaining.
CLI::Option* expects(CLI::Option* option, const ValueKind& kind);

// `"abc"`: a value quoted for an error line (JSON-like escapes for quotes, backslashes and
// control characters, so that the line stays one line).
std::string quoted_value(std::string_view value);

}  // namespace tether::cli
