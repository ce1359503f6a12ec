// The pure parts behind prompt content and the event stream (issue 14 items 1, 5, 6): sorting
// bytes into kinds, the blocks each kind becomes for what the agent accepts, base64, the event
// envelope and each event's fields, the usage merge, the tool-call record.
#include <doctest/doctest.h>

#include "cli/attachments.h"
#include "cli/event_stream.h"
#include "cli/tool_calls.h"

using namespace tether::cli;
using nlohmann::json;
using K = Attachment::Kind;

namespace {

Attachment file(std::string name, std::string bytes) {
  Attachment a;
  a.name = std::move(name);
  a.uri = "file:///w/" + a.name;
  a.data = std::move(bytes);
  auto [kind, mime] = sniff(a.data, a.name);
  a.kind = kind;
  a.mime_type = mime;
  a.size = a.data.size();
  return a;
}

json parse_line(const std::string& line) {
  REQUIRE(!line.empty());
  CHECK(line.back() == '\n');
  return json::parse(line);
}

}  // namespace

TEST_CASE("sniff: kinds by their first bytes, text by UTF-8 validity") {
  CHECK(sniff("\x89PNG\r\n\x1a\nrest").first == K::image);
  CHECK(sniff("\xFF\xD8\xFF\xE0").second == "image/jpeg");
  CHECK(sniff("GIF89a...").second == "image/gif");
  CHECK(sniff(std::string("RIFF\0\0\0\0WEBPVP8 ", 16)).second == "image/webp");
  CHECK(sniff(std::string("RIFF\0\0\0\0WAVEfmt ", 16)) == std::pair{K::audio, std::string("audio/wav")});
  CHECK(sniff("ID3\x04").second == "audio/mpeg");
  CHECK(sniff("plain text\n", "notes.md") == std::pair{K::text, std::string("text/markdown")});
  CHECK(sniff("caf\xC3\xA9").first == K::text);               // UTF-8
  CHECK(sniff("caf\xE9").first == K::binary);                 // Latin-1: not UTF-8
  CHECK(sniff(std::string("a\0b", 3)).first == K::binary);    // NUL
  CHECK(sniff("\xED\xA0\x80").first == K::binary);            // a surrogate
  CHECK(sniff("\xC3").first == K::binary);                    // cut in the middle of a character
  CHECK(sniff("").first == K::text);
}

TEST_CASE("prompt_blocks: context, attachments, words, in that order, by what the agent accepts") {
  PromptCaps all{.image = true, .audio = true, .embedded = true};
  Attachment piped = file("stdin", "CONTEXT");
  piped.uri.clear();
  piped.piped = true;
  std::vector<Attachment> in{piped, file("a.png", "\x89PNG\r\n\x1a\nxx"), file("n.md", "notes")};
  auto got = prompt_blocks(in, "do it", all);
  REQUIRE(std::holds_alternative<json>(got));
  json b = std::get<json>(got);
  REQUIRE(b.size() == 4);
  CHECK(b[0]["type"] == "resource");
  CHECK(b[0]["resource"]["text"] == "CONTEXT");
  CHECK(b[0]["resource"]["uri"] == "tether:stdin");
  CHECK(b[1]["type"] == "image");
  CHECK(b[1]["mimeType"] == "image/png");
  CHECK(b[1]["data"] == base64("\x89PNG\r\n\x1a\nxx"));
  CHECK(b[2]["resource"]["uri"] == "file:///w/n.md");
  CHECK(b[3] == json{{"type", "text"}, {"text", "do it"}});

  // Without embeddedContext: a file is a link, piped text a text block; an image is refused.
  PromptCaps bare;
  auto no_image = prompt_blocks(in, "do it", bare, "claude");
  REQUIRE(std::holds_alternative<std::string>(no_image));
  CHECK(std::get<std::string>(no_image).find("claude does not accept images") == 0);
  std::vector<Attachment> text_only{piped, file("n.md", "notes")};
  json plain = std::get<json>(prompt_blocks(text_only, "", bare));
  CHECK(plain[0] == json{{"type", "text"}, {"text", "CONTEXT"}});
  CHECK(plain[1]["type"] == "resource_link");
  CHECK(plain[1]["name"] == "n.md");
  CHECK(plain[1]["size"] == 5);
  CHECK(plain.size() == 2);  // no empty words block

  Attachment blob = file("x.bin", std::string("\x01\x02\x00", 3));
  blob.uri.clear();
  blob.piped = true;
  CHECK(std::holds_alternative<std::string>(prompt_blocks({blob}, "x", bare)));
  CHECK(std::get<json>(prompt_blocks({blob}, "x", all))[0]["resource"].contains("blob"));
  CHECK(std::holds_alternative<std::string>(prompt_blocks({}, "", all)));  // nothing to send
}

TEST_CASE("PromptCaps reads promptCapabilities; anything but true is false") {
  auto c = PromptCaps::from(json::parse(R"({"promptCapabilities":{"image":true,"audio":"yes","embeddedContext":1}})"));
  CHECK(c.image);
  CHECK(!c.audio);
  CHECK(!c.embedded);
  CHECK(!PromptCaps::from(json()).image);
}

TEST_CASE("base64: RFC 4648 test vectors") {
  CHECK(base64("") == "");
  CHECK(base64("f") == "Zg==");
  CHECK(base64("fo") == "Zm8=");
  CHECK(base64("foo") == "Zm9v");
  CHECK(base64("foob") == "Zm9vYg==");
  CHECK(base64("fooba") == "Zm9vYmE=");
  CHECK(base64("foobar") == "Zm9vYmFy");
  CHECK(base64("\xFF\xFE") == "//4=");
}

TEST_CASE("EventStream: the envelope, seq across turns, and each event's fields") {
  EventStream es;
  json started = parse_line(es.turn_started("S", "hi", json::array({"a.png"})));
  CHECK(started["v"] == kEventsVersion);
  CHECK(started["type"] == "turn_started");
  CHECK(started["sessionId"] == "S");
  CHECK(started["turn"] == 1);
  CHECK(started["seq"] == 1);
  CHECK(started["attachments"] == json::array({"a.png"}));

  tether::acp::TurnEvent ev;
  ev.kind = tether::acp::TurnEvent::Kind::update;
  ev.update = *tether::acp::parse_update(json::parse(
      R"({"sessionUpdate":"tool_call_update","toolCallId":"t1","status":"completed","content":[{"type":"diff","path":"/a","oldText":"x","newText":"y"}]})"));
  json tool = parse_line(es.event("S", ev));
  CHECK(tool["type"] == "tool_call_update");
  CHECK(tool["seq"] == 2);
  CHECK(tool["content"][0]["type"] == "diff");
  CHECK(!tool.contains("title"));  // only what the update carried

  ev.kind = tether::acp::TurnEvent::Kind::permission;
  ev.permission.token = 7;
  ev.permission.tool.id = "t1";
  ev.permission.options = {{"ok", "Allow", "allow_once"}};
  ev.permission.answered = true;
  ev.permission.chosen = ev.permission.options[0];
  std::string two = es.event("S", ev);
  auto nl = two.find('\n');
  json asked = parse_line(two.substr(0, nl + 1));
  json answered = parse_line(two.substr(nl + 1));
  CHECK(asked["type"] == "permission_asked");
  CHECK(asked["options"][0]["optionId"] == "ok");
  CHECK(answered["type"] == "permission_answered");
  CHECK(answered["outcome"] == "selected");
  CHECK(answered["by"] == "policy");
  CHECK(answered["seq"] == 4);

  ev.other_client = true;
  CHECK(es.event("S", ev).empty());  // another client's turn is not ours

  tether::acp::TurnEvent done;
  done.kind = tether::acp::TurnEvent::Kind::completed;
  done.stop_reason = "end_turn";
  json ended = parse_line(es.turn_ended("S", done, nlohmann::ordered_json(), 12));
  CHECK(ended["ok"] == true);
  CHECK(ended["elapsedMs"] == 12);
  CHECK(!ended.contains("usage"));
  CHECK(parse_line(es.turn_started("S", "again", json::array()))["turn"] == 2);
}

TEST_CASE("turn_usage merges the context window and the prompt result's token counts, numbers only") {
  tether::acp::Usage u;
  u.used = 10;
  u.size = 100;
  auto merged = turn_usage(u, json::parse(R"({"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":"x","evil":1}})"));
  CHECK(merged.dump() == R"({"used":10,"size":100,"inputTokens":3})");
  CHECK(turn_usage(std::nullopt, json()).is_null());
}

TEST_CASE("ToolCalls: one entry per id, latest fields; a line only for new calls and status changes") {
  ToolCalls t;
  auto upd = [](const char* text) { return *tether::acp::parse_update(json::parse(text)); };
  CHECK(t.update(upd(R"({"sessionUpdate":"tool_call","toolCallId":"a","title":"Read","kind":"read"})")) != nullptr);
  CHECK(t.update(upd(R"({"sessionUpdate":"tool_call_update","toolCallId":"a","title":"Read x"})")) == nullptr);
  CHECK(t.update(upd(R"({"sessionUpdate":"tool_call_update","toolCallId":"a","status":"completed"})")) != nullptr);
  CHECK(t.to_json().dump() == R"([{"id":"a","title":"Read x","kind":"read","status":"completed"}])");
}
