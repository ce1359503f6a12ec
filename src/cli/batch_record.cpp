#include "cli/batch_record.h"

#include "acp/outcome.h"
#include "cli/event_stream.h"

namespace tether::cli::batch {

void Attempt::take(const acp::Update& u) {
  if (u.kind == acp::Update::Kind::agent_message) {
    text += breaks.separator(u);
    text += u.text;
    return;
  }
  breaks.separator(u);  // a tool call or plan between two messages
  tools.update(u);
  if (u.kind == acp::Update::Kind::usage) usage = u.usage;
}

ojson record(const Item& item, bool ok) {
  ojson r = ojson::object();
  // The members an answer has (with_meta adds two): one allocation, and no copies of the keys,
  // which ordered_json's vector copies on every growth.
  r.get_ref<ojson::object_t&>().reserve(12);
  r["id"] = item.id;
  r["index"] = item.index;
  r["ok"] = ok;
  return r;
}

ojson with_meta(const Item& item, const Tries& tries, ojson r, base::TimePoint now) {
  r["attempts"] = tries.attempts;
  auto elapsed = tries.started ? now - *tries.started : base::Duration::zero();
  r["elapsedMs"] = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
  // `error` after the timings, `meta` last, whatever order the fields were set in.
  if (r.contains("error")) {
    ojson e = r["error"];
    r.erase("error");
    r["error"] = std::move(e);
  }
  if (!item.meta.is_null()) r["meta"] = item.meta;
  return r;
}

ojson failure(const Item& item, const Tries& tries, const nlohmann::json& error, base::TimePoint now) {
  ojson r = record(item, false);
  r["error"] = ojson(error);
  return with_meta(item, tries, std::move(r), now);
}

ojson answer(const Item& item, const Tries& tries, const acp::TurnEvent& ev, const Attempt& a,
             std::uint64_t dropped_lines, base::TimePoint now) {
  ojson r = record(item, ev.stop_reason == "end_turn");
  r["text"] = a.text;
  r["stopReason"] = ev.stop_reason;
  r["toolCalls"] = a.tools.to_json();
  if (ojson usage = turn_usage(a.usage, ev.result); !usage.is_null()) r["usage"] = std::move(usage);
  if (ev.stop_reason != "end_turn")
    r["error"] = ojson(acp::error_object("agent_error", "the agent ended the turn with stopReason " + ev.stop_reason));
  // A line over --max-line was dropped during the turn: the answer may lack a chunk.
  if (dropped_lines > 0 && !r.contains("error")) {
    r["ok"] = false;
    r["error"] = ojson(acp::error_object("agent_error", std::to_string(dropped_lines) +
                                                            " line(s) from the agent were longer than --max-line and "
                                                            "were dropped: the answer may be incomplete"));
  }
  return with_meta(item, tries, std::move(r), now);
}

}  // namespace tether::cli::batch
