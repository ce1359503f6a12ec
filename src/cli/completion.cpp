// `tether completion SHELL`: reads the CLI11 definition into a CompletionModel, then writes it out
// as one shell's script. The shell code around the data (how a word is found, how `--` hands over
// to the bridge's command) is per shell by necessity; every command, option and value in it comes
// from the model, so nothing here names a tether option.
#include "cli/completion.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>

#include "cli/common.h"
#include "cli/usage.h"
#include "tether_config.h"

namespace tether::cli {

namespace {

std::vector<std::string> split(std::string_view text, char sep) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    std::size_t end = text.find(sep, start);
    parts.emplace_back(text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

bool all_of_chars(std::string_view word, bool (*ok)(char)) {
  return !word.empty() && std::all_of(word.begin(), word.end(), ok);
}

// A fixed value as a metavar spells it: "allow-always", "tail". Placeholders are upper case.
bool is_value_word(std::string_view word) {
  return all_of_chars(word, [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.'; });
}

// What a placeholder asks for: "FILE", "PATH", "JOURNAL_FILE" a file; "DIR" a directory.
ValueKind placeholder_kind(std::string_view placeholder) {
  ValueKind kind = ValueKind::kNone;
  for (const std::string& part : split(placeholder, '_')) {
    if (part == "DIR" || part == "DIRECTORY") return ValueKind::kDir;
    if (part == "FILE" || part == "PATH") kind = ValueKind::kFile;
  }
  return kind;
}

struct ValueSpec {
  std::vector<std::string> choices;
  ValueKind kind = ValueKind::kNone;
  std::string metavar;
};

// Reads a value's completion from what --help shows for it: the option text when there is one
// ("SECS", "tail|pass|FILE", "[=NAME|PATH]"), else the type and its validators' descriptions
// ("TEXT:{ask,allow,deny}", "FLOAT:NONNEGATIVE"); a validator's set counts even when an option
// text hides it from --help.
ValueSpec read_value(const CLI::Option& opt) {
  ValueSpec spec;
  // A validator's set (IsMember: "{a,b}"; a Transformer's map: "{a->x,b->y}").
  std::string type = opt.get_type_name();
  std::size_t open = type.find('{');
  std::size_t close = open == std::string::npos ? open : type.find('}', open);
  if (close != std::string::npos) {
    for (std::string& item : split(std::string_view(type).substr(open + 1, close - open - 1), ','))
      if (std::string value = item.substr(0, item.find("->")); !value.empty()) spec.choices.push_back(value);
  }
  // The metavar: the type before the validators, without "[=", "]" and a trailing "...".
  std::string shown = opt.get_option_text().empty() ? type : opt.get_option_text();
  std::string meta = shown.substr(0, shown.find_first_of(":{"));
  meta.erase(std::remove_if(meta.begin(), meta.end(), [](char c) { return c == '[' || c == ']'; }), meta.end());
  if (!meta.empty() && meta.front() == '=') meta.erase(0, 1);
  if (meta.size() > 3 && meta.compare(meta.size() - 3, 3, "...") == 0) meta.resize(meta.size() - 3);
  std::vector<std::string> alternatives = split(meta, '|');
  for (const std::string& alternative : alternatives) {
    if (alternatives.size() > 1 && is_value_word(alternative)) {
      if (std::find(spec.choices.begin(), spec.choices.end(), alternative) == spec.choices.end())
        spec.choices.push_back(alternative);
    } else if (ValueKind kind = placeholder_kind(alternative); kind != ValueKind::kNone) {
      if (spec.kind != ValueKind::kFile) spec.kind = kind;  // a file may be a directory, not the reverse
    }
  }
  spec.metavar = meta.empty() ? "VALUE" : meta;
  return spec;
}

// The first clause of a description, on one line: a completion menu has no room for the rest.
std::string summary(std::string text) {
  std::replace(text.begin(), text.end(), '\n', ' ');
  // Cut at the first "; ", ": " or " (" outside parentheses that leaves a dozen characters.
  int depth = 0;
  for (std::size_t i = 0; i + 1 < text.size(); ++i) {
    if (depth == 0 && i >= 12 && (text.compare(i, 2, "; ") == 0 || text.compare(i, 2, ": ") == 0 || text.compare(i, 2, " (") == 0)) {
      text.resize(i);
      break;
    }
    depth += text[i] == '(' ? 1 : text[i] == ')' ? -1 : 0;
  }
  if (text.size() > 72) {
    std::size_t space = text.rfind(' ', 69);
    text = text.substr(0, space == std::string::npos ? 69 : space) + "...";
  }
  return text;
}

void read_options(const CLI::App& app, CompletionCommand& command) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_group().empty()) continue;  // hidden, as in --help
    ValueSpec value = read_value(*opt);
    std::vector<std::string> names;
    for (const std::string& name : opt->get_lnames()) names.push_back("--" + name);
    for (const std::string& name : opt->get_snames()) names.push_back("-" + name);
    if (!names.empty()) {
      CompletionOption o;
      o.names = std::move(names);
      o.description = summary(opt->get_description());
      if (opt->get_expected_max() > 0) {
        o.value = CompletionOption::Value::kSeparate;
      } else if (!opt->get_option_text().empty()) {
        o.value = CompletionOption::Value::kAttached;  // a flag that shows a metavar takes "=VALUE"
      }
      if (o.value != CompletionOption::Value::kNone) {
        o.choices = value.choices;
        o.kind = value.kind;
        o.metavar = value.metavar;
      }
      auto policy = opt->get_multi_option_policy();
      o.repeatable = policy == CLI::MultiOptionPolicy::TakeAll || policy == CLI::MultiOptionPolicy::Join ||
                     opt->get_expected_max() > 1;
      command.options.push_back(std::move(o));
    }
    if (opt->get_positional()) {
      command.positionals.push_back({opt->get_name(true), value.choices, value.kind, opt->get_items_expected_max() > 1});
    }
  }
  // Option groups are unnamed subcommands; their options are the command's own.
  for (const CLI::App* group : app.get_subcommands([](const CLI::App* sub) { return sub->get_name().empty(); }))
    read_options(*group, command);
}

CompletionCommand read_command(const CLI::App& app) {
  CompletionCommand command;
  command.name = app.get_name();
  command.description = summary(app.get_description());
  read_options(app, command);
  return command;
}

// ---- shared by the writers

// `text` inside single quotes, for sh and zsh: a quote ends the string, is escaped, restarts it.
std::string sh_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string join(const std::vector<std::string>& words, std::string_view sep) {
  std::string out;
  for (const std::string& word : words) out += (out.empty() ? "" : std::string(sep)) + word;
  return out;
}

std::string header(const CompletionModel& model, std::string_view shell, std::string_view comment) {
  std::string p = model.program;
  return std::string(comment) + " " + std::string(shell) + " completion for " + p + ", generated by `" + p + " completion " +
         std::string(shell) + "` (" + p + " " + TETHER_VERSION + ")\n" + std::string(comment) +
         " from the definition of its commands and options: regenerate it rather than edit it.\n";
}

// ---- bash

// The body that completes one value: its fixed choices, then files or directories.
std::string bash_value_body(const std::vector<std::string>& choices, ValueKind kind) {
  std::vector<std::string> steps;
  if (!choices.empty()) steps.push_back("_tether_words " + sh_quote(join(choices, " ")) + " \"$3\"");
  if (kind == ValueKind::kFile) steps.push_back("_tether_files -f \"$3\"");
  if (kind == ValueKind::kDir) steps.push_back("_tether_files -d \"$3\"");
  return join(steps, "; ");
}

constexpr std::string_view kBashDriver = R"(
_tether_words() { # WORDS PREFIX: adds the words of WORDS that start with PREFIX to COMPREPLY
  local w list
  IFS=' ' read -ra list <<<"$1"
  for w in "${list[@]}"; do [[ $w == "$2"* ]] && COMPREPLY+=("$w"); done
  return 0
}

_tether_files() { # -f|-d PREFIX: adds file (or directory) names starting with PREFIX
  local f
  while IFS= read -r f; do COMPREPLY+=("$f"); done < <(compgen "$1" -- "$2")
  compopt -o filenames 2>/dev/null
  return 0
}

# Words after `--` are the bridge's command line: a command, then its arguments, completed by
# that command's own completion when bash-completion is loaded, else as file names.
_tether_bridge() { # INDEX of the word after `--`
  if declare -F _command_offset >/dev/null; then
    _command_offset "$1"
  elif (($1 == COMP_CWORD)); then
    mapfile -t COMPREPLY < <(compgen -c -- "${COMP_WORDS[COMP_CWORD]}" | sort -u)
  else
    _tether_files -f "${COMP_WORDS[COMP_CWORD]}"
  fi
}

_tether() {
  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]} cmd='' pos=0 i w opt=''
  local opts valued positionals many
  COMPREPLY=()
  _tether_spec ''
  # Find the command and count its positionals; the value of an option is neither.
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=${COMP_WORDS[i]}
    if [[ $w == -- ]]; then
      _tether_bridge $((i + 1))
      return 0
    elif [[ $w == = ]]; then
      i=$((i + 1)) # --option=value, which bash splits at '=': skip the value
    elif [[ $w == -* ]]; then
      [[ $valued == *" $w "* && ${COMP_WORDS[i + 1]} != = ]] && i=$((i + 1))
    elif [[ -z $cmd ]]; then
      cmd=$w
      _tether_spec "$cmd"
    else
      pos=$((pos + 1))
    fi
  done
  # The value of an option: "--opt VALUE", "--opt=VALUE" (split by bash at '=', or not).
  if [[ $cur == = ]]; then
    opt=$prev cur=''
  elif [[ $prev == = && COMP_CWORD -ge 2 ]]; then
    opt=${COMP_WORDS[COMP_CWORD - 2]}
  elif [[ $cur == -*=* ]]; then
    opt=${cur%%=*}
    _tether_values "$cmd" "$opt" "${cur#*=}"
    COMPREPLY=("${COMPREPLY[@]/#/$opt=}")
    return 0
  elif [[ $prev == -* && $valued == *" $prev "* ]]; then
    opt=$prev
  fi
  if [[ -n $opt ]]; then
    _tether_values "$cmd" "$opt" "$cur"
  elif [[ $cur == -* ]]; then
    _tether_words "$opts" "$cur"
  elif [[ -z $cmd ]]; then
    _tether_words "$_tether_commands" "$cur"
  elif ((pos < positionals || many)); then
    ((pos >= positionals)) && pos=$((positionals - 1))
    _tether_values "$cmd" "#$pos" "$cur" # free text (a prompt) gets nothing, not a '-' typed in
  else
    _tether_words "$opts" "$cur" # the command takes no more positionals: its options
  fi
  return 0
}
)";

std::string bash_spec_arm(const CompletionCommand& command) {
  std::vector<std::string> all, valued;
  for (const CompletionOption& o : command.options) {
    all.insert(all.end(), o.names.begin(), o.names.end());
    if (o.value == CompletionOption::Value::kSeparate) valued.insert(valued.end(), o.names.begin(), o.names.end());
  }
  bool many = !command.positionals.empty() && command.positionals.back().many;
  return "    " + sh_quote(command.name) + ")\n      opts=" + sh_quote(" " + join(all, " ") + " ") + "\n      valued=" +
         sh_quote(" " + join(valued, " ") + " ") + "\n      positionals=" + std::to_string(command.positionals.size()) +
         " many=" + (many ? "1" : "0") + " ;;\n";
}

std::string bash_script(const CompletionModel& model) {
  std::vector<const CompletionCommand*> commands{&model.root};
  std::vector<std::string> names;
  for (const CompletionCommand& c : model.commands) {
    commands.push_back(&c);
    names.push_back(c.name);
  }
  std::string out = header(model, "bash", "#");
  out += "# Install: `meson install` puts it in DATADIR/bash-completion/completions/" + model.program +
         ";\n# for one shell: source <(" + model.program + " completion bash)\n\n";
  out += "_tether_commands=" + sh_quote(join(names, " ")) + "\n\n";
  out += "# _tether_spec COMMAND ('' before one): its options, those of them that take a value in the\n"
         "# next word (each list with a space at both ends), how many positionals, whether the last\n"
         "# takes every remaining word.\n_tether_spec() {\n  case $1 in\n";
  for (const CompletionCommand* c : commands) out += bash_spec_arm(*c);
  out += "    *) opts=' ' valued=' ' positionals=0 many=0 ;;\n  esac\n}\n\n";
  // Value completions, one case arm per distinct body: "COMMAND OPTION" or "COMMAND #N".
  std::map<std::string, std::vector<std::string>> arms;
  for (const CompletionCommand* c : commands) {
    for (const CompletionOption& o : c->options) {
      std::string body = bash_value_body(o.choices, o.kind);
      if (o.value == CompletionOption::Value::kNone || body.empty()) continue;
      for (const std::string& name : o.names) arms[body].push_back(sh_quote(c->name + " " + name));
    }
    for (std::size_t i = 0; i < c->positionals.size(); ++i) {
      std::string body = bash_value_body(c->positionals[i].choices, c->positionals[i].kind);
      if (!body.empty()) arms[body].push_back(sh_quote(c->name + " #" + std::to_string(i)));
    }
  }
  out += "# _tether_values COMMAND OPTION PREFIX: adds the values of OPTION (#N: the Nth positional)\n"
         "# that start with PREFIX.\n_tether_values() {\n  case \"$1 $2\" in\n";
  for (const auto& [body, patterns] : arms) out += "    " + join(patterns, " | ") + ")\n      " + body + " ;;\n";
  out += "  esac\n  return 0\n}\n";
  out += kBashDriver;
  out += "\ncomplete -F _tether " + model.program + "\n";
  return out;
}

// ---- zsh

// Text inside an _arguments description "[...]": brackets and backslashes escaped.
std::string zsh_bracketed(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// A message or a name in a "name:description" pair: colons escaped.
std::string zsh_colon(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == ':' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

std::string zsh_action(const std::vector<std::string>& choices, ValueKind kind) {
  std::string files = kind == ValueKind::kDir ? "_files -/" : kind == ValueKind::kFile ? "_files" : "";
  // Both: a helper, as a colon in the action would start another argument of the option.
  if (!choices.empty() && !files.empty())
    return "_tether_words_or_files \"" + join(choices, " ") + "\" " + (kind == ValueKind::kDir ? "dirs" : "files");
  if (!choices.empty()) return "(" + join(choices, " ") + ")";
  return files.empty() ? " " : files;
}

// One _arguments spec: "(-q --quiet)"{-q,--quiet}"[Print only answers]", "--timeout=[...]:SECS: ".
std::string zsh_option_spec(const CompletionOption& o) {
  using Value = CompletionOption::Value;
  std::vector<std::string> names;
  for (const std::string& name : o.names) {
    bool is_long = name.size() > 2 && name[1] == '-';
    std::string suffix = o.value == Value::kSeparate ? (is_long ? "=" : "+") : o.value == Value::kAttached && is_long ? "=-" : "";
    names.push_back(name + suffix);
  }
  std::string rest = "[" + zsh_bracketed(o.description) + "]";
  if (o.value != Value::kNone)
    rest += std::string(o.value == Value::kAttached ? "::" : ":") + zsh_colon(o.metavar) + ":" + zsh_action(o.choices, o.kind);
  // Several names: one spec each by brace expansion, excluding one another unless repeatable.
  std::string prefix = o.repeatable ? "*" : "";
  if (names.size() == 1) return sh_quote(prefix + names[0] + rest);
  if (!o.repeatable) prefix = "(" + join(o.names, " ") + ")";
  return sh_quote(prefix) + "{" + join(names, ",") + "}" + sh_quote(rest);
}

std::string zsh_arguments(const CompletionCommand& command, std::string_view indent, std::vector<std::string> extra) {
  std::vector<std::string> specs;
  for (const CompletionOption& o : command.options) specs.push_back(zsh_option_spec(o));
  for (std::size_t i = 0; i < command.positionals.size(); ++i) {
    const CompletionPositional& p = command.positionals[i];
    std::string position = p.many ? "*" : std::to_string(i + 1);
    specs.push_back(sh_quote(position + ":" + zsh_colon(p.name) + ":" + zsh_action(p.choices, p.kind)));
  }
  specs.insert(specs.end(), extra.begin(), extra.end());
  std::string out = "_arguments -s -C :";
  for (const std::string& spec : specs) out += " \\\n" + std::string(indent) + "  " + spec;
  return out;
}

std::string zsh_script(const CompletionModel& model) {
  std::string out = "#compdef " + model.program + "\n" + header(model, "zsh", "#");
  out += "# Install: `meson install` puts it in DATADIR/zsh/site-functions/_" + model.program +
         ";\n# for one shell (after compinit): source <(" + model.program + " completion zsh)\n\n";
  out += "# ... WORDS files|dirs: one of the words, or a file (directory) name. _arguments puts its\n"
         "# own options first: the last two arguments are ours.\n"
         "_tether_words_or_files() {\n"
         "  local words=${@[-2]} files=_files\n"
         "  [[ ${@[-1]} == dirs ]] && files='_files -/'\n"
         "  _alternative \"values:value:($words)\" \"files:file:$files\"\n"
         "}\n\n";
  out += "_tether() {\n"
         "  local curcontext=$curcontext state state_descr line ret=1\n"
         "  local -A opt_args\n"
         "  # Words after `--` are the bridge's command line: complete them as a command of its own.\n"
         "  integer dd=${words[(i)--]}\n"
         "  if (( dd < CURRENT )); then\n"
         "    words=(\"${(@)words[dd+1,-1]}\")\n"
         "    (( CURRENT -= dd ))\n"
         "    _normal\n"
         "    return\n"
         "  fi\n  ";
  out += zsh_arguments(model.root, "  ", {sh_quote("1: :->command"), sh_quote("*:: :->args")}) + " && ret=0\n";
  out += "  case $state in\n    command)\n      local -a commands=(\n";
  for (const CompletionCommand& c : model.commands)
    out += "        " + sh_quote(zsh_colon(c.name) + ":" + c.description) + "\n";
  out += "      )\n      _describe -t commands 'tether command' commands && ret=0\n      ;;\n";
  out += "    args)\n      curcontext=${curcontext%:*:*}:tether-$words[1]:\n      case $words[1] in\n";
  for (const CompletionCommand& c : model.commands)
    out += "        (" + c.name + ")\n          " + zsh_arguments(c, "          ", {}) + " && ret=0\n          ;;\n";
  out += "      esac\n      ;;\n  esac\n  return ret\n}\n\n";
  out += "if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n  _tether \"$@\"\nelse\n  compdef _tether " +
         model.program + "\nfi\n";
  return out;
}

// ---- fish

// `text` inside fish's single quotes: only the quote and the backslash are special.
std::string fish_quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

constexpr std::string_view kFishDriver = R"(
# The command being completed ('' before one); fails after `--`, where the words are the bridge's.
function __tether_command
    set -l words (commandline -opc)
    set -e words[1]
    set -l skip 0
    for w in $words
        if test $skip = 1
            set skip 0
        else if test "$w" = --
            return 1
        else if string match -q -- '-*' $w
            contains -- $w $__tether_root_valued; and set skip 1
        else
            echo $w
            return 0
        end
    end
    echo ''
end

function __tether_using --argument-names command
    set -l current (__tether_command); or return 1
    test "$current" = "$command"
end

function __tether_in_bridge
    contains -- -- (commandline -opc)
end

# The bridge's command line: complete it as a command of its own.
function __tether_bridge
    set -l words (commandline -opc)
    set -l bridge $words[(math (contains -i -- -- $words) + 1)..-1]
    if set -q bridge[1]
        complete -C (string join ' ' -- (string escape -- $bridge))' '(commandline -ct)
    else
        complete -C (commandline -ct)
    end
end

complete -c tether -f
complete -c tether -n __tether_in_bridge -a '(__tether_bridge)'
)";

std::string fish_option_line(const std::string& command, const CompletionOption& o) {
  std::string line = "complete -c tether -n " + fish_quote("__tether_using " + (command.empty() ? "''" : command));
  for (const std::string& name : o.names) line += (name[1] == '-' ? " -l " : " -s ") + name.substr(name[1] == '-' ? 2 : 1);
  // -r: the value may be the next word; -x: and it is not a file name (fish offers files otherwise).
  if (o.value == CompletionOption::Value::kSeparate) line += o.kind == ValueKind::kFile ? " -r" : " -x";
  if (o.value != CompletionOption::Value::kNone) {
    if (o.kind == ValueKind::kFile) line += " -F";
    if (o.kind == ValueKind::kDir) line += " -a '(__fish_complete_directories (commandline -ct))'";
    else if (!o.choices.empty()) line += " -a " + fish_quote(join(o.choices, " "));
  }
  return line + " -d " + fish_quote(o.description) + "\n";
}

std::string fish_script(const CompletionModel& model) {
  std::string out = header(model, "fish", "#");
  out += "# Install: `meson install` puts it in DATADIR/fish/vendor_completions.d/" + model.program + ".fish;\n" +
         "# for one shell: " + model.program + " completion fish | source\n";
  std::vector<std::string> root_valued;
  for (const CompletionOption& o : model.root.options)
    if (o.value == CompletionOption::Value::kSeparate) root_valued.insert(root_valued.end(), o.names.begin(), o.names.end());
  out += "\nset -g __tether_root_valued";
  for (const std::string& name : root_valued) out += " " + fish_quote(name);
  out += "\n";
  out += kFishDriver;
  for (const CompletionCommand& c : model.commands)
    out += "complete -c tether -n \"__tether_using ''\" -a " + fish_quote(c.name) + " -d " + fish_quote(c.description) + "\n";
  for (const CompletionOption& o : model.root.options) out += fish_option_line("", o);
  for (const CompletionCommand& c : model.commands) {
    out += "\n";
    for (const CompletionOption& o : c.options) out += fish_option_line(c.name, o);
    for (const CompletionPositional& p : c.positionals) {
      if (p.choices.empty() && p.kind == ValueKind::kNone) continue;
      std::string line = "complete -c tether -n " + fish_quote("__tether_using " + c.name);
      if (p.kind == ValueKind::kFile) line += " -F";
      if (p.kind == ValueKind::kDir) line += " -a '(__fish_complete_directories (commandline -ct))'";
      else if (!p.choices.empty()) line += " -a " + fish_quote(join(p.choices, " "));
      out += line + "\n";
    }
  }
  return out;
}

}  // namespace

CompletionModel completion_model(const CLI::App& root) {
  CompletionModel model;
  model.program = root.get_name().empty() ? "tether" : root.get_name();
  model.root = read_command(root);
  model.root.name.clear();
  for (const CLI::App* sub : root.get_subcommands([](const CLI::App* s) { return !s->get_name().empty() && !s->get_group().empty(); }))
    model.commands.push_back(read_command(*sub));
  std::sort(model.commands.begin(), model.commands.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return model;
}

std::optional<std::string> completion_script(const CompletionModel& model, std::string_view shell) {
  if (shell == "bash") return bash_script(model);
  if (shell == "zsh") return zsh_script(model);
  if (shell == "fish") return fish_script(model);
  return std::nullopt;
}

std::function<int()> setup_completion(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto shell = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("completion", "Print the completion script for SHELL (bash, zsh or fish) on stdout");
  sub->footer(
      "`meson install` puts the three scripts where each shell looks for them; to load one by hand:\n"
      "  bash: source <(tether completion bash)     (or save it as\n"
      "        ~/.local/share/bash-completion/completions/tether)\n"
      "  zsh:  tether completion zsh > ~/.zfunc/_tether, with ~/.zfunc in $fpath before compinit\n"
      "  fish: tether completion fish > ~/.config/fish/completions/tether.fish\n"
      "The scripts are made from tether's own option definitions, so they match this tether.");
  // Checked by the run function rather than CLI11, so that the error names the choices.
  sub->add_option("SHELL", *shell, "The shell the script is for")->option_text("bash|zsh|fish");
  return [shell, &app, &bridge_argv] {
    if (!bridge_argv.empty()) {
      print_usage_error({"completion takes no bridge command (nothing after --)", "completion"});
      return kExitUsage;
    }
    std::optional<std::string> script = completion_script(completion_model(app), *shell);
    if (!script) {
      if (shell->empty()) {
        print_usage_error({"completion needs a shell: tether completion bash|zsh|fish", "completion"});
      } else {
        std::string guess = closest_word(*shell, {"bash", "zsh", "fish"});
        print_usage_error({"completion: unknown shell \"" + *shell + "\"" + (guess.empty() ? "" : "; did you mean " + guess + "?") +
                               " (the shells are bash, zsh and fish)",
                           "completion"});
      }
      return kExitUsage;
    }
    if (std::fwrite(script->data(), 1, script->size(), stdout) != script->size() || std::fflush(stdout) != 0) {
      std::fprintf(stderr, "tether: completion: cannot write the script to stdout\n");
      return kExitIoErr;
    }
    return kExitOk;
  };
}

}  // namespace tether::cli
