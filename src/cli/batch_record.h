// What `tether batch` writes for an item (DESIGN §7; man page, tether batch): the record's fields
// in their documented order, from what one attempt of the item gathered from its turn. Plain values
// and pure functions (the time is an argument), so batch.cpp keeps only the running of items.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "acp/session.h"
#include "acp/update.h"
#include "base/clock.h"
#include "cli/batch_input.h"
#include "cli/tool_calls.h"

namespace tether::cli::batch {

// What one attempt of an item gathered from its turn's updates; cleared when a retry starts the
// answer over.
struct Attempt {
  std::string text;                 // the answer, a blank line between the agent's messages
  acp::MessageBreaks breaks;
  ToolCalls tools;                  // toolCalls
  std::optional<acp::Usage> usage;  // the last usage_update

  void take(const acp::Update& u);
  void clear() { *this = Attempt{}; }
};

// How far an item got: prompts sent, and when the first was.
struct Tries {
  int attempts = 0;
  std::optional<base::TimePoint> started;
};

// {"id", "index", "ok"}: every record starts so.
ojson record(const Item& item, bool ok);
// Adds attempts and elapsedMs (to `now`), then error (when set) and meta last.
ojson with_meta(const Item& item, const Tries& tries, ojson r, base::TimePoint now);
// A failed item's whole record.
ojson failure(const Item& item, const Tries& tries, const nlohmann::json& error, base::TimePoint now);
// The record of an answer the agent finished (`completed`): text, stopReason, toolCalls, usage;
// ok only for end_turn, and an error when `dropped_lines` lines over --max-line were lost.
ojson answer(const Item& item, const Tries& tries, const acp::TurnEvent& completed, const Attempt& attempt,
             std::uint64_t dropped_lines, base::TimePoint now);
// dump_record(answer(...), item.id_raw), byte for byte, written straight from its parts (a
// turn's record was a tenth of a warm turn's time, issue 17). Only for an answer without an error
// (end_turn, nothing dropped); nothing otherwise, and the caller builds the record.
std::optional<std::string> answer_line(const Item& item, const Tries& tries, const acp::TurnEvent& completed,
                                       const Attempt& attempt, std::uint64_t dropped_lines, base::TimePoint now);

}  // namespace tether::cli::batch
