// Usage errors and help in one style, for every command. CLI11 finds the mistakes; this module
// says them the way tether says everything: one `tether: ...` line naming the option and what it
// expected, with a "did you mean" when a word is close to a real one, then a hint on where to
// look (`Try 'tether prompt --help' ...`). Exit status 64 is main's business.
//
// It is not where values are checked: option_values.h checks them (its sentences arrive here
// inside CLI11's ValidationError). Nor does it know the commands: it reads the CLI11 App.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
class FormatterBase;
class ParseError;
}  // namespace CLI

namespace tether::cli {

// The help formatter of every command: metavars as given (`--timeout SECS`), defaults in the
// description ("(default: 60)") rather than glued to the metavar, `--connect[=NAME|PATH]` as typed.
// Set it on the top App before adding subcommands (they inherit it).
std::shared_ptr<CLI::FormatterBase> help_formatter();

struct UsageError {
  std::string message;  // without the "tether: " prefix
  std::string command;  // the command whose --help to point at; "" for `tether --help`
};

// The sentence for a ParseError that CLI11 threw while parsing `app` (not for --help or
// --version, whose exit code is 0).
UsageError describe_parse_error(const CLI::App& app, const CLI::ParseError& error);

// `tether promt ...`: when `word` (the first argument, not an option) is no command, the error
// (with the closest command, if one is close). nullopt when it is a command.
std::optional<UsageError> unknown_command(const CLI::App& app, std::string_view word);

// Prints `tether: MESSAGE` and the hint line on stderr.
void print_usage_error(const UsageError& error);

// The candidate closest to `word` by edit distance (a swap of two neighbours counts one), when
// close enough to be a likely typo; "" otherwise. Leading dashes are compared too.
std::string closest_word(std::string_view word, const std::vector<std::string>& candidates);

}  // namespace tether::cli
