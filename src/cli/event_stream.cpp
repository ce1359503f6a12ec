#include "cli/event_stream.h"

#include <time.h>

#include <chrono>
#include <cstdio>

namespace tether::cli {
namespace {

using acp::TurnEvent;
using acp::Update;
using nlohmann::json;
using OJson = nlohmann::ordered_json;

// Copies `key` from the agent's update object when it is there (null included: a
// tool_call_update's null means "cleared", which a consumer may need to see).
void copy(OJson& out, const json& from, const char* key) {
  if (!from.is_object()) return;
  auto it = from.find(key);
  if (it != from.end()) out[key] = OJson(*it);
}

}  // namespace

std::string utc_timestamp(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the format could print, so gcc sees no truncation
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

OJson turn_usage(const std::optional<acp::Usage>& context, const json& prompt_result) {
  OJson u;  // null until a member is set: most turns have no usage, and then nothing is allocated
  if (context) {
    u["used"] = context->used;
    u["size"] = context->size;
    if (context->cost) u["cost"] = {{"amount", *context->cost}, {"currency", context->currency}};
  }
  // PromptResponse.usage (ACP's session-usage RFD): token counts of this turn. Only numbers are
  // taken, under their own names, so an agent cannot put anything else into our output.
  if (prompt_result.is_object()) {
    auto it = prompt_result.find("usage");
    if (it != prompt_result.end() && it->is_object()) {
      for (const char* k : {"inputTokens", "outputTokens", "totalTokens", "thoughtTokens", "cachedReadTokens",
                            "cachedWriteTokens"}) {
        auto v = it->find(k);
        if (v != it->end() && v->is_number()) u[k] = *v;
      }
    }
  }
  return u;
}

OJson EventStream::envelope(std::string_view type, std::string_view session_id) {
  OJson j;
  j["v"] = kEventsVersion;
  j["type"] = type;
  j["sessionId"] = session_id;
  j["turn"] = turn_;
  j["seq"] = ++seq_;
  j["time"] = utc_timestamp(std::chrono::system_clock::now());
  return j;
}

std::string EventStream::line(const OJson& j) {
  // Agent text that is not valid UTF-8 is replaced, never a throw: the stream goes on.
  return j.dump(-1, ' ', false, OJson::error_handler_t::replace) + "\n";
}

std::string EventStream::turn_started(std::string_view session_id, std::string_view prompt, const json& attachments) {
  ++turn_;
  OJson j = envelope("turn_started", session_id);
  j["prompt"] = prompt;
  j["attachments"] = attachments.is_array() ? OJson(attachments) : OJson::array();
  return line(j);
}

std::string EventStream::update(std::string_view sid, const Update& u) {
  switch (u.kind) {
    case Update::Kind::agent_message:
    case Update::Kind::agent_thought: {
      OJson j = envelope(u.kind == Update::Kind::agent_message ? "message_chunk" : "thought_chunk", sid);
      j["text"] = u.text;
      if (!u.message_id.empty()) j["messageId"] = u.message_id;
      return line(j);
    }
    case Update::Kind::tool_call:
    case Update::Kind::tool_call_update: {
      OJson j = envelope(u.kind == Update::Kind::tool_call ? "tool_call" : "tool_call_update", sid);
      j["toolCallId"] = u.tool.id;
      for (const char* k : {"title", "kind", "status", "content", "locations", "rawInput", "rawOutput"})
        copy(j, u.raw, k);
      if (u.kind == Update::Kind::tool_call && !j.contains("status")) j["status"] = "pending";  // the spec's default
      return line(j);
    }
    case Update::Kind::plan: {
      OJson j = envelope("plan", sid);
      OJson entries = OJson::array();
      for (const auto& e : u.plan)
        entries.push_back({{"content", e.content}, {"priority", e.priority}, {"status", e.status}});
      j["entries"] = std::move(entries);
      return line(j);
    }
    case Update::Kind::usage: {
      OJson j = envelope("usage", sid);
      j["used"] = u.usage.used;
      j["size"] = u.usage.size;
      if (u.usage.cost) j["cost"] = {{"amount", *u.usage.cost}, {"currency", u.usage.currency}};
      return line(j);
    }
    case Update::Kind::mode: {
      OJson j = envelope("mode", sid);
      j["modeId"] = u.mode_id;
      return line(j);
    }
    default: return {};  // history replays, commands, config options, titles: not part of a turn
  }
}

std::string EventStream::event(std::string_view sid, const TurnEvent& ev) {
  if (ev.other_client) return {};
  switch (ev.kind) {
    case TurnEvent::Kind::update: return update(sid, ev.update);
    case TurnEvent::Kind::permission: {
      const auto& p = ev.permission;
      OJson j = envelope("permission_asked", sid);
      j["requestId"] = p.token;
      OJson tool = {{"toolCallId", p.tool.id}};
      if (p.tool.title) tool["title"] = *p.tool.title;
      if (p.tool.kind) tool["kind"] = *p.tool.kind;
      j["toolCall"] = std::move(tool);
      OJson options = OJson::array();
      for (const auto& o : p.options) options.push_back({{"optionId", o.id}, {"name", o.name}, {"kind", o.kind}});
      j["options"] = std::move(options);
      std::string out = line(j);
      if (p.answered) out += permission_answered(sid, p.token, p.chosen, "policy");
      return out;
    }
    case TurnEvent::Kind::permission_withdrawn: return permission_answered(sid, ev.permission.token, std::nullopt, "agent");
    case TurnEvent::Kind::notice:
    case TurnEvent::Kind::output:
    case TurnEvent::Kind::retry: {
      OJson j = envelope("notice", sid);
      j["text"] = ev.text;
      j["kind"] = ev.kind == TurnEvent::Kind::notice ? "notice" : ev.kind == TurnEvent::Kind::output ? "output" : "retry";
      return line(j);
    }
    default: return {};
  }
}

std::string EventStream::permission_answered(std::string_view sid, std::uint64_t request_id,
                                             const std::optional<acp::PermissionOption>& chosen, std::string_view by) {
  OJson j = envelope("permission_answered", sid);
  j["requestId"] = request_id;
  j["outcome"] = chosen ? "selected" : "cancelled";
  if (chosen) {
    j["optionId"] = chosen->id;
    j["optionKind"] = chosen->kind;
  }
  j["by"] = by;
  return line(j);
}

std::string EventStream::turn_ended(std::string_view sid, const TurnEvent& t, const OJson& usage, long long elapsed_ms) {
  OJson j = envelope("turn_ended", sid);
  const bool completed = t.kind == TurnEvent::Kind::completed;
  // As in --json: ok when the agent answered; stopReason says how (exit 1 for all but end_turn).
  j["ok"] = completed && t.cancelled == acp::CancelCause::none;
  if (completed) j["stopReason"] = t.stop_reason;
  else j["error"] = OJson(t.error);
  if (!usage.is_null()) j["usage"] = usage;
  j["elapsedMs"] = elapsed_ms;
  return line(j);
}

}  // namespace tether::cli
