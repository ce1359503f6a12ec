// session/update parsing: every kind the schema names, unknown kinds, malformed updates.
#include <doctest/doctest.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "acp/update.h"
#include "rpc/message.h"
#include "support/mutate.h"

using tether::acp::json;
using tether::acp::parse_update;
using tether::acp::Update;

namespace {
Update must_parse(const char* text) {
  auto u = parse_update(json::parse(text));
  REQUIRE_MESSAGE(u.has_value(), text);
  return *u;
}
}  // namespace

TEST_CASE("message, thought and user chunks carry their text") {
  auto a = must_parse(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Hi "},"messageId":"m1"})");
  CHECK(a.kind == Update::Kind::agent_message);
  CHECK(a.text == "Hi ");
  CHECK(a.message_id == "m1");
  CHECK(a.raw["content"]["text"] == "Hi ");  // the raw update stays whole
  auto t = must_parse(R"({"sessionUpdate":"agent_thought_chunk","content":{"type":"text","text":"hmm"}})");
  CHECK(t.kind == Update::Kind::agent_thought);
  CHECK(t.text == "hmm");
  auto u = must_parse(R"({"sessionUpdate":"user_message_chunk","content":{"type":"text","text":"q"}})");
  CHECK(u.kind == Update::Kind::user_message);
  CHECK(u.text == "q");
}

TEST_CASE("non-text content blocks render as text") {
  CHECK(must_parse(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"resource_link","uri":"file:///a.txt","name":"a"}})").text ==
        "file:///a.txt");
  CHECK(must_parse(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"image","data":"AAAA","mimeType":"image/png"}})").text ==
        "[image image/png]");
  CHECK(must_parse(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"resource","resource":{"uri":"file:///b","text":"inside"}}})").text ==
        "inside");
}

TEST_CASE("tool calls and their updates") {
  auto c = must_parse(R"({"sessionUpdate":"tool_call","toolCallId":"c1","title":"Read file","kind":"read",
                         "locations":[{"path":"/w/a.txt","line":3}],"_meta":{"x":1}})");
  CHECK(c.kind == Update::Kind::tool_call);
  CHECK(c.tool.id == "c1");
  CHECK(c.tool.title == "Read file");
  CHECK(c.tool.kind == "read");
  CHECK(c.tool.status == "pending");  // the schema's default
  REQUIRE(c.tool.locations.size() == 1);
  CHECK(c.tool.locations[0] == "/w/a.txt");

  auto u = must_parse(R"({"sessionUpdate":"tool_call_update","toolCallId":"c1","status":"completed","title":null})");
  CHECK(u.kind == Update::Kind::tool_call_update);
  CHECK(u.tool.status == "completed");
  CHECK_FALSE(u.tool.title.has_value());  // only the changed fields; null means unchanged here
  CHECK_FALSE(u.tool.kind.has_value());

  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"tool_call","title":"no id"})")));
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"tool_call","toolCallId":"c2"})")));  // title required
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"tool_call_update","status":"failed"})")));
}

TEST_CASE("plans are complete lists") {
  auto p = must_parse(R"({"sessionUpdate":"plan","entries":[
      {"content":"Read","priority":"high","status":"completed"},
      {"content":"Write","priority":"low","status":"in_progress"}]})");
  CHECK(p.kind == Update::Kind::plan);
  REQUIRE(p.plan.size() == 2);
  CHECK(p.plan[1].content == "Write");
  CHECK(p.plan[1].priority == "low");
  CHECK(p.plan[1].status == "in_progress");
  CHECK(tether::acp::describe_plan(p.plan) == "[x] Read; [~] Write");
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"plan"})")));
}

TEST_CASE("session state kinds: commands, mode, config options, title, usage") {
  auto c = must_parse(R"({"sessionUpdate":"available_commands_update","availableCommands":[
      {"name":"web","description":"Search","input":{"hint":"query"}},{"name":"plan","description":"Plan"}]})");
  CHECK(c.kind == Update::Kind::commands);
  REQUIRE(c.commands.size() == 2);
  CHECK(c.commands[0].hint == "query");
  CHECK(c.commands[1].hint.empty());

  auto m = must_parse(R"({"sessionUpdate":"current_mode_update","currentModeId":"code"})");
  CHECK(m.kind == Update::Kind::mode);
  CHECK(m.mode_id == "code");
  // The docs example's spelling is accepted too.
  CHECK(must_parse(R"({"sessionUpdate":"current_mode_update","modeId":"ask"})").mode_id == "ask");
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"current_mode_update"})")));

  CHECK(must_parse(R"({"sessionUpdate":"config_option_update","configOptions":[]})").kind == Update::Kind::config_options);

  auto i = must_parse(R"({"sessionUpdate":"session_info_update","title":"Fix the bug","updatedAt":"2025-01-01T00:00:00Z"})");
  CHECK(i.kind == Update::Kind::session_info);
  CHECK(i.title == "Fix the bug");

  auto u = must_parse(R"({"sessionUpdate":"usage_update","used":1200,"size":200000,"cost":{"amount":0.25,"currency":"USD"}})");
  CHECK(u.kind == Update::Kind::usage);
  CHECK(u.usage.used == 1200);
  CHECK(u.usage.size == 200000);
  CHECK(u.usage.cost == doctest::Approx(0.25));
  CHECK(u.usage.currency == "USD");
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"usage_update","used":1})")));
  // Counts that do not fit in 64 bits are malformed, never converted (found by fuzzing).
  for (const char* used : {"1e300", "-1e300", "53333333333333333330", "18446744073709551615"})
    CHECK_FALSE(parse_update(json::parse(std::string(R"({"sessionUpdate":"usage_update","size":1,"used":)") + used + "}")));
  CHECK(must_parse(R"({"sessionUpdate":"usage_update","used":1.5e3,"size":9223372036854775807})").usage.size == INT64_MAX);
}

TEST_CASE("unknown kinds parse as unknown; malformed updates do not parse") {
  auto u = must_parse(R"({"sessionUpdate":"compaction_notice","whatever":[1,2]})");
  CHECK(u.kind == Update::Kind::unknown);
  CHECK(u.kind_name == "compaction_notice");
  CHECK_FALSE(parse_update(json::parse(R"({"content":{"type":"text","text":"no kind"}})")));
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":7})")));
  CHECK_FALSE(parse_update(json::parse(R"("not an object")")));
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"agent_message_chunk"})")));
  CHECK_FALSE(parse_update(json::parse(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":5}})")));
}

TEST_CASE("describe_tool_call is one short line") {
  tether::acp::ToolCall t;
  t.id = "c9";
  CHECK(tether::acp::describe_tool_call(t) == "c9");
  t.title = "Edit";
  t.kind = "edit";
  t.status = "failed";
  t.locations = {"/w/x.cpp"};
  CHECK(tether::acp::describe_tool_call(t) == "Edit (edit, failed) /w/x.cpp");
}

// read_chunk_line (the streamed answer's hot path) gives what the general path gives, or declines.
namespace {

// The general path: the whole line parsed, its params' update through parse_update, for `sid`.
std::optional<Update> general(const std::string& line, const std::string& sid) {
  json msg = json::parse(line, nullptr, false);
  if (msg.is_discarded() || !msg.is_object() || msg.value("method", json()) != "session/update") return std::nullopt;
  const json& p = msg["params"];
  if (!p.is_object() || p.value("sessionId", json()) != sid || !p.contains("update")) return std::nullopt;
  return parse_update(p["update"]);
}

}  // namespace

TEST_CASE("read_chunk_line reads a text chunk like parse_update, and leaves anything else to it") {
  using tether::acp::read_chunk_line;
  const std::string line =
      R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","messageId":"m","content":{"type":"text","text":"caf\u00e9 \"q\""}}}})";
  auto fast = read_chunk_line(line, "s1");
  REQUIRE(fast.has_value());
  auto slow = general(line, "s1");
  REQUIRE(slow.has_value());
  CHECK(fast->kind == slow->kind);
  CHECK(fast->kind_name == slow->kind_name);
  CHECK(fast->text == "caf\xc3\xa9 \"q\"");
  CHECK(fast->text == slow->text);
  CHECK(fast->message_id == slow->message_id);
  CHECK(fast->raw.is_null());
  CHECK_FALSE(read_chunk_line(line, "s2").has_value());  // another session
  CHECK_FALSE(read_chunk_line(line, "").has_value());

  // Written the common way (no messageId): the same as the general path.
  const std::string common =
      R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"plain text"}}}})";
  fast = read_chunk_line(common, "s1");
  REQUIRE(fast.has_value());
  CHECK(fast->text == "plain text");
  CHECK(fast->kind_name == "agent_message_chunk");
  CHECK(fast->message_id.empty());
  CHECK_FALSE(read_chunk_line(common, "s").has_value());  // a prefix of the session id is another one
  CHECK_FALSE(read_chunk_line(common, "s12").has_value());

  for (const char* odd : {
           // the common shape around a text that closes the string and repeats the key
           R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"a","text":"INJECTED"}}}})",
           // the common shape, and more after it
           R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"a"}}}},"x":{"y":{"z":{"text":"b"}}}})",
           // the common shape with a control byte in the text (not JSON)
           "{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"s1\",\"update\":{\"sessionUpdate\":"
           "\"agent_message_chunk\",\"content\":{\"type\":\"text\",\"text\":\"a\x01\"}}}}",
           // the common shape with bytes that are not UTF-8
           "{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"s1\",\"update\":{\"sessionUpdate\":"
           "\"agent_message_chunk\",\"content\":{\"type\":\"text\",\"text\":\"a\xff\"}}}}",
           // the common shape, a tool call's kind
           R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"tool_call","content":{"type":"text","text":"a"}}}})",
           // a repeated key: the general path's last-wins is its business
           R"({"method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"a"},"content":{"type":"text","text":"b"}}}})",
           // a key with a dot is not a path
           R"({"method":"session/update","params":{"sessionId":"s1","update.sessionUpdate":"agent_message_chunk","update":{"content":{"type":"text","text":"a"}}}})",
           // content that is not text
           R"({"method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"image","data":"","mimeType":"image/png"}}}})",
           // not a chunk
           R"({"method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"plan","entries":[]}}})",
           // not session/update, not an object, not JSON
           R"({"method":"session/other","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"a"}}}})",
           R"([{"method":"session/update"}])", R"({"method":)",
           // the whole message under a top-level "" key: not a message at all
           R"({"":{"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"INJECTED"}}}}})",
       }) {
    CHECK_FALSE_MESSAGE(read_chunk_line(odd, "s1").has_value(), odd);
  }
  // The non-text chunk still reads, the general way.
  CHECK(general(R"({"method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"image","data":"","mimeType":"image/png"}}}})", "s1")->text == "[image image/png]");
}

TEST_CASE("read_chunk_line agrees with the general path on mutated lines") {
  // The second seed is written the common way, which read_chunk_line matches byte for byte.
  const std::string seeds[] = {
      R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s1","update":{"sessionUpdate":"agent_thought_chunk","messageId":"m","content":{"type":"text","text":"a\nb"}}}})",
      "{\"jsonrpc\":\"2.0\",\"method\":\"session/update\",\"params\":{\"sessionId\":\"s1\",\"update\":{\"sessionUpdate\":"
      "\"agent_message_chunk\",\"content\":{\"type\":\"text\",\"text\":\"caf\xc3\xa9 au lait\"}}}}"};
  tether::test::Mutator mutator({std::begin(seeds), std::end(seeds)},
                               "{}[]\",:.\\-0123456789tlnsu aex\x01\xc3\xa9\xff", 88172645463325252ull);
  int taken = 0, common = 0;
  for (int round = 0; round < 40000; ++round) {
    std::string s = mutator.next_line(1);
    if (tether::acp::is_common_chunk_line(s)) {
      // The dispatcher's promise: a well-formed notification, whatever the session.
      ++common;
      json msg = json::parse(s, nullptr, false);
      INFO("line: " << s);
      REQUIRE_FALSE(msg.is_discarded());
      CHECK(tether::rpc::classify(msg).kind == tether::rpc::MessageKind::notification);
      CHECK(msg["params"].is_object());
    }
    auto fast = tether::acp::read_chunk_line(s, "s1");
    if (!fast) continue;
    ++taken;
    auto slow = general(s, "s1");
    INFO("line: " << s);
    REQUIRE(slow.has_value());
    CHECK(fast->kind == slow->kind);
    CHECK(fast->text == slow->text);
    CHECK(fast->message_id == slow->message_id);
    CHECK(fast->kind_name == slow->kind_name);
  }
  CHECK(taken > 200);
  CHECK(common > 100);
}

// Every single-byte edit (all 256 values, replaced or inserted at every position; each byte removed) and
// a set of multi-byte sequences in the session id and the text of the common line.
TEST_CASE("is_common_chunk_line, on every byte edit and bad UTF-8 in the id and text: only the exact well-formed notification") {
  const std::string head = R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
  const std::string mid = R"(","update":{"sessionUpdate":")";
  const std::string content = R"(","content":{"type":"text","text":")";
  const std::string tail = R"("}}}})";
  auto make = [&](const std::string& sid, const std::string& kind, const std::string& text) {
    return head + sid + mid + kind + content + text + tail;
  };
  std::vector<std::string> seeds = {make("s1", "agent_message_chunk", "hi there"),
                                    make("s1", "user_message_chunk", ""),
                                    make("x", "agent_thought_chunk", "a")};
  const std::vector<std::string> seqs = {"\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xed\xa0\x80",
                                         "\xed\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80",
                                         "\xef\xbf\xbf", "\xf0\x9f\x98\x80", "\x7f", "\"}}}}", "\\", "\\\"",
                                         "\"}}}},\"id\":1,\"x\":{\"a\":{\"b\":{\"c\":\"", "\r", " "};
  std::vector<std::string> lines;
  for (const auto& seed : seeds) {
    for (auto& s : tether::test::byte_edits(seed, seqs)) lines.push_back(std::move(s));
    for (const auto& q : seqs) {
      lines.push_back(make(q, "agent_message_chunk", "t"));
      lines.push_back(make("s1", "agent_message_chunk", q));
      lines.push_back(make("s" + q, "agent_message_chunk", "t" + q + "u"));
    }
  }
  lines.push_back(head + "}}}}");
  lines.push_back(make("", "agent_message_chunk", "t"));
  int accepted = 0;
  for (const auto& s : lines) {
    if (!tether::acp::is_common_chunk_line(s)) continue;
    ++accepted;
    INFO("line: " << s);
    json msg = json::parse(s, nullptr, false);
    REQUIRE_FALSE(msg.is_discarded());
    REQUIRE(tether::rpc::classify(msg).kind == tether::rpc::MessageKind::notification);
    CHECK(msg.size() == 3);
    CHECK(msg["jsonrpc"] == "2.0");
    CHECK(msg["method"] == "session/update");
    const json& p = msg["params"];
    REQUIRE(p.is_object());
    CHECK(p.size() == 2);
    REQUIRE(p["sessionId"].is_string());
    const std::string sid = p["sessionId"].get<std::string>();
    CHECK_FALSE(sid.empty());
    const json& u = p["update"];
    REQUIRE(u.is_object());
    CHECK(u.size() == 2);
    CHECK(u["content"].size() == 2);
    // The general path, for the line's own session, reads the same.
    auto fast = tether::acp::read_chunk_line(s, sid);
    REQUIRE(fast.has_value());
    auto slow = general(s, sid);
    REQUIRE(slow.has_value());
    CHECK(fast->kind == slow->kind);
    CHECK(fast->kind_name == slow->kind_name);
    CHECK(fast->text == slow->text);
    CHECK(fast->message_id == slow->message_id);
    // And the rpc layer's own scan would route it the same way.
    CHECK(tether::rpc::parse_line(s).has_value());
  }
  MESSAGE(accepted << " of " << lines.size() << " lines accepted");
  CHECK(accepted > 100);
}
