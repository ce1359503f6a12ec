// What a prompt carries and what comes back besides the answer (issue 14 items 1, 5, 6), through the
// built binary and the demo agent: context piped under the words, -a attachments by what the agent
// accepts, the --events stream against its documented shapes, usage in --json, and the same in
// batch records and talk scripts.
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "prompt_support.h"

using nlohmann::json;
using tether::test::run;
using tether::test::RunOptions;
using tether::test::tether_bin;
using namespace tether::test::prompt;

namespace {

// A 1x1 PNG's first bytes are enough: tether sorts by the signature, the demo counts bytes.
std::string write_png(const Scratch& s) {
  std::string path = s.path("pixel.png");
  std::ofstream(path, std::ios::binary) << std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
  return path;
}

std::vector<json> json_lines(const std::string& out) {
  std::vector<json> v;
  for (const auto& l : lines_of(out)) {
    json j = json::parse(l, nullptr, false);
    REQUIRE_MESSAGE(!j.is_discarded(), "not a JSON line: " << l);
    v.push_back(std::move(j));
  }
  return v;
}

// The documented shape of each event type (man page, EVENTS): the envelope, then what each type
// must carry. Returns "" when `e` fits, else what is wrong.
std::string shape_error(const json& e) {
  if (!e.is_object()) return "not an object";
  if (e.value("v", 0) != 1) return "v is not 1";
  for (const char* k : {"type", "sessionId", "time"})
    if (!e.contains(k) || !e[k].is_string()) return std::string(k) + " is not a string";
  for (const char* k : {"turn", "seq"})
    if (!e.contains(k) || !e[k].is_number_unsigned()) return std::string(k) + " is not a count";
  const std::string time = e["time"];
  if (time.size() != 24 || time[10] != 'T' || time.back() != 'Z') return "time is not UTC with milliseconds: " + time;
  const std::string type = e["type"];
  auto has = [&](const char* k, json::value_t t) { return e.contains(k) && e[k].type() == t; };
  using V = json::value_t;
  if (type == "turn_started") return has("prompt", V::string) && has("attachments", V::array) ? "" : "turn_started fields";
  if (type == "message_chunk" || type == "thought_chunk") return has("text", V::string) ? "" : "chunk text";
  if (type == "tool_call")
    return has("toolCallId", V::string) && has("title", V::string) && has("status", V::string) ? "" : "tool_call fields";
  if (type == "tool_call_update") return has("toolCallId", V::string) ? "" : "tool_call_update id";
  if (type == "plan") return has("entries", V::array) ? "" : "plan entries";
  if (type == "permission_asked")
    return e.contains("requestId") && has("toolCall", V::object) && has("options", V::array) ? "" : "permission_asked";
  if (type == "permission_answered")
    return e.contains("requestId") && has("outcome", V::string) && has("by", V::string) ? "" : "permission_answered";
  if (type == "usage") return e.contains("used") && e.contains("size") ? "" : "usage fields";
  if (type == "mode") return has("modeId", V::string) ? "" : "mode id";
  if (type == "notice") return has("text", V::string) && has("kind", V::string) ? "" : "notice fields";
  if (type == "turn_ended") return has("ok", V::boolean) && e.contains("elapsedMs") ? "" : "turn_ended fields";
  return "unknown type " + type;
}

}  // namespace

TEST_CASE("piped context goes before the words; --no-stdin and an empty stdin add nothing") {
  Scratch s;
  RunOptions o = opts(s);
  o.stdin_text = "CONTEXT LINE\n";
  auto r = run(with_demo({"-q", "instruction"}), o);
  CHECK(r.exit_code == 0);
  // The demo echoes its blocks in order, joined by a space: the context, then the words.
  CHECK(r.out.rfind("Echo: CONTEXT LINE instruction\n", 0) == 0);

  auto none = run(with_demo({"-q", "--no-stdin", "instruction"}), o);
  CHECK(none.out == demo_answer("instruction", 1, 11) + "\n");
  auto empty = run(with_demo({"-q", "instruction"}), opts(s));
  CHECK(empty.out == demo_answer("instruction", 1, 11) + "\n");

  // On the wire: an embedded text resource (the demo accepts embeddedContext), then a text block.
  auto traced = run(with_demo({"-q", "--trace", s.path("trace"), "instruction"}), o);
  CHECK(traced.exit_code == 0);
  std::string trace = slurp(s.path("trace"));
  auto at = trace.find("\"method\":\"session/prompt\"");
  REQUIRE(at != std::string::npos);
  auto resource = trace.find("\"type\":\"resource\"", at);
  auto text = trace.find("\"text\":\"instruction\"", at);
  CHECK(resource != std::string::npos);
  CHECK(text != std::string::npos);
  CHECK(resource < text);
}

TEST_CASE("-a image: an image block for an agent that takes images, exit 64 for one that does not") {
  Scratch s;
  std::string png = write_png(s);
  auto r = run(with_demo({"-q", "--trace", s.path("trace"), "-a", png, "what is this"}), opts(s));
  CHECK(r.exit_code == 0);
  CHECK(r.out.rfind("Echo: [image image/png, 16 bytes] what is this", 0) == 0);
  std::string trace = slurp(s.path("trace"));
  CHECK(trace.find("\"type\":\"image\"") != std::string::npos);
  CHECK(trace.find("\"mimeType\":\"image/png\"") != std::string::npos);

  auto refused = run({tether_bin(), "prompt", "--json", "--trace", s.path("trace2"), "-a", png, "what is this", "--",
                      tether_bin(), "demo-agent", "--no-images"},
                     opts(s));
  CHECK(refused.exit_code == 64);
  CHECK(refused.err.find("does not accept images") != std::string::npos);
  json j = json::parse(refused.out, nullptr, false);
  CHECK(j.value("ok", true) == false);
  CHECK(j["error"].value("code", "") == "bad_input");
  // Refused before anything was sent.
  CHECK(slurp(s.path("trace2")).find("session/prompt") == std::string::npos);

  auto missing = run(with_demo({"-a", s.path("nope.png"), "hi"}), opts(s));
  CHECK(missing.exit_code == 64);
  CHECK(missing.err.find("cannot read attachment") != std::string::npos);
}

TEST_CASE("--events: every line has the documented envelope and shape; seq counts up; usage in --json") {
  Scratch s;
  // "edit" makes the demo ask permission; --repeat 2 makes two turns in one stream.
  auto r = run(with_demo({"--events", "--permission", "allow", "--repeat", "2", "please", "edit", "this"}), opts(s));
  CHECK(r.exit_code == 0);
  auto events = json_lines(r.out);
  REQUIRE(events.size() > 10);
  std::set<std::string> types;
  std::uint64_t seq = 0;
  for (const auto& e : events) {
    INFO(e.dump());
    CHECK(shape_error(e) == "");
    CHECK(e["seq"].get<std::uint64_t>() == seq + 1);
    seq = e["seq"].get<std::uint64_t>();
    types.insert(e.value("type", ""));
  }
  for (const char* t : {"turn_started", "message_chunk", "thought_chunk", "tool_call", "tool_call_update", "plan",
                        "permission_asked", "permission_answered", "usage", "turn_ended"})
    CHECK_MESSAGE(types.count(t) == 1, "no " << t << " event");
  CHECK(events.front()["type"] == "turn_started");
  CHECK(events.back()["type"] == "turn_ended");
  CHECK(events.back()["turn"] == 2);
  CHECK(events.back()["stopReason"] == "end_turn");
  CHECK(events.back()["usage"].value("size", 0) == 200000);
  std::string answer;
  for (const auto& e : events)
    if (e["type"] == "message_chunk" && e["turn"] == 1) answer += e["text"].get<std::string>();
  CHECK(answer.rfind("Echo: please edit this\n", 0) == 0);
  for (const auto& e : events)
    if (e["type"] == "permission_answered") CHECK(e["by"] == "policy");

  auto j = run(with_demo({"--json", "hi"}), opts(s));
  json out = json::parse(j.out, nullptr, false);
  CHECK(out["usage"].value("used", 0) > 0);
  CHECK(out["usage"].value("size", 0) == 200000);
  auto both = run(with_demo({"--json", "--events", "hi"}), opts(s));
  CHECK(both.exit_code == 64);
}

TEST_CASE("batch: items carry attachments; records carry toolCalls and usage") {
  Scratch s;
  std::string png = write_png(s);
  RunOptions o = opts(s);
  o.stdin_text = json{{"id", "img"}, {"prompt", "look"}, {"attachments", {png}}}.dump() + "\n" +
                 json{{"id", "gone"}, {"prompt", "x"}, {"attachments", {s.path("nope")}}}.dump() + "\nplain\n";
  auto r = run({tether_bin(), "batch", "-q"}, o);
  CHECK(r.exit_code == 1);  // one item failed
  auto records = json_lines(r.out);
  REQUIRE(records.size() == 3);
  CHECK(records[0].value("ok", false));
  CHECK(records[0].value("text", "").rfind("Echo: [image image/png, 16 bytes] look", 0) == 0);
  CHECK(records[0]["toolCalls"].size() == 1);
  CHECK(records[0]["usage"].value("size", 0) == 200000);
  CHECK(!records[1].value("ok", true));
  CHECK(records[1]["error"].value("code", "") == "bad_input");
  CHECK(records[2].value("ok", false));
}

TEST_CASE("talk script: /attach goes with the next prompt only; --events streams its turns") {
  Scratch s;
  std::ofstream(s.path("notes.md")) << "NOTES";
  RunOptions o = opts(s);
  o.stdin_text = "/attach " + s.path("notes.md") + "\nfirst\nsecond\n";
  auto r = run({tether_bin(), "talk", "-q"}, o);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("Echo: NOTES first") != std::string::npos);
  CHECK(r.out.find("Echo: second") != std::string::npos);

  o.stdin_text = "one\ntwo\n";
  auto ev = run({tether_bin(), "talk", "--events"}, o);
  CHECK(ev.exit_code == 0);
  auto events = json_lines(ev.out);  // nothing but events on stdout
  int ended = 0;
  for (const auto& e : events) {
    CHECK(shape_error(e) == "");
    ended += e["type"] == "turn_ended";
  }
  CHECK(ended == 2);
}
