// `tether completion SHELL`: prints a completion script for bash, zsh or fish. The scripts are not
// written by hand: they are generated at run time from the CLI11 definition of every command (the
// root CLI::App), so an option added, renamed or given a fixed set of values is completed as soon
// as it exists. The build runs this command to install the three scripts (meson.build).
//
// What is read from an option: its names, whether it takes a value, and what the value can be,
// from what --help shows: a fixed set (a validator's "{a,b,c}", or a metavar of lowercase
// alternatives "a|b|c"), a file (a metavar naming FILE or PATH) or a directory (DIR). Words
// after `--` are the bridge's command line: the scripts complete a command there, then its files
// (or its own completion, where the shell has one).
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace tether::cli {

// What a value may be completed with.
enum class ValueKind { kNone, kFile, kDir };

struct CompletionOption {
  std::vector<std::string> names;  // "--timeout", "-q": long names first
  std::string description;         // one short line
  // kNone: a flag. kSeparate: a value in the next word or after '='. kAttached: an optional
  // value only after '=' (a flag with a metavar, like --connect[=NAME|PATH]).
  enum class Value { kNone, kSeparate, kAttached } value = Value::kNone;
  std::vector<std::string> choices;  // the fixed values, if any
  ValueKind kind = ValueKind::kNone;
  std::string metavar;               // "SECS", "FILE", ... for the shells that show one
  bool repeatable = false;           // may be given more than once
};

struct CompletionPositional {
  std::string name;
  std::vector<std::string> choices;
  ValueKind kind = ValueKind::kNone;
  bool many = false;  // takes every remaining word
};

struct CompletionCommand {
  std::string name;  // "" for the root
  std::string description;
  std::vector<CompletionOption> options;
  std::vector<CompletionPositional> positionals;
};

struct CompletionModel {
  std::string program;                    // "tether"
  CompletionCommand root;                 // the options before a command
  std::vector<CompletionCommand> commands;  // sorted by name
};

// Reads the model from the root App: its visible subcommands and options. Reentrant.
CompletionModel completion_model(const CLI::App& root);

// The script for `shell` ("bash", "zsh" or "fish"); nullopt for another shell.
std::optional<std::string> completion_script(const CompletionModel& model, std::string_view shell);

// Registers `tether completion SHELL` on `app`; the returned function, run after parsing, reads
// the whole of `app` (which must outlive it) and prints the script on stdout.
std::function<int()> setup_completion(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
