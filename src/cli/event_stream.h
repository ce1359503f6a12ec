// `--events` (prompt, and talk without a terminal): one JSON object per line on stdout for each
// thing that happens in a turn, for orchestrators that need more than the answer (issue 14,
// item 5). The contract is versioned: every event carries the same envelope
//
//   {"v":1,"type":"…","sessionId":"…","turn":N,"seq":N,"time":"2026-12-06T20:01:02.345Z", …}
//
// `v` changes only when an existing field changes meaning or goes away; new event types and new
// fields may appear within a version, so a consumer ignores what it does not know. `turn` counts
// the turns of this tether process from 1; `seq` counts events from 1 and never repeats within
// one process; `time` is UTC with milliseconds. The types and their fields are in the man page
// (EVENTS) and in event_stream.cpp, one function each:
//
//   turn_started        prompt (the words), attachments (names)
//   message_chunk       text, messageId?
//   thought_chunk       text, messageId?
//   tool_call           toolCallId, title, kind?, status, content?, locations?, rawInput?
//   tool_call_update    toolCallId and the fields that changed (content with it, as sent)
//   plan                entries [{content, priority, status}]
//   permission_asked    requestId, toolCall {toolCallId, title?, kind?}, options [{optionId, name, kind}]
//   permission_answered requestId, outcome ("selected"|"cancelled"), optionId?, optionKind?,
//                       by ("policy"|"user"|"agent": the agent withdrew the request)
//   usage               used, size, cost?
//   mode                modeId
//   notice              text, kind ("notice"|"output"|"retry"): a retry means the bridge died and
//                       the prompt is sent again: drop this turn's chunks received so far
//   turn_ended          ok, stopReason?, error?, usage?, elapsedMs
//
// EventStream is a plain formatter: each call returns the line (with its newline) for the caller
// to write, so the caller keeps control of stdout (its write errors, EPIPE, buffering).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "acp/session.h"

namespace tether::cli {

inline constexpr int kEventsVersion = 1;

class EventStream {
 public:
  // A new turn: the envelope's `turn` goes up by one.
  std::string turn_started(std::string_view session_id, std::string_view prompt, const nlohmann::json& attachments);
  // One event of the running turn; "" for events that are not part of the stream (replies,
  // other clients' events, terminal events: see turn_ended). A permission request answered by
  // policy yields both permission_asked and permission_answered.
  std::string event(std::string_view session_id, const acp::TurnEvent& ev);
  // A request that permission_asked showed was answered: by "policy" (--permission), by "user"
  // (talk), or withdrawn by the "agent" (outcome cancelled).
  std::string permission_answered(std::string_view session_id, std::uint64_t request_id,
                                  const std::optional<acp::PermissionOption>& chosen, std::string_view by);
  // The turn's end: `terminal` is its completed or failed event; `usage` the turn's usage (see
  // turn_usage), `elapsed_ms` its wall time.
  std::string turn_ended(std::string_view session_id, const acp::TurnEvent& terminal, const nlohmann::ordered_json& usage,
                         long long elapsed_ms);

 private:
  nlohmann::ordered_json envelope(std::string_view type, std::string_view session_id);
  static std::string line(const nlohmann::ordered_json& j);
  std::string update(std::string_view session_id, const acp::Update& u);

  std::uint64_t turn_ = 0;
  std::uint64_t seq_ = 0;
};

// A turn's usage for --json, batch records and turn_ended (null when the agent sent none): the
// last usage_update's context window (used, size, cost) and the token counts the session/prompt
// result carried (inputTokens, outputTokens, totalTokens, thoughtTokens, cachedReadTokens,
// cachedWriteTokens), merged into one object.
nlohmann::ordered_json turn_usage(const std::optional<acp::Usage>& context, const nlohmann::json& prompt_result);

// "2026-12-06T20:01:02.345Z" for a system_clock time.
std::string utc_timestamp(std::chrono::system_clock::time_point t);

}  // namespace tether::cli
