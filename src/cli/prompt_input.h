// What `tether prompt` sends, gathered before the bridge starts (DESIGN §7, issue 14 item 1): the
// words, the context piped on stdin, and the -a/--attach files.
//
// The rules, in one place:
//   - words given, stdin not a terminal (and no --no-stdin, no `-a -`): stdin is read whole as
//     context and sent before the words (`git diff | tether prompt "review this"`); an empty stdin
//     (</dev/null, a closed pipe) adds nothing;
//   - no words (or the single word "-"): stdin is the prompt itself, as it always was; bytes that
//     are not text (a piped image) are sent as an attachment instead;
//   - a terminal on stdin is never read: no words and no attachment is a usage error with a hint;
//   - `-a -` takes stdin as an attachment, so it is not read a second time.
// The order on the wire is the context, the attachments as given, the words.
#pragma once

#include <string>
#include <vector>

#include "cli/attachments.h"

namespace tether::cli {

struct PromptOptions;

struct PromptInput {
  std::string words;                    // the instruction (may be empty when attachments carry it all)
  std::vector<Attachment> inputs;       // context first, then the attachments as given
};

// kExitOk, or the exit status after the error was reported (64 usage, 65 empty, 74 I/O).
int read_prompt_input(const PromptOptions& options, PromptInput& out);

}  // namespace tether::cli
