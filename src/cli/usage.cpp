// Usage errors and help in one style (see usage.h).
#include "cli/usage.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>

#include "cli/option_values.h"
#include "cli/terminal_text.h"

namespace tether::cli {
namespace {

class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* opt, bool is_positional) const override {
    // `--connect[=NAME|PATH]`: its value only comes after '=', so it is shown glued to the name
    // (CLI11 would show "--connect{default} [=NAME|PATH]").
    if (!is_positional && opt->get_option_text().rfind("[=", 0) == 0 && !opt->get_lnames().empty())
      return "--" + opt->get_lnames().front() + opt->get_option_text();
    return CLI::Formatter::make_option_name(opt, is_positional);
  }
  std::string make_option_opts(const CLI::Option* opt) const override {
    const std::string& text = opt->get_option_text();
    if (!text.empty()) return text.rfind("[=", 0) == 0 ? std::string() : " " + text;
    if (opt->get_type_size() == 0 || opt->get_expected_max() == 0) return {};  // a flag
    // A positional's name is its metavar already; a repeatable option takes one value each time.
    std::string out = opt->get_positional() || opt->get_type_name().empty() ? std::string() : " " + opt->get_type_name();
    if (opt->get_positional() && opt->get_expected_max() == CLI::detail::expected_max_vector_size) out += " ...";
    if (opt->get_required()) out += " (required)";
    return out;
  }
  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = opt->get_description();
    if (opt->get_type_size() != 0 && !opt->get_default_str().empty())
      desc += " (default: " + opt->get_default_str() + ")";
    return desc;
  }
};

// Options a command does not take on purpose, and why: said instead of "no such option" when the
// option exists elsewhere and a user may well expect it here.
struct WhyNot {
  const char* command;
  const char* option;
  const char* why;
};
constexpr WhyNot kWhyNot[] = {
    {"serve", "--timeout", "each client sets its own turn timeout (tether prompt --connect --timeout SECS)"},
    {"serve", "--retries",
     "a turn cut by a bridge death is retried by its client, so that only one side retries "
     "(tether prompt --connect --retries N)"},
    {"serve", "--permission",
     "permission requests go to the client whose turn it is (tether talk|prompt|batch --connect --permission ...)"},
    {"call", "--permission", "tether call answers no request of the bridge's (it speaks only the JSON-RPC it is given)"},
    {"call", "--allow-fs", "tether call answers no request of the bridge's (it speaks only the JSON-RPC it is given)"},
    {"call", "--allow-terminal", "tether call answers no request of the bridge's (it speaks only the JSON-RPC it is given)"},
    {"serve", "--allow-terminal",
     "a command would run in the server and its output be asked for by whichever client the server picks; "
     "run the agent directly (tether talk|prompt|batch --allow-terminal)"},
    {"call", "--retries", "tether call never sends a request twice (it may not be idempotent)"},
};

std::vector<const CLI::App*> all_commands(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App* sub) { return !sub->get_name().empty(); });
}

// Every name an option can be given by: --long and -s.
std::vector<std::string> option_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : app.get_options()) {
    for (const auto& l : opt->get_lnames()) names.push_back("--" + l);
    for (const auto& s : opt->get_snames()) names.push_back("-" + s);
  }
  return names;
}

std::string join_names(const std::vector<std::string>& names) {
  std::string out;
  for (std::size_t i = 0; i < names.size(); ++i) out += (i == 0 ? "" : i + 1 == names.size() ? " and " : ", ") + names[i];
  return out;
}

// The commands that take option `name`.
std::vector<std::string> commands_with(const CLI::App& app, const std::string& name) {
  std::vector<std::string> out;
  for (const CLI::App* sub : all_commands(app))
    if (sub->get_option_no_throw(name)) out.push_back(sub->get_name());
  return out;
}

UsageError unknown_option(const CLI::App& app, const CLI::App* where, const CLI::App* command, const std::string& word) {
  std::string name = word.substr(0, word.find('='));
  if (name.size() < 2) name = word;  // CLI11 leaves "-=3" of "-q=3"
  if (where == &app) {
    // Before the command: `tether --timeout 5 prompt hi`.
    if (command && command->get_option_no_throw(name))
      return {name + " goes after the command: tether " + command->get_name() + " " + name + " ...", command->get_name()};
    auto with = commands_with(app, name);
    if (!with.empty()) return {name + " is an option of " + join_names(with) + ": give it after the command (tether " + with.front() + " " + name + " ...)", ""};
    std::string near = closest_word(name, option_names(app));
    return {"unknown option " + name + (near.empty() ? "" : "; did you mean " + near + "?"), ""};
  }
  const std::string cmd = where->get_name();
  for (const WhyNot& w : kWhyNot)
    if (cmd == w.command && name == w.option) return {cmd + " does not take " + name + ": " + w.why, cmd};
  std::string near = closest_word(name, option_names(*where));
  if (!near.empty()) return {cmd + " has no option " + name + "; did you mean " + near + "?", cmd};
  auto with = commands_with(app, name);
  if (!with.empty()) return {name + " is an option of " + join_names(with) + ", not of " + cmd, cmd};
  return {cmd + " has no option " + name, cmd};
}

UsageError extra_argument(const CLI::App* where, const std::string& word) {
  const std::string cmd = where->get_name();
  std::vector<std::string> takes;
  for (const CLI::Option* opt : where->get_options())
    if (opt->get_positional()) takes.push_back(opt->get_name(true, false));
  std::string message = takes.empty() ? cmd + " takes no arguments, got " + quoted_value(word)
                                      : "unexpected argument " + quoted_value(word) + ": " + cmd + " takes " +
                                            join_names(takes);
  // A bridge command without its `--` is the likeliest reason for a stray word.
  if (cmd != "demo-agent") message += " (a bridge command goes after --: tether " + cmd + " [OPTIONS] -- COMMAND)";
  return {message, cmd};
}

// The option a CLI11 message names: at its start ("--timeout: 1 required SECS missing"), or after
// "Could not convert: " ("Could not convert: --json = maybe").
const CLI::Option* option_in_message(const CLI::App* where, std::string what) {
  const std::string convert = "Could not convert: ";
  if (what.rfind(convert, 0) == 0) what.erase(0, convert.size());
  if (!where || what.empty() || what[0] != '-') return nullptr;
  std::size_t end = what.find_first_of(": =");
  return where->get_option_no_throw(what.substr(0, end));
}

std::optional<UsageError> leftover(const CLI::App& app, const CLI::App* command) {
  for (const CLI::App* where : {&app, command}) {
    if (!where) continue;
    auto words = where->remaining(false);
    if (words.empty()) continue;
    const std::string& word = words.front();
    if (word.size() > 1 && word[0] == '-') return unknown_option(app, where, command, word);
    if (where != &app) return extra_argument(where, word);
    return UsageError{"unexpected argument " + quoted_value(word), ""};
  }
  return std::nullopt;
}

std::string command_list(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : all_commands(app)) names.push_back(sub->get_name());
  return join_names(names);
}

// The two words' distance in single-character edits, a swap of neighbours counting one.
std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

std::shared_ptr<CLI::FormatterBase> help_formatter() { return std::make_shared<HelpFormatter>(); }

std::string closest_word(std::string_view word, const std::vector<std::string>& candidates) {
  auto bare = [](std::string_view w) { return w.substr(std::min(w.find_first_not_of('-'), w.size())); };
  const std::size_t len = bare(word).size();
  // One edit in a short word, two in a longer one: more would suggest unrelated words. Words of
  // one or two letters (-x) are too short to guess from.
  if (len < 3) return {};
  const std::size_t allowed = len <= 4 ? 1 : 2;
  std::string best;
  std::size_t best_distance = allowed + 1;
  for (const auto& c : candidates) {
    std::size_t dist = edit_distance(word, c);
    if (dist < best_distance) {
      best = c;
      best_distance = dist;
    }
  }
  if (!best.empty()) return best;
  // A unique prefix of 3 or more letters (`--time` for --timeout).
  for (const auto& c : candidates) {
    if (len >= 3 && c.size() > word.size() && c.compare(0, word.size(), word) == 0) {
      if (!best.empty()) return {};
      best = c;
    }
  }
  return best;
}

UsageError describe_parse_error(const CLI::App& app, const CLI::ParseError& error) {
  auto parsed = app.get_subcommands();
  const CLI::App* command = parsed.empty() ? nullptr : parsed.front();
  const std::string cmd = command ? command->get_name() : "";
  // Words CLI11 could not place come first: an unknown option explains the errors it causes.
  if (auto l = leftover(app, command)) return *l;
  const std::string what = error.what();
  if (dynamic_cast<const CLI::ValidationError*>(&error)) return {what, cmd};  // "--x: expected ..., got ..."
  if (auto* opt = option_in_message(command, what)) {
    const std::string name = opt->get_name();
    if (dynamic_cast<const CLI::ArgumentMismatch*>(&error) || dynamic_cast<const CLI::ConversionError*>(&error)) {
      if (opt->get_expected_max() == 0) return {name + " is a flag: it takes no value", cmd};
      return {name + " needs a value (" + opt->get_type_name() + ")", cmd};
    }
    if (dynamic_cast<const CLI::ExcludesError*>(&error)) {
      auto at = what.find(" excludes ");
      if (at != std::string::npos) return {name + " and " + what.substr(at + 10) + " cannot be used together", cmd};
    }
  }
  if (dynamic_cast<const CLI::RequiredError*>(&error) && !command)
    return {"no command given; the commands are " + command_list(app), ""};
  return {what, cmd};
}

std::optional<UsageError> unknown_command(const CLI::App& app, std::string_view word) {
  std::vector<std::string> names;
  for (const CLI::App* sub : all_commands(app)) {
    if (sub->get_name() == word) return std::nullopt;
    names.push_back(sub->get_name());
  }
  std::string near = closest_word(word, names);
  return UsageError{"unknown command " + quoted_value(word) + (near.empty() ? "" : "; did you mean " + near + "?") +
                        " (the commands are " + command_list(app) + ")",
                    ""};
}

void print_usage_error(const UsageError& e) {
  std::string text = "tether: " + for_terminal(STDERR_FILENO, e.message) + "\nTry 'tether " +
                     (e.command.empty() ? "" : e.command + " ") + "--help' for more information.\n";
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace tether::cli
