// What a tool call shows of itself (cli/tool_view.h), and where talk's renderer puts it: unified
// diffs with context, new files, deletions, huge and hostile input, width cuts, output summaries,
// terminals, locations, the tool call content that ACP updates carry (acp/update.h), and the
// permission question that shows the diff before its options. No processes, no sleeps.
#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "acp/update.h"
#include "cli/render.h"
#include "cli/talk_commands.h"
#include "cli/tool_view.h"

using tether::acp::json;
using tether::acp::PermissionRequest;
using tether::acp::ToolCall;
using tether::acp::ToolContent;
using tether::acp::Update;
using tether::cli::diff_lines;
using tether::cli::format;
using tether::cli::ToolTracker;
using tether::cli::ViewLine;
using tether::cli::ViewOptions;
using tether::cli::ViewTone;

namespace {

ToolContent diff(std::optional<std::string> old_text, std::string new_text, std::string path = "src/a.c") {
  ToolContent c;
  c.kind = ToolContent::Kind::diff;
  c.path = std::move(path);
  c.text = std::move(new_text);
  c.old_text = std::move(old_text);
  auto lines = [](const std::string& s) {
    std::int64_t n = 0;
    for (char ch : s) n += ch == '\n';
    return s.empty() || s.back() == '\n' ? n : n + 1;
  };
  c.lines = lines(c.text);
  c.old_lines = c.old_text ? lines(*c.old_text) : 0;
  return c;
}

std::string numbered(int from, int to, std::string_view prefix = "line ") {
  std::string s;
  for (int i = from; i <= to; ++i) s += std::string(prefix) + std::to_string(i) + "\n";
  return s;
}

std::string text_of(const std::vector<ViewLine>& lines) { return format(lines, "", false); }

Update parsed(const char* text) {
  auto u = tether::acp::parse_update(json::parse(text));
  REQUIRE_MESSAGE(u.has_value(), text);
  return *u;
}

}  // namespace

TEST_CASE("a diff: the path, a hunk header, three lines of context around each change") {
  std::string old_text = numbered(1, 12);
  std::string new_text = old_text;
  new_text.replace(new_text.find("line 6\n"), 7, "line six\n");
  std::string shown = text_of(diff_lines(diff(old_text, new_text), {}));
  CHECK(shown ==
        "src/a.c\n"
        "@@ -3,7 +3,7 @@\n"
        " line 3\n line 4\n line 5\n"
        "-line 6\n"
        "+line six\n"
        " line 7\n line 8\n line 9\n");
  // Two changes far apart are two hunks; close together, one.
  new_text = old_text;
  new_text.replace(new_text.find("line 1\n"), 7, "LINE 1\n");
  new_text.replace(new_text.find("line 12\n"), 8, "LINE 12\n");
  shown = text_of(diff_lines(diff(old_text, new_text), {}));
  CHECK(shown.find("@@ -1,4 +1,4 @@\n-line 1\n+LINE 1\n line 2\n") != std::string::npos);
  CHECK(shown.find("@@ -9,4 +9,4 @@\n line 9\n line 10\n line 11\n-line 12\n+LINE 12\n") != std::string::npos);
  new_text = old_text;
  new_text.replace(new_text.find("line 3\n"), 7, "LINE 3\n");
  new_text.replace(new_text.find("line 9\n"), 7, "LINE 9\n");
  CHECK(text_of(diff_lines(diff(old_text, new_text), {})).find("@@ -1,12 +1,12 @@") != std::string::npos);
}

TEST_CASE("a diff of a new file, of a deletion, of an insertion, and of no change") {
  std::string shown = text_of(diff_lines(diff(std::nullopt, "one\ntwo\n", "new.txt"), {}));
  CHECK(shown == "new.txt (new file)\n@@ -0,0 +1,2 @@\n+one\n+two\n");
  shown = text_of(diff_lines(diff("one\ntwo\n", ""), {}));
  CHECK(shown == "src/a.c\n@@ -1,2 +0,0 @@\n-one\n-two\n");
  shown = text_of(diff_lines(diff("a\nb\n", "a\nnew\nb\n"), {}));
  CHECK(shown == "src/a.c\n@@ -1,2 +1,3 @@\n a\n+new\n b\n");
  CHECK(text_of(diff_lines(diff("same\n", "same\n"), {})) == "src/a.c\n(no change)\n");
  // Claude sends the replaced string itself, without a final newline.
  CHECK(text_of(diff_lines(diff("beta", "BETA"), {})) == "src/a.c\n@@ -1,1 +1,1 @@\n-beta\n+BETA\n");
}

TEST_CASE("a diff is cut after diff_lines lines, saying how many more") {
  std::string shown = text_of(diff_lines(diff(numbered(1, 100), numbered(1, 100, "new ")), {}));
  CHECK(shown.find("… 162 more lines\n") != std::string::npos);  // 1 + 200 diff lines, 39 of them shown
  ViewOptions o;
  o.diff_lines = 5;
  auto lines = diff_lines(diff(numbered(1, 10), numbered(1, 10, "x")), o);
  CHECK(lines.size() == 6);
  CHECK(lines.back().text == "… 17 more lines");
}

TEST_CASE("huge input is summarised, never diffed; a large change is shown without a long diff") {
  std::string big = numbered(1, 20001);
  auto t0 = std::chrono::steady_clock::now();
  std::string shown = text_of(diff_lines(diff(std::nullopt, big), {}));
  CHECK(shown == "src/a.c (new file)\n(diff too large to show: -0 +20,001 lines)\n");
  ToolContent cut = diff("a\n", "b\n");
  cut.truncated = true;  // the acp layer kept only kMaxToolText bytes of it
  CHECK(text_of(diff_lines(cut, {})).find("diff too large to show") != std::string::npos);
  // 5,000 different lines against 5,000: beyond kMaxDiffWork, all removed then all added, at once.
  shown = text_of(diff_lines(diff(numbered(1, 5000, "a "), numbered(1, 5000, "b ")), {}));
  CHECK(shown.find("@@ -1,5000 +1,5000 @@\n-a 1\n-a 2\n") != std::string::npos);
  CHECK(shown.find("… 9,962 more lines") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
}

TEST_CASE("the acp layer bounds what it keeps of a tool call's texts") {
  json u = {{"sessionUpdate", "tool_call"},
            {"toolCallId", "c1"},
            {"title", "Write"},
            {"content", {{{"type", "diff"}, {"path", "/w/big"}, {"oldText", nullptr}, {"newText", std::string(3 << 20, 'x')}}}}};
  auto p = tether::acp::parse_update(u);
  REQUIRE(p);
  REQUIRE(p->tool.content);
  REQUIRE(p->tool.content->size() == 1);
  const ToolContent& c = (*p->tool.content)[0];
  CHECK(c.truncated);
  CHECK(c.text.size() == tether::acp::kMaxToolText);
  CHECK_FALSE(c.old_text.has_value());
}

TEST_CASE("hostile text: escape sequences and controls never reach the lines") {
  std::string evil = "ok\x1b]52;c;ZXZpbA==\x07 \x1b[2J\x1b[31mred\r\x9b" "1m\xe2\x80\xae" "end\n";
  auto lines = diff_lines(diff("plain\n", evil, "p\x1b[1mth\n2"), {});
  std::string shown = text_of(lines);
  INFO(shown);
  CHECK(shown.find('\x1b') == std::string::npos);
  CHECK(shown.find('\r') == std::string::npos);
  CHECK(shown.find('\x07') == std::string::npos);
  CHECK(shown.find("\xe2\x80\xae") == std::string::npos);
  CHECK(shown.find("+ok redend\n") != std::string::npos);
  CHECK(lines[0].text == "pth 2");  // the path stays on its line
  // Colour is tether's own, one line at a time.
  std::string coloured = format(lines, "  ", true);
  CHECK(coloured.find("\x1b[31m-plain\x1b[0m\n") != std::string::npos);
  CHECK(coloured.find("\x1b[32m+ok") != std::string::npos);
}

TEST_CASE("lines are cut to the width; tabs keep their indentation") {
  ViewOptions o;
  o.width = 10;
  auto lines = diff_lines(diff(std::nullopt, "abcdefghijklmnop\n\tx\n"), o);
  REQUIRE(lines.size() == 4);
  CHECK(lines[2].text == "+abcdefgh…");
  CHECK(lines[3].text == "+        x");  // a tab stop every 8 columns of the text
  CHECK(tether::cli::cut_to_width("ééééé", 3) == "éé…");
  CHECK(tether::cli::cut_to_width("abc", 3) == "abc");
}

TEST_CASE("content blocks: the first lines and how many more; terminals; locations; the command") {
  ToolContent out;
  out.text = numbered(1, 12);
  out.lines = 12;
  auto lines = tether::cli::content_lines(out, {});
  REQUIRE(lines.size() == 6);
  CHECK(lines[0].text == "line 1");
  CHECK(lines[5].text == "… 7 more lines");

  ToolContent term;
  term.kind = ToolContent::Kind::terminal;
  term.terminal_id = "term-1";
  CHECK(text_of(tether::cli::terminal_lines(term, {})) == "terminal term-1\n");
  ViewOptions o;
  o.terminal_output = [](std::string_view id) -> std::optional<std::string> {
    if (id == "term-1") return std::string("built\n");
    return std::nullopt;
  };
  CHECK(text_of(tether::cli::terminal_lines(term, o)) == "terminal term-1\nbuilt\n");

  Update u = parsed(R"({"sessionUpdate":"tool_call","toolCallId":"x","title":"Run","kind":"execute",
      "rawInput":{"command":["bash","-lc","make test"]},
      "locations":[{"path":"a.c","line":12},{"path":"b.c"}],
      "content":[{"type":"content","content":{"type":"text","text":"ok\n"}},{"type":"terminal","terminalId":"t9"},{"type":"other"}]})");
  CHECK(u.tool.command == "bash -lc make test");
  REQUIRE(u.tool.content);
  CHECK(u.tool.content->size() == 2);  // the unknown kind is left out
  CHECK(text_of(tether::cli::tool_lines(u.tool, {})) == "$ bash -lc make test\nok\nterminal t9\nat a.c:12, b.c\n");
}

TEST_CASE("the tracker: new content is shown once; a permission question gets the latest content") {
  ToolTracker t;
  ToolCall first;
  first.id = "e1";
  first.title = "Edit";
  first.content = std::vector<ToolContent>{diff("beta", "BETA")};
  auto lines = t.update(first, {});
  CHECK(text_of(lines).find("-beta\n+BETA\n") != std::string::npos);
  t.drawn("e1", 7);
  ToolCall status;
  status.id = "e1";
  status.status = "in_progress";
  CHECK(t.update(status, {}).empty());  // nothing new to show
  ToolCall located;
  located.id = "e1";
  located.locations = {"a.c"};
  located.location_lines = {3};
  CHECK(text_of(t.update(located, {})) == "at a.c:3\n");  // only what changed
  located.content = std::vector<ToolContent>{diff("beta", "BETA")};
  CHECK(t.update(located, {}).empty());
  ToolContent fenced;
  fenced.text = "```\nout 1\nout 2\n```\n";
  located.content = std::vector<ToolContent>{fenced};
  CHECK(text_of(t.update(located, {})) == "out 1\nout 2\n");  // the Markdown fence is not output
  located.content = std::vector<ToolContent>{diff("beta", "BETA")};
  t.update(located, {});
  t.drawn("e1", 7);
  ToolCall ask;
  ask.id = "e1";  // the request names the call only
  CHECK(t.for_permission(ask, {}, 7).empty());  // just shown, right above the question
  CHECK(text_of(t.for_permission(ask, {}, 8)).find("-beta\n+BETA\n") != std::string::npos);
  ask.content = std::vector<ToolContent>{diff("beta", "GAMMA")};  // the request's own is the latest
  CHECK(text_of(t.for_permission(ask, {}, 7)).find("+GAMMA\n") != std::string::npos);
  for (int i = 0; i < 100; ++i) {
    ToolCall c;
    c.id = "c" + std::to_string(i);
    t.update(c, {});
  }
  CHECK(t.find("e1") == nullptr);  // bounded: the oldest went first
  CHECK(t.find("c99") != nullptr);
}

TEST_CASE("talk: the permission question shows the tool call's diff before its options") {
  tether::cli::talk::RenderStyle s;
  s.sanitize = s.sanitize_err = s.shared = true;
  tether::cli::talk::Renderer r(s);
  r.begin_turn();
  Update call = parsed(R"({"sessionUpdate":"tool_call","toolCallId":"e1","title":"Edit src/a.c","kind":"edit",
      "content":[{"type":"diff","path":"src/a.c","oldText":"alpha\nbeta\n","newText":"alpha\nBETA\n"}]})");
  r.update(call);
  r.update(parsed(R"({"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"Editing now.\n"}})"));
  PermissionRequest p;
  p.token = 1;
  p.tool.id = "e1";
  p.tool.title = "Edit src/a.c";
  p.options = {{"allow", "Allow", "allow_once"}, {"reject", "Reject", "reject_once"}};
  r.permission(p);
  std::string text;
  for (auto& w : r.take()) text += w.text;
  auto question = text.find("permission: Edit src/a.c");
  auto removed = text.find("    -beta\n", question);
  auto added = text.find("    +BETA\n", question);
  auto options = text.find("[1/a] Allow");
  REQUIRE(question != std::string::npos);
  CHECK(removed != std::string::npos);
  CHECK(added != std::string::npos);
  CHECK(removed < options);
  CHECK(added < options);
  // With details off (-q) the question still shows what it asks about.
  s.details = false;
  tether::cli::talk::Renderer quiet(s);
  quiet.begin_turn();
  quiet.update(call);
  quiet.permission(p);
  text.clear();
  for (auto& w : quiet.take()) text += w.text;
  CHECK(text.find("tool:") == std::string::npos);
  CHECK(text.find("    -beta\n    +BETA\n") < text.find("[1/a] Allow"));
}

TEST_CASE("/help: each agent command on one line, its description cut to the width") {
  std::string desc = "Review the code.\n\n" + std::string(600, 'x') + "\n  more";
  std::string h = tether::cli::talk::help_text({{"review", desc, ""}, {"init", "Initialize", ""}}, 60);
  auto at = h.find("  /review");
  REQUIRE(at != std::string::npos);
  std::string line = h.substr(at, h.find('\n', at) - at);
  CHECK(line.find("Review the code. xxx") != std::string::npos);
  CHECK(line.size() <= 62);  // 60 columns, "…" is 3 bytes
  CHECK(line.substr(line.size() - 3) == "…");
  CHECK(h.find("  /init") != std::string::npos);
}
