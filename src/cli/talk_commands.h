// The lines a person types in `tether talk`, classified: a prompt for the agent, one of talk's own
// slash commands, or one of the agent's advertised commands (sent as a plain text prompt, as ACP
// wants). Pure functions: no I/O, no state.
//
// `//text` sends the literal line `/text`; a line that starts with a space is still parsed (the
// space only keeps it out of the history).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "acp/update.h"

namespace tether::cli::talk {

enum class LineKind {
  empty,          // nothing but blanks: ignored
  prompt,         // text for the agent (`text`)
  agent_command,  // one of the agent's commands: sent as a prompt (`text`, the line as typed)
  help,
  exit,
  cancel,
  restart,
  status,
  stderr_tail,
  multi,          // start a multi-line prompt; `text` is the terminator (default "/end")
  edit,           // compose in $EDITOR; `text` is the initial text (may be empty)
  session_new,
  mode,           // /mode [ID]: `text` the mode id, empty to list
  model,          // /model [ID]: `text` the model id, empty to list
  set,            // /set [KEY VALUE]: `text` "KEY=VALUE", empty to list
  attach,         // /attach [PATH]: `text` the path for the next prompt, empty to list
  detach,         // /detach: drop what /attach added
  unknown,        // a slash word that is neither ours nor the agent's (`text`: the word)
  usage_error,    // one of ours, used wrongly (`text`: what to say)
};

struct ParsedLine {
  LineKind kind = LineKind::empty;
  std::string text;
};

// Classifies one typed line. `agent_commands` are the names the agent advertised (without '/').
ParsedLine parse_line(std::string_view line, const std::vector<acp::Command>& agent_commands);

// True when `line` ends a /multi block whose terminator is `terminator` (surrounding blanks
// ignored).
bool is_terminator(std::string_view line, std::string_view terminator);

// The /help text: talk's commands, the keys, then the agent's commands when it advertised any.
std::string help_text(const std::vector<acp::Command>& agent_commands);

}  // namespace tether::cli::talk
