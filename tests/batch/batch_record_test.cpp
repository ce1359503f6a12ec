// answer_line() (batch_record.h) writes a finished item's line straight from its parts: it must be
// byte for byte what dump_record(answer(...)) writes, for every answer it takes, and it must
// leave every answer with an error to answer().
#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "cli/batch_record.h"

using namespace tether::cli::batch;
using tether::acp::TurnEvent;
using tether::acp::Update;

namespace {

Attempt attempt_with(const std::string& text, int tools, const std::optional<tether::acp::Usage>& usage) {
  Attempt a;
  a.text = text;
  for (int i = 0; i < tools; ++i) {
    Update u;
    u.kind = Update::Kind::tool_call;
    u.tool.id = "call-" + std::to_string(i);
    u.tool.title = i == 0 ? "Read \"a\\b\"" : "Edit";
    if (i > 0) u.tool.kind = "edit";
    u.tool.status = "completed";
    a.take(u);
  }
  a.usage = usage;
  return a;
}

}  // namespace

TEST_CASE("answer_line writes what dump_record(answer()) writes, for every answer without an error") {
  const std::vector<std::string> inputs = {
      "plain text",
      R"({"prompt":"p"})",
      R"({"id":"q\u00e9","prompt":"p","lang":"fr","n":[1,2]})",
      R"({"id":1.50,"prompt":"p"})",  // a raw id, written as given
      R"({"id":-7,"prompt":"p","m":{"x":null,"y":[true,"\u0001"]}})",
  };
  const std::vector<std::string> texts = {"", "ok", "a\"b\\c\n\t\x01 end", "caf\xc3\xa9 \xf0\x9f\x98\x80",
                                          "bad \xff UTF-8", std::string(5000, 'x')};
  const std::vector<std::optional<tether::acp::Usage>> usages = {
      std::nullopt, tether::acp::Usage{1004, 200000, std::nullopt, ""}, tether::acp::Usage{5, 10, 0.25, "USD"}};
  const std::vector<nlohmann::json> results = {
      nullptr, {{"stopReason", "end_turn"}},
      {{"stopReason", "end_turn"}, {"usage", {{"inputTokens", 5}, {"outputTokens", 7}, {"note", "not a number"}}}}};
  const auto now = tether::base::Clock::now();
  std::vector<Tries> tries(2);
  tries[0].attempts = 1;
  tries[0].started = now - std::chrono::milliseconds(1234);
  tries[1].attempts = 3;
  int compared = 0;
  std::size_t line_no = 1;
  for (const auto& input : inputs) {
    Item item = parse_item(InputLine{line_no++, input, false});
    REQUIRE_FALSE(item.error.has_value());
    for (const auto& text : texts)
      for (int tools = 0; tools <= 2; ++tools)
        for (const auto& usage : usages)
          for (const auto& result : results)
            for (const auto& t : tries) {
              Attempt a = attempt_with(text, tools, usage);
              TurnEvent ev;
              ev.kind = TurnEvent::Kind::completed;
              ev.stop_reason = "end_turn";
              ev.result = result;
              auto line = answer_line(item, t, ev, a, 0, now);
              REQUIRE(line.has_value());
              CHECK(*line == dump_record(answer(item, t, ev, a, 0, now), item.id_raw));
              ++compared;
            }
  }
  CHECK(compared == 5 * 6 * 3 * 3 * 3 * 2);
}

TEST_CASE("answer_line leaves an answer with an error to answer()") {
  Item item = parse_item(InputLine{1, "hi", false});
  Attempt a;
  a.text = "partial";
  TurnEvent ev;
  ev.kind = TurnEvent::Kind::completed;
  ev.stop_reason = "max_tokens";
  const auto now = tether::base::Clock::now();
  CHECK_FALSE(answer_line(item, Tries{}, ev, a, 0, now).has_value());
  ev.stop_reason = "end_turn";
  CHECK_FALSE(answer_line(item, Tries{}, ev, a, 2, now).has_value());  // lines were dropped
  CHECK(answer_line(item, Tries{}, ev, a, 0, now).has_value());
}

// Ids and metas whose numbers nlohmann keeps in their own ways, and item_hash against
// the concatenation it replaced (journals of old runs must still match).
TEST_CASE("answer_line and item_hash on odd ids and metas (2^64, -0.0, 1E2, duplicate keys)") {
  const std::vector<std::string> inputs = {
      R"({"id":18446744073709551616,"prompt":"p"})",  R"({"id":-0.0,"prompt":"p"})",
      R"({"id":1E2,"prompt":"p"})",                    R"({"id":9223372036854775808,"prompt":"p"})",
      R"({"id":-9223372036854775809,"prompt":"p"})",   R"({"id":-0,"prompt":"p"})",
      R"({"id":"","prompt":"","m":1.0,"n":-0.0,"o":1e300,"p":18446744073709551615})",
      "{\"id\":\"\\u0000\\ud83d\\ude00\",\"prompt\":\"p\",\"\\u00e9\":{\"\":[]}}",
      R"({"prompt":"p","prompt":"q","id":1,"id":"two","z":1,"z":2})",
      R"({"prompt":"p","attachments":["a","b"],"meta":{"x":1}})",
      "  {\"prompt\":\"p\"}",
      "\t{\"prompt\":\"p\",\"id\":0.1}",
  };
  const auto now = tether::base::Clock::now();
  Tries t;
  t.attempts = 2;
  t.started = now - std::chrono::milliseconds(7);
  std::size_t line_no = 1;
  for (const auto& input : inputs) {
    CAPTURE(input);
    Item item = parse_item(InputLine{line_no++, input, false});
    REQUIRE_FALSE(item.error.has_value());
    for (const std::string& text : {std::string("x"), std::string("\xed\xa0\x80\xc0\x80 \xf4\x90\x80\x80")}) {
      Attempt a = attempt_with(text, 1, tether::acp::Usage{1, 2, 1e-7, "\xff"});
      TurnEvent ev;
      ev.kind = TurnEvent::Kind::completed;
      ev.stop_reason = "end_turn";
      ev.result = {{"stopReason", "end_turn"}, {"usage", {{"inputTokens", 1.5}, {"outputTokens", -0.0}}}};
      auto line = answer_line(item, t, ev, a, 0, now);
      REQUIRE(line.has_value());
      CHECK(*line == dump_record(answer(item, t, ev, a, 0, now), item.id_raw));
    }
    // The old item_hash: one string, hashed once.
    std::string old = item.id_text;
    old += '\0';
    old += item.prompt;
    old += '\0';
    if (!item.meta.is_null()) old += dump(item.meta);
    for (const auto& at : item.attachments) {
      old += '\0';
      old += at;
    }
    CHECK(item_hash(item) == fnv1a64(old));
  }
}
