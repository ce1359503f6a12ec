#include "cli/batch_record.h"

#include "acp/outcome.h"
#include "cli/event_stream.h"
#include "rpc/json_write.h"

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

namespace {

std::int64_t elapsed_ms(const Tries& tries, base::TimePoint now) {
  auto elapsed = tries.started ? now - *tries.started : base::Duration::zero();
  return std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
}

}  // namespace

ojson with_meta(const Item& item, const Tries& tries, ojson r, base::TimePoint now) {
  r["attempts"] = tries.attempts;
  r["elapsedMs"] = elapsed_ms(tries, now);
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

std::optional<std::string> answer_line(const Item& item, const Tries& tries, const acp::TurnEvent& ev, const Attempt& a,
                                       std::uint64_t dropped_lines, base::TimePoint now) {
  if (ev.stop_reason != "end_turn" || dropped_lines > 0) return std::nullopt;
  // The members in answer()'s order: id, index, ok, text, stopReason, toolCalls, usage?,
  // attempts, elapsedMs, meta?.
  std::string out;
  out.reserve(160 + a.text.size());
  out += "{\"id\":";
  out += item.id_text;  // the id as dump_record() writes it
  out += ",\"index\":";
  out += std::to_string(item.index);
  out += ",\"ok\":true,\"text\":";
  rpc::append_json_string(out, a.text);
  out += ",\"stopReason\":";
  rpc::append_json_string(out, ev.stop_reason);
  out += ",\"toolCalls\":";
  if (a.tools.entries().empty()) out += "[]";
  else rpc::append_json(out, a.tools.to_json());
  if (ojson usage = turn_usage(a.usage, ev.result); !usage.is_null()) {
    out += ",\"usage\":";
    rpc::append_json(out, usage);
  }
  out += ",\"attempts\":";
  out += std::to_string(tries.attempts);
  out += ",\"elapsedMs\":";
  out += std::to_string(elapsed_ms(tries, now));
  if (!item.meta.is_null()) {
    out += ",\"meta\":";
    rpc::append_json(out, item.meta);
  }
  out += '}';
  return out;
}

}  // namespace tether::cli::batch
