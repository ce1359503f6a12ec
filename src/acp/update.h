// ACP `session/update` payloads parsed into plain values: message and thought chunks, tool calls
// and their updates, plans, usage, and the session-state kinds (commands, mode, config options,
// title). Unknown kinds parse to Kind::unknown and are ignored by callers; a known kind that lacks
// a required field is malformed and yields nothing. Pure functions: no I/O, no state.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace tether::acp {

using json = nlohmann::json;

// One ToolCallContent item of a tool call, as plain bounded values: what the agent shows of the
// call (a diff, a content block such as command output, a client terminal). The acp layer only
// parses; cli/tool_view renders. Each text is kept up to kMaxToolText bytes (`truncated` says
// when it was cut; `lines` counts the lines of the whole text), so an agent's huge text costs a
// bounded copy.
struct ToolContent {
  enum class Kind { content, diff, terminal };
  Kind kind = Kind::content;
  std::string text;                     // content: the block as text (content_text); diff: newText
  std::optional<std::string> old_text;  // diff: oldText; nothing for a new file
  std::string path;                     // diff: the file
  std::string terminal_id;              // terminal
  bool truncated = false;               // text or old_text was longer than kMaxToolText
  std::int64_t lines = 0;               // lines of the whole text (diff: newText)
  std::int64_t old_lines = 0;           // diff: lines of the whole oldText
  bool operator==(const ToolContent&) const = default;
};
inline constexpr std::size_t kMaxToolText = std::size_t{1} << 20;  // 1 MiB per text
inline constexpr std::size_t kMaxToolContents = 16;                 // items per tool call; the rest dropped

// The fields of a tool call that an update carried; absent ones stay empty (a tool_call_update
// sends only what changed).
struct ToolCall {
  std::string id;
  std::optional<std::string> title;
  std::optional<std::string> kind;    // read, edit, delete, move, search, execute, think, fetch, ...
  std::optional<std::string> status;  // pending, in_progress, completed, failed
  std::vector<std::string> locations;  // paths it touches
  std::vector<std::int64_t> location_lines;  // per entry of `locations`: its line, 0 when not given
  // content: set when the update carried a `content` array (it replaces the earlier one, as the
  // schema says for tool_call_update); nothing when the update left it unchanged.
  std::optional<std::vector<ToolContent>> content;
  std::optional<std::string> command;  // rawInput.command (a string, or an argv joined by spaces)
};

// A tool_call_update applied to what is known of the call: the fields it carries replace the
// known ones (content and locations as a whole).
void merge_tool_call(ToolCall& known, const ToolCall& update);

struct PlanEntry {
  std::string content;
  std::string priority;  // high, medium, low
  std::string status;    // pending, in_progress, completed
};

struct Usage {
  std::int64_t used = 0;  // tokens in context
  std::int64_t size = 0;  // context window
  std::optional<double> cost;
  std::string currency;
};

struct Command {
  std::string name;
  std::string description;
  std::string hint;  // input.hint, empty when the command takes no input
};

struct Update {
  enum class Kind {
    user_message,      // user_message_chunk (history replay, echoes)
    agent_message,     // agent_message_chunk
    agent_thought,     // agent_thought_chunk
    tool_call,
    tool_call_update,
    plan,              // always the complete plan
    commands,          // available_commands_update
    mode,              // current_mode_update
    config_options,    // config_option_update
    session_info,      // session_info_update (title)
    usage,             // usage_update
    unknown,           // a kind this version does not know: ignore it
  };
  Kind kind = Kind::unknown;
  std::string kind_name;      // the wire value of sessionUpdate
  std::string text;           // chunks: the content block rendered as text
  std::string message_id;     // chunks: messageId, when given
  ToolCall tool;              // tool_call, tool_call_update
  std::vector<PlanEntry> plan;
  std::vector<Command> commands;
  std::string mode_id;        // mode: currentModeId
  std::optional<std::string> title;  // session_info
  Usage usage;
  json raw;                   // the update object as received (null from read_chunk_line)
};

// Parses the `update` member of a session/update's params. Nothing when it is malformed.
std::optional<Update> parse_update(json update);

// The hot path of a streamed answer (issue 17): a whole session/update line that is a message or
// thought chunk (or a user chunk) with text content for `session_id`, read straight from the line
// without building a json value. Nothing for any other line, or any shape this reader does not
// take (a repeated key, content that is not text), which the caller then parses: the Update is
// the one parse_update() gives, except that `raw` stays null (nothing reads a chunk's raw).
std::optional<Update> read_chunk_line(std::string_view line, std::string_view session_id);
// A text chunk of any session written the common way (the official SDK's member order, no
// escapes in the text or the session id), matched byte for byte: such a line is one well-formed
// session/update notification. The dispatcher's recognizer (rpc::ConnectionOptions::
// plain_notification): the most common line on the wire skips its scan.
bool is_common_chunk_line(std::string_view line);

// The tool call fields of `obj` (a tool_call update, or a permission request's toolCall).
// Nothing without a string toolCallId (or, with `require_title`, without a title).
std::optional<ToolCall> parse_tool_call(const json& obj, bool require_title);

// Where a new agent message starts in a turn's answer (DESIGN §6): text that resumes after a
// tool call or a plan, or a chunk whose messageId differs from the last one. Fed every update of
// one turn in wire order; for an agent_message chunk, separator() returns what goes before its
// text: "" within a message, else the line breaks that leave one blank line between the two
// messages ("I will use a tool." / "Tool result seen", never glued). A plain value, one per turn.
class MessageBreaks {
 public:
  std::string separator(const Update& u);

 private:
  bool any_text_ = false;     // some answer text came in this turn
  bool interrupted_ = false;  // a tool call or plan came after it
  std::string last_id_;       // messageId of the last chunk that had one
  int newlines_ = 0;          // how many newlines the answer ends with now (at most 2)
};

// One ContentBlock as text: text blocks verbatim, resource links as their URI, embedded text
// resources as their text, other blocks as a short placeholder ("[image image/png]").
std::string content_text(const json& block);

// A short human line for a tool call or plan, for stderr ("tool: Read file (read, completed)").
std::string describe_tool_call(const ToolCall& tool);
std::string describe_plan(const std::vector<PlanEntry>& plan);

}  // namespace tether::acp
