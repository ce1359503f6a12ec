#include "cli/talk_commands.h"

#include <algorithm>

#include "cli/terminal_text.h"

namespace tether::cli::talk {
namespace {

bool blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && blank(s.front())) s.remove_prefix(1);
  while (!s.empty() && blank(s.back())) s.remove_suffix(1);
  return s;
}

ParsedLine make(LineKind kind, std::string text = {}) { return ParsedLine{kind, std::move(text)}; }

ParsedLine no_args(LineKind kind, std::string_view name, std::string_view args) {
  if (!args.empty()) return make(LineKind::usage_error, "/" + std::string(name) + " takes no arguments");
  return make(kind);
}

}  // namespace

ParsedLine parse_line(std::string_view line, const std::vector<acp::Command>& agent_commands) {
  std::string_view s = trim(line);
  if (s.empty()) return make(LineKind::empty);
  if (s.front() != '/') return make(LineKind::prompt, std::string(line));
  if (s.size() >= 2 && s[1] == '/') return make(LineKind::prompt, std::string(s.substr(1)));

  std::string_view rest = s.substr(1);
  std::size_t end = 0;
  while (end < rest.size() && !blank(rest[end])) ++end;
  std::string_view name = rest.substr(0, end);
  std::string_view args = trim(rest.substr(end));

  if (name == "help" || name == "?") return no_args(LineKind::help, name, args);
  if (name == "exit" || name == "quit") return no_args(LineKind::exit, name, args);
  if (name == "cancel") return no_args(LineKind::cancel, name, args);
  if (name == "restart") return no_args(LineKind::restart, name, args);
  if (name == "status") return no_args(LineKind::status, name, args);
  if (name == "stderr") return no_args(LineKind::stderr_tail, name, args);
  if (name == "multi") {
    if (args.find_first_of(" \t") != std::string_view::npos)
      return make(LineKind::usage_error, "usage: /multi [TERMINATOR] (one word; default /end)");
    return make(LineKind::multi, args.empty() ? std::string("/end") : std::string(args));
  }
  if (name == "edit") return make(LineKind::edit, std::string(args));
  if (name == "session") {
    if (args == "new") return make(LineKind::session_new);
    return make(LineKind::usage_error, "usage: /session new");
  }
  if (name == "mode" || name == "model") {
    if (args.find_first_of(" \t") != std::string_view::npos)
      return make(LineKind::usage_error, "usage: /" + std::string(name) + " [ID] (no ID: list what the agent offers)");
    return make(name == "mode" ? LineKind::mode : LineKind::model, std::string(args));
  }
  if (name == "set") {
    if (args.empty()) return make(LineKind::set);
    std::size_t sp = args.find_first_of(" \t");
    if (sp == std::string_view::npos) return make(LineKind::usage_error, "usage: /set KEY VALUE (no argument: list the options)");
    return make(LineKind::set, std::string(args.substr(0, sp)) + "=" + std::string(trim(args.substr(sp))));
  }
  if (name == "attach") return make(LineKind::attach, std::string(args));  // a path may have blanks
  if (name == "detach") return no_args(LineKind::detach, name, args);
  if (name == "end") return make(LineKind::usage_error, "/end outside a /multi block");
  for (const auto& c : agent_commands)
    if (!name.empty() && c.name == name) return make(LineKind::agent_command, std::string(s));
  return make(LineKind::unknown, std::string(name));
}

namespace {
// A name parse_line() takes as talk's own (anything but unknown with no agent commands known): an
// agent command of the same name is shadowed. Asking parse_line itself keeps the two in step.
bool talk_command(std::string_view name) {
  if (name.empty() || name.front() == '/') return false;
  return parse_line("/" + std::string(name), {}).kind != LineKind::unknown;
}
}  // namespace

bool is_terminator(std::string_view line, std::string_view terminator) { return trim(line) == terminator; }

std::string help_text(const std::vector<acp::Command>& agent_commands) {
  std::string s =
      "Type a prompt and press Enter: the answer streams below it.\n"
      "\n"
      "Commands:\n"
      "  /help             this text\n"
      "  /exit, /quit      stop the bridge and quit (also Ctrl-D on an empty line)\n"
      "  /cancel           cancel the answer in flight (Ctrl-C while an answer streams)\n"
      "  /restart          restart the bridge, resetting its restart budget\n"
      "  /status           the bridge and the session: pid, generation, uptime, restarts, agent\n"
      "  /stderr           the last 4 KiB the bridge wrote to its stderr\n"
      "  /multi [WORD]     a multi-line prompt, ended by a line /end (or WORD)\n"
      "  /edit [TEXT]      compose the prompt in $VISUAL or $EDITOR\n"
      "  /session new      start a new session (the conversation so far is forgotten)\n"
      "  /mode [ID]        set the session's mode (no ID: list the modes the agent offers)\n"
      "  /model [ID]       set the session's model (no ID: list the models)\n"
      "  /set [KEY VALUE]  set one of the agent's session options (no argument: list them)\n"
      "  /attach [PATH]    attach a file to the next prompt (no PATH: list); /detach drops them\n"
      "  //text            send the line /text to the agent as it is\n"
      "\n"
      "Keys: Ctrl-C cancels the answer in flight (twice: abandon it and restart the bridge) or\n"
      "clears the line; Up and Down walk the history; Ctrl-R searches it. Pasted lines become one\n"
      "prompt: press Enter on the last line to send it. A line that starts with a space is not\n"
      "saved in the history.\n";
  if (!agent_commands.empty()) {
    s += "\nThe agent's commands (sent to the agent as typed):\n";
    std::size_t width = 0;
    std::vector<std::string> heads;
    bool shadowed = false;
    for (const auto& c : agent_commands) {
      // An agent command named like one of ours (the demo agent's /exit CODE) is reached with
      // `//`: it is listed the way it must be typed.
      bool ours = talk_command(c.name);
      shadowed = shadowed || ours;
      // The agent's words, each kept on its line (cli::terminal_line).
      std::string head = (ours ? "  //" : "  /") + terminal_line(c.name) + (c.hint.empty() ? "" : " " + terminal_line(c.hint));
      width = std::max(width, head.size());
      heads.push_back(std::move(head));
    }
    for (std::size_t i = 0; i < agent_commands.size(); ++i) {
      s += heads[i];
      if (!agent_commands[i].description.empty())
        s += std::string(width + 2 - heads[i].size(), ' ') + terminal_line(agent_commands[i].description);
      s += '\n';
    }
    if (shadowed) s += "(A command listed with // has the name of one of talk's own: type the // to reach the agent's.)\n";
  }
  return s;
}

}  // namespace tether::cli::talk
