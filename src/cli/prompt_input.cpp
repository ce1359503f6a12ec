#include "cli/prompt_input.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <algorithm>

#include "cli/common.h"
#include "cli/prompt.h"

namespace tether::cli {

int read_prompt_input(const PromptOptions& o, PromptInput& out) {
  const bool words_from_stdin = o.text.empty() || (o.text.size() == 1 && o.text[0] == "-");
  const bool stdin_attached = std::find(o.attach.begin(), o.attach.end(), "-") != o.attach.end();
  const bool stdin_terminal = ::isatty(STDIN_FILENO) != 0;
  if (!words_from_stdin) {
    for (const auto& w : o.text) {
      if (!out.words.empty()) out.words += ' ';
      out.words += w;
    }
  }
  if (words_from_stdin && stdin_attached) {
    error_line("stdin cannot be both the prompt and an attachment (-a -): give the prompt as words");
    return kExitUsage;
  }
  if (words_from_stdin && stdin_terminal && o.attach.empty()) {
    error_line("no prompt given: pass it as words (tether prompt \"Hello\") or pipe it on stdin (echo Hello | tether prompt)");
    return kExitUsage;
  }
  // Context under the words, or the prompt itself.
  if (!stdin_terminal && !stdin_attached && !o.no_stdin && (words_from_stdin || !o.attach.empty() || !out.words.empty())) {
    auto piped = read_piped(STDIN_FILENO);
    if (auto* err = std::get_if<std::string>(&piped)) {
      error_line(*err);
      return err->rfind("cannot read", 0) == 0 ? kExitIoErr : kExitUsage;
    }
    Attachment& a = std::get<Attachment>(piped);
    if (words_from_stdin && a.kind == Attachment::Kind::text) {
      out.words = std::move(a.data);
      while (!out.words.empty() && (out.words.back() == '\n' || out.words.back() == '\r')) out.words.pop_back();
    } else if (!a.data.empty()) {
      out.inputs.push_back(std::move(a));
    }
  }
  if (out.inputs.size() + o.attach.size() > kMaxAttachments) {
    error_line("too many attachments: tether sends at most " + std::to_string(kMaxAttachments) + " with one prompt");
    return kExitUsage;
  }
  for (const auto& path : o.attach) {
    auto got = read_attachment(path);
    if (auto* err = std::get_if<std::string>(&got)) {
      error_line(*err);
      return kExitUsage;
    }
    out.inputs.push_back(std::move(std::get<Attachment>(got)));
  }
  if (out.words.empty() && out.inputs.empty()) {
    error_line(words_from_stdin ? "the prompt read from stdin is empty" : "the prompt is empty");
    return kExitDataErr;
  }
  return kExitOk;
}

}  // namespace tether::cli
