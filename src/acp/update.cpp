#include "acp/update.h"

#include "rpc/json_read.h"
#include "rpc/json_write.h"

#include <algorithm>
#include <cstdint>

#include "rpc/message.h"

namespace tether::acp {
namespace {

using rpc::member;

std::optional<std::string> string_member(const json& obj, std::string_view key) {
  const json* v = member(obj, key);
  if (!v || !v->is_string()) return std::nullopt;
  return v->get<std::string>();
}

// A count an agent sent as a number; one that does not fit in 64 bits (1e300, or an integer too
// long for nlohmann's uint64, which it parses as a double) is malformed: converting it would be
// undefined behaviour (found by tests/fuzz/fuzz_acp_update).
std::int64_t int_member(const json& obj, std::string_view key, bool& ok) {
  const json* v = member(obj, key);
  if (v && v->is_number_float()) {
    double d = v->get<double>();
    // [-2^63, 2^63): the doubles that convert; NaN fails both comparisons.
    if (d >= -9223372036854775808.0 && d < 9223372036854775808.0) return static_cast<std::int64_t>(d);
  } else if (v && v->is_number_unsigned()) {
    if (v->get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) return v->get<std::int64_t>();
  } else if (v && v->is_number_integer()) {
    return v->get<std::int64_t>();
  }
  ok = false;
  return 0;
}

constexpr std::size_t kMaxLocations = 64;
constexpr std::size_t kMaxCommandBytes = 64 * 1024;

std::int64_t count_lines(std::string_view s) {
  if (s.empty()) return 0;
  auto n = static_cast<std::int64_t>(std::count(s.begin(), s.end(), '\n'));
  return s.back() == '\n' ? n : n + 1;
}

// `s` cut to `max` bytes (at a character boundary); true when it was cut.
bool bounded(std::string& s, std::size_t max = kMaxToolText) {
  if (s.size() <= max) return false;
  std::size_t end = max;
  while (end > 0 && (static_cast<unsigned char>(s[end]) & 0xC0) == 0x80) --end;
  s.resize(end);
  return true;
}

std::optional<ToolContent> read_content(const json& item) {
  auto type = string_member(item, "type");
  if (!type) return std::nullopt;
  ToolContent c;
  if (*type == "diff") {
    c.kind = ToolContent::Kind::diff;
    c.path = string_member(item, "path").value_or("");
    c.text = string_member(item, "newText").value_or("");
    c.old_text = string_member(item, "oldText");  // null or absent: a new file
    c.lines = count_lines(c.text);
    c.truncated = bounded(c.text);
    if (c.old_text) {
      c.old_lines = count_lines(*c.old_text);
      c.truncated = bounded(*c.old_text) || c.truncated;
    }
  } else if (*type == "terminal") {
    c.kind = ToolContent::Kind::terminal;
    c.terminal_id = string_member(item, "terminalId").value_or("");
  } else if (*type == "content") {
    const json* block = member(item, "content");
    if (!block) return std::nullopt;
    c.text = content_text(*block);
    c.lines = count_lines(c.text);
    c.truncated = bounded(c.text);
  } else {
    return std::nullopt;  // a kind this version does not know: not shown
  }
  return c;
}

std::vector<ToolContent> read_contents(const json& items) {
  std::vector<ToolContent> out;
  for (const auto& item : items) {
    if (out.size() >= kMaxToolContents) break;
    if (auto c = read_content(item)) out.push_back(std::move(*c));
  }
  return out;
}

// rawInput.command: the command an execute tool runs, as a string or an argv.
std::optional<std::string> raw_command(const json& input) {
  const json* cmd = member(input, "command");
  if (!cmd) return std::nullopt;
  std::string s;
  if (cmd->is_string()) {
    s = cmd->get<std::string>();
  } else if (cmd->is_array()) {
    for (const auto& w : *cmd) {
      if (!w.is_string()) continue;
      if (!s.empty()) s += ' ';
      s += w.get_ref<const std::string&>();
      if (s.size() > kMaxCommandBytes) break;
    }
  } else {
    return std::nullopt;
  }
  bounded(s, kMaxCommandBytes);
  return s;
}

// tool_call and tool_call_update share their fields; `full` requires a title (tool_call).
bool parse_tool(const json& u, ToolCall& t, bool full) {
  auto id = string_member(u, "toolCallId");
  if (!id) return false;
  t.id = std::move(*id);
  t.title = string_member(u, "title");
  if (full && !t.title) return false;
  t.kind = string_member(u, "kind");
  t.status = string_member(u, "status");
  if (full && !t.status) t.status = "pending";  // the schema's default
  if (const json* locs = member(u, "locations"); locs && locs->is_array()) {
    for (const auto& loc : *locs) {
      if (t.locations.size() >= kMaxLocations) break;
      auto p = string_member(loc, "path");
      if (!p) continue;
      t.locations.push_back(std::move(*p));
      bool ok = true;
      std::int64_t line = member(loc, "line") ? int_member(loc, "line", ok) : 0;
      t.location_lines.push_back(ok && line > 0 ? line : 0);
    }
  }
  if (const json* content = member(u, "content"); content && content->is_array()) t.content = read_contents(*content);
  if (const json* input = member(u, "rawInput")) t.command = raw_command(*input);
  return true;
}

const std::pair<std::string_view, Update::Kind> kKinds[] = {
    {"agent_message_chunk", Update::Kind::agent_message},
    {"agent_thought_chunk", Update::Kind::agent_thought},
    {"user_message_chunk", Update::Kind::user_message},
    {"tool_call", Update::Kind::tool_call},
    {"tool_call_update", Update::Kind::tool_call_update},
    {"plan", Update::Kind::plan},
    {"available_commands_update", Update::Kind::commands},
    {"current_mode_update", Update::Kind::mode},
    {"config_option_update", Update::Kind::config_options},
    {"session_info_update", Update::Kind::session_info},
    {"usage_update", Update::Kind::usage},
};

}  // namespace

void merge_tool_call(ToolCall& known, const ToolCall& update) {
  if (known.id.empty()) known.id = update.id;
  if (update.title) known.title = update.title;
  if (update.kind) known.kind = update.kind;
  if (update.status) known.status = update.status;
  if (!update.locations.empty()) {
    known.locations = update.locations;
    known.location_lines = update.location_lines;
  }
  if (update.content) known.content = update.content;
  if (update.command) known.command = update.command;
}

std::optional<ToolCall> parse_tool_call(const json& obj, bool require_title) {
  ToolCall t;
  if (!parse_tool(obj, t, require_title)) return std::nullopt;
  return t;
}

std::string content_text(const json& block) {
  auto type = string_member(block, "type");
  if (!type) return {};
  if (*type == "text") return string_member(block, "text").value_or("");
  if (*type == "resource_link") return string_member(block, "uri").value_or("");
  if (*type == "resource") {
    if (const json* r = member(block, "resource")) {
      if (auto text = string_member(*r, "text")) return *text;
      return "[resource " + string_member(*r, "uri").value_or("") + "]";
    }
    return "[resource]";
  }
  std::string mime = string_member(block, "mimeType").value_or("");
  return "[" + *type + (mime.empty() ? "" : " " + mime) + "]";
}

namespace {

// The fields of each kind of update (parse_update). False when a field the kind needs is
// missing or malformed.

bool read_chunk(const json& update, Update& u) {
  const json* content = member(update, "content");
  if (!content || !content->is_object()) return false;
  if (auto t = content->find("type"); t != content->end() && *t == "text") {
    auto text = content->find("text");
    if (text == content->end() || !text->is_string()) return false;
    u.text = text->get_ref<const std::string&>();
  } else {
    u.text = content_text(*content);
  }
  if (auto id = string_member(update, "messageId")) u.message_id = std::move(*id);
  return true;
}

bool read_plan(const json& update, Update& u) {
  const json* entries = member(update, "entries");
  if (!entries || !entries->is_array()) return false;
  for (const auto& e : *entries) {
    auto content = string_member(e, "content");
    if (!content) return false;
    u.plan.push_back({std::move(*content), string_member(e, "priority").value_or(""),
                      string_member(e, "status").value_or("")});
  }
  return true;
}

bool read_commands(const json& update, Update& u) {
  const json* cmds = member(update, "availableCommands");
  if (!cmds || !cmds->is_array()) return false;
  for (const auto& c : *cmds) {
    auto name = string_member(c, "name");
    if (!name) return false;
    Command cmd{std::move(*name), string_member(c, "description").value_or(""), {}};
    if (const json* input = member(c, "input")) cmd.hint = string_member(*input, "hint").value_or("");
    u.commands.push_back(std::move(cmd));
  }
  return true;
}

bool read_mode(const json& update, Update& u) {
  // The schema says currentModeId; one docs example says modeId. Accept both.
  auto id = string_member(update, "currentModeId");
  if (!id) id = string_member(update, "modeId");
  if (!id) return false;
  u.mode_id = std::move(*id);
  return true;
}

bool read_usage(const json& update, Update& u) {
  bool ok = true;
  u.usage.used = int_member(update, "used", ok);
  u.usage.size = int_member(update, "size", ok);
  if (!ok) return false;
  if (const json* cost = member(update, "cost")) {
    if (const json* amount = member(*cost, "amount"); amount && amount->is_number())
      u.usage.cost = amount->get<double>();
    u.usage.currency = string_member(*cost, "currency").value_or("");
  }
  return true;
}

bool read_fields(const json& update, Update& u) {
  switch (u.kind) {
    case Update::Kind::agent_message:
    case Update::Kind::agent_thought:
    case Update::Kind::user_message: return read_chunk(update, u);
    case Update::Kind::tool_call:
    case Update::Kind::tool_call_update: return parse_tool(update, u.tool, u.kind == Update::Kind::tool_call);
    case Update::Kind::plan: return read_plan(update, u);
    case Update::Kind::commands: return read_commands(update, u);
    case Update::Kind::mode: return read_mode(update, u);
    case Update::Kind::config_options: {
      const json* opts = member(update, "configOptions");
      return opts && opts->is_array();
    }
    case Update::Kind::session_info: u.title = string_member(update, "title"); return true;
    case Update::Kind::usage: return read_usage(update, u);
    case Update::Kind::unknown: return true;
  }
  return true;
}

}  // namespace

std::optional<Update> parse_update(json update) {
  const json* tag = member(update, "sessionUpdate");
  if (!tag || !tag->is_string()) return std::nullopt;
  Update u;
  u.kind_name = tag->get<std::string>();
  for (const auto& [name, kind] : kKinds)
    if (u.kind_name == name) u.kind = kind;
  if (!read_fields(update, u)) return std::nullopt;
  u.raw = std::move(update);
  return u;
}

namespace {

// read_chunk_line's first try: the chunk as the official SDK and most agents write it, member for
// member, matched byte for byte (a tenth of a scan's time; issue 17). Nothing when the line is
// written any other way: members in another order, a messageId, an escape in the text or the
// session id. What it accepts is one JSON object with exactly these members, so the scan would
// read the same: the text between the fixed parts has no quote or backslash, so it is one whole
// JSON string, and no control byte or bad UTF-8, so it is a valid one.
// `session_id` empty: any session id without escapes.
struct ChunkMatch {
  Update::Kind kind;
  std::string_view kind_name, text;
};

std::optional<ChunkMatch> match_chunk_line(std::string_view line, std::string_view session_id) {
  constexpr std::string_view head = R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
  constexpr std::string_view mid = R"(","update":{"sessionUpdate":")";
  constexpr std::string_view content = R"(","content":{"type":"text","text":")";
  constexpr std::string_view tail = R"("}}}})";
  if (!line.starts_with(head) || !line.ends_with(tail)) return std::nullopt;
  line = line.substr(head.size(), line.size() - head.size() - tail.size());
  if (session_id.empty()) {
    session_id = line.substr(0, line.find('"'));
    if (session_id.empty()) return std::nullopt;
  }
  if (!line.starts_with(session_id) || !rpc::is_plain_string(session_id)) return std::nullopt;
  line.remove_prefix(session_id.size());
  if (!line.starts_with(mid)) return std::nullopt;
  line.remove_prefix(mid.size());
  for (const auto& [name, kind] : kKinds) {
    if (line.starts_with(name) && line.substr(name.size()).starts_with(content)) {
      if (kind != Update::Kind::agent_message && kind != Update::Kind::agent_thought &&
          kind != Update::Kind::user_message)
        return std::nullopt;
      line.remove_prefix(name.size() + content.size());
      if (!rpc::is_plain_string(line)) return std::nullopt;
      return ChunkMatch{kind, name, line};
    }
  }
  return std::nullopt;
}

}  // namespace

bool is_common_chunk_line(std::string_view line) { return match_chunk_line(line, {}).has_value(); }

std::optional<Update> read_chunk_line(std::string_view line, std::string_view session_id) {
  if (session_id.empty()) return std::nullopt;
  if (auto m = match_chunk_line(line, session_id)) {
    Update u;
    u.kind = m->kind;
    u.kind_name = m->kind_name;
    u.text = m->text;
    return u;
  }
  using rpc::Field;
  using T = Field::Type;
  Field f[] = {Field("method"), Field("params"), Field("params.sessionId"), Field("params.update"),
               Field("params.update.sessionUpdate"), Field("params.update.content"),
               Field("params.update.content.type"), Field("params.update.content.text"),
               Field("params.update.messageId")};
  auto& [method, params, sid, update, tag, content, type, text, message_id] = f;
  if (session_id.empty() || !rpc::scan_fields(line, f)) return std::nullopt;
  for (const Field& each : f)
    if (each.seen > 1) return std::nullopt;
  if (method.type != T::string || method.text != "session/update" || params.type != T::object ||
      sid.type != T::string || sid.text != session_id || update.type != T::object || tag.type != T::string ||
      content.type != T::object || type.type != T::string || type.text != "text" || text.type != T::string)
    return std::nullopt;
  Update u;
  for (const auto& [name, kind] : kKinds)
    if (tag.text == name) u.kind = kind;
  if (u.kind != Update::Kind::agent_message && u.kind != Update::Kind::agent_thought &&
      u.kind != Update::Kind::user_message)
    return std::nullopt;
  u.kind_name = std::move(tag.text);
  u.text = std::move(text.text);
  if (message_id.type == T::string) u.message_id = std::move(message_id.text);
  return u;
}

std::string describe_tool_call(const ToolCall& tool) {
  std::string s = tool.title.value_or(tool.id);
  std::string detail;
  if (tool.kind) detail = *tool.kind;
  if (tool.status) detail += (detail.empty() ? "" : ", ") + *tool.status;
  if (!detail.empty()) s += " (" + detail + ")";
  if (!tool.locations.empty()) s += " " + tool.locations.front();
  return s;
}

std::string describe_plan(const std::vector<PlanEntry>& plan) {
  std::string s;
  for (const auto& e : plan) {
    const char* mark = e.status == "completed" ? "[x]" : e.status == "in_progress" ? "[~]" : "[ ]";
    if (!s.empty()) s += "; ";
    s += std::string(mark) + " " + e.content;
  }
  return s;
}

std::string MessageBreaks::separator(const Update& u) {
  using K = Update::Kind;
  if (u.kind == K::tool_call || u.kind == K::tool_call_update || u.kind == K::plan) {
    interrupted_ = any_text_;
    return {};
  }
  if (u.kind != K::agent_message || u.text.empty()) return {};
  bool new_id = !u.message_id.empty() && !last_id_.empty() && u.message_id != last_id_;
  std::string sep;
  if (any_text_ && (interrupted_ || new_id)) sep.assign(static_cast<std::size_t>(std::max(0, 2 - newlines_)), '\n');
  if (!u.message_id.empty()) last_id_ = u.message_id;
  any_text_ = true;
  interrupted_ = false;
  // Newlines the answer ends with once this text is written.
  std::size_t trailing = 0;
  while (trailing < u.text.size() && trailing < 2 && u.text[u.text.size() - 1 - trailing] == '\n') ++trailing;
  newlines_ = trailing == u.text.size() ? std::min(2, newlines_ + static_cast<int>(trailing) + static_cast<int>(sep.size()))
                                        : static_cast<int>(trailing);
  return sep;
}

}  // namespace tether::acp
