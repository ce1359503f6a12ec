// What a prompt carries besides its words (issue 14, item 1): context piped on stdin and files
// given with -a/--attach (talk's /attach, a batch item's "attachments"), read at the edge and turned
// into ACP content blocks by what the agent said it accepts (promptCapabilities, ACP.md §4-5).
//
// Reading (read_attachment, read_piped) sorts each input into a kind by its bytes, not its name:
// PNG, JPEG, GIF and WebP images; WAV, MP3, OGG and FLAC audio; text (valid UTF-8 without NUL
// bytes); anything else is binary. Each kind has a size limit, checked before the whole file is
// read, so a typo naming a 4 GiB file costs nothing.
//
// Building (prompt_blocks) is pure: in the documented order (piped context, then the attachments
// as given, then the words), each input becomes
//   image / audio  an image / audio block, when the agent accepts that kind; else an error;
//   text           an embedded resource (`resource` with `text`) when the agent accepts
//                  embeddedContext; else a file is a resource_link (every agent takes those) and
//                  piped text a plain text block;
//   binary         an embedded `blob` resource with embeddedContext; else a file is a
//                  resource_link and piped bytes an error (nothing else can carry them).
// An error is a sentence for exit 64 (usage): the agent cannot take what was asked for.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/session.h"

namespace tether::cli {

// Size limits, per input. Text is embedded whole into one JSON line, so it gets less room than
// an image; the whole prompt is bounded by the sum.
inline constexpr std::uint64_t kMaxTextAttachment = std::uint64_t{4} << 20;     // 4 MiB
inline constexpr std::uint64_t kMaxBinaryAttachment = std::uint64_t{16} << 20;  // 16 MiB (images, audio, other)
inline constexpr std::size_t kMaxAttachments = 64;

struct Attachment {
  enum class Kind { text, image, audio, binary };
  Kind kind = Kind::text;
  std::string name;       // what the user typed (a path, or "stdin")
  std::string uri;        // file:///abs/path (percent-encoded), or "" for piped input
  std::string mime_type;  // image/png, text/plain, application/octet-stream, ...
  std::string data;       // the bytes (kept for every kind but a file sent as a link, see below)
  std::uint64_t size = 0;
  bool piped = false;     // read from stdin (-a -, or context piped under the words)
};

// The kind and MIME type of `bytes` (sniffed from its first bytes and, for text, whether it is
// valid UTF-8 without NUL). `path` refines the text MIME type by extension (.md, .json, ...).
std::pair<Attachment::Kind, std::string> sniff(std::string_view bytes, std::string_view path = {});

// Reads PATH ("-": stdin). Relative paths resolve against the process's directory (where the
// user typed them). An error names the path and what was wrong.
std::variant<Attachment, std::string> read_attachment(const std::string& path);
// stdin as context (the words are the instruction): its bytes, bounded by the limits above.
std::variant<Attachment, std::string> read_piped(int fd);

// What the agent accepts in a prompt, from its agentCapabilities.promptCapabilities.
struct PromptCaps {
  bool image = false;
  bool audio = false;
  bool embedded = false;
  static PromptCaps from(const nlohmann::json& agent_capabilities);
};

// The content blocks of one prompt: the piped context (if any), the attachments in order, then
// `words` (when not empty). An error sentence when the agent cannot take one of them.
std::variant<nlohmann::json, std::string> prompt_blocks(const std::vector<Attachment>& inputs, std::string_view words,
                                                        const PromptCaps& caps, std::string_view agent_name = "the agent");

// Reads each of `paths` (read_attachment); the first error stops it.
std::variant<std::vector<Attachment>, std::string> read_attachments(const std::vector<std::string>& paths);

// For AcpSession::prompt_built: the blocks of `inputs` and `words`, made once the agent has said
// what it accepts (a refusal names it by its agentInfo name, flattened to one line).
acp::AcpSession::ContentBuilder content_builder(std::vector<Attachment> inputs, std::string words);

// "a.png, notes.md": the names, for a prompt line or a log.
std::string attachment_names(const std::vector<Attachment>& inputs);

std::string base64(std::string_view bytes);

}  // namespace tether::cli
