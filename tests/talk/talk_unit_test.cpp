// Unit tests of `tether talk`'s pure parts: slash-command parsing, the history filter and file,
// the paste decoder, and the rendering of each event kind. No processes, no sleeps.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>

#include "cli/render.h"
#include "cli/talk_commands.h"
#include "cli/talk_history.h"
#include "cli/talk_input.h"
#include "cli/terminal_text.h"

using namespace tether::cli::talk;
using tether::acp::Command;
using tether::acp::PermissionOption;
using tether::acp::PermissionRequest;
using tether::acp::TurnEvent;
using tether::acp::Update;

namespace {

std::vector<Command> agent_commands() { return {{"web", "Search the web", "query"}, {"plan", "Make a plan", ""}}; }

std::string all_text(const std::vector<Write>& ws, int fd = 0) {
  std::string s;
  for (const auto& w : ws)
    if (fd == 0 || w.fd == fd) s += w.text;
  return s;
}

Update chunk(Update::Kind kind, std::string text) {
  Update u;
  u.kind = kind;
  u.text = std::move(text);
  return u;
}

Update tool_update(Update::Kind kind, std::string id, std::optional<std::string> title, std::optional<std::string> status,
                   std::optional<std::string> tkind = std::nullopt) {
  Update u;
  u.kind = kind;
  u.tool.id = std::move(id);
  u.tool.title = std::move(title);
  u.tool.status = std::move(status);
  u.tool.kind = std::move(tkind);
  return u;
}

TurnEvent completed(std::string reason) {
  TurnEvent e;
  e.kind = TurnEvent::Kind::completed;
  e.stop_reason = std::move(reason);
  return e;
}

RenderStyle plain(bool shared = true) {
  RenderStyle s;
  s.color = false;
  s.sanitize = true;
  s.sanitize_err = true;
  s.shared = shared;
  s.details = true;
  return s;
}

std::string temp_dir() {
  char tmpl[] = "/tmp/tether-talk-unit-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

}  // namespace

TEST_CASE("plain lines are prompts; blank lines are nothing") {
  CHECK(parse_line("hello there", {}).kind == LineKind::prompt);
  CHECK(parse_line("hello there", {}).text == "hello there");
  CHECK(parse_line("   ", {}).kind == LineKind::empty);
  CHECK(parse_line("", {}).kind == LineKind::empty);
  // A leading space keeps a line out of the history only: it is still a prompt, sent as typed.
  CHECK(parse_line(" secret", {}).text == " secret");
}

TEST_CASE("talk's own slash commands") {
  CHECK(parse_line("/help", {}).kind == LineKind::help);
  CHECK(parse_line("/?", {}).kind == LineKind::help);
  CHECK(parse_line("/exit", {}).kind == LineKind::exit);
  CHECK(parse_line("/quit", {}).kind == LineKind::exit);
  CHECK(parse_line("  /status  ", {}).kind == LineKind::status);
  CHECK(parse_line("/cancel", {}).kind == LineKind::cancel);
  CHECK(parse_line("/restart", {}).kind == LineKind::restart);
  CHECK(parse_line("/stderr", {}).kind == LineKind::stderr_tail);
  CHECK(parse_line("/session new", {}).kind == LineKind::session_new);
  auto edit = parse_line("/edit draft text", {});
  CHECK(edit.kind == LineKind::edit);
  CHECK(edit.text == "draft text");
}

TEST_CASE("/multi takes an optional one-word terminator") {
  auto m = parse_line("/multi", {});
  CHECK(m.kind == LineKind::multi);
  CHECK(m.text == "/end");
  auto e = parse_line("/multi EOF", {});
  CHECK(e.kind == LineKind::multi);
  CHECK(e.text == "EOF");
  CHECK(parse_line("/multi two words", {}).kind == LineKind::usage_error);
  CHECK(is_terminator("/end", "/end"));
  CHECK(is_terminator("  EOF \t", "EOF"));
  CHECK_FALSE(is_terminator("/end now", "/end"));
  CHECK_FALSE(is_terminator("EOFX", "EOF"));
}

TEST_CASE("misused commands say how to use them") {
  CHECK(parse_line("/exit now", {}).kind == LineKind::usage_error);
  CHECK(parse_line("/session", {}).kind == LineKind::usage_error);
  CHECK(parse_line("/session old", {}).kind == LineKind::usage_error);
  CHECK(parse_line("/sessions", {}).kind == LineKind::sessions);
  CHECK(parse_line("/sessions all", {}).kind == LineKind::usage_error);
  auto load = parse_line("/load  demo-1-2-3 ", {});
  CHECK(load.kind == LineKind::load);
  CHECK(load.text == "demo-1-2-3");
  CHECK(parse_line("/load", {}).kind == LineKind::usage_error);
  CHECK(parse_line("/load a b", {}).kind == LineKind::usage_error);
  auto end = parse_line("/end", {});
  CHECK(end.kind == LineKind::usage_error);
  CHECK(end.text.find("/multi") != std::string::npos);
}

TEST_CASE("// sends a literal slash line; the agent's commands are prompts; others are unknown") {
  auto lit = parse_line("//help me", {});
  CHECK(lit.kind == LineKind::prompt);
  CHECK(lit.text == "/help me");
  auto web = parse_line("/web cats and dogs", agent_commands());
  CHECK(web.kind == LineKind::agent_command);
  CHECK(web.text == "/web cats and dogs");
  auto unknown = parse_line("/frobnicate x", agent_commands());
  CHECK(unknown.kind == LineKind::unknown);
  CHECK(unknown.text == "frobnicate");
  CHECK(parse_line("/", {}).kind == LineKind::unknown);
  // Ours win over an agent command of the same name.
  CHECK(parse_line("/help", {{"help", "agent help", ""}}).kind == LineKind::help);
}

TEST_CASE("/help lists the agent's commands with their hints") {
  std::string h = help_text(agent_commands());
  CHECK(h.find("/multi") != std::string::npos);
  CHECK(h.find("/web query") != std::string::npos);
  CHECK(h.find("Search the web") != std::string::npos);
  CHECK(help_text({}).find("agent's commands") == std::string::npos);
}

TEST_CASE("history filter: no leading space, no blanks, no consecutive duplicates") {
  CHECK(should_record("hello", ""));
  CHECK_FALSE(should_record(" hello", ""));
  CHECK_FALSE(should_record("\thello", ""));
  CHECK_FALSE(should_record("", ""));
  CHECK_FALSE(should_record("hello", "hello"));
  CHECK(should_record("hello", "hello!"));
  CHECK(should_record("/status", "hello"));
}

TEST_CASE("history path: TETHER_HISTORY, then XDG_STATE_HOME, then HOME") {
  std::map<std::string, std::string> env;
  auto get = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  CHECK(history_path(get).empty());
  env["HOME"] = "/home/u";
  CHECK(history_path(get) == "/home/u/.local/state/tether/history");
  env["XDG_STATE_HOME"] = "relative/ignored";
  CHECK(history_path(get) == "/home/u/.local/state/tether/history");
  env["XDG_STATE_HOME"] = "/state";
  CHECK(history_path(get) == "/state/tether/history");
  env["TETHER_HISTORY"] = "/x/h";
  CHECK(history_path(get) == "/x/h");
  env["TETHER_HISTORY"] = "";
  CHECK(history_path(get).empty());
}

TEST_CASE("history entries survive backslashes and newlines") {
  for (std::string s : {"plain", "a\\b", "two\nlines", "trailing\\", "\\n literal", "cr\rhere"}) {
    std::string enc = encode_entry(s);
    CHECK(enc.find('\n') == std::string::npos);
    CHECK(decode_entry(enc) == s);
  }
}

TEST_CASE("the history file: created 0600 in a 0700 directory, appended, compacted") {
  std::string dir = temp_dir();
  std::string path = dir + "/state/tether/history";
  {
    HistoryFile h(path, 3);
    std::string err;
    CHECK(h.load(err).empty());
    CHECK(err.empty());
    struct stat st;
    REQUIRE(::stat((dir + "/state/tether").c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0700);
    for (std::string e : {"one", "two\nlines", "three"}) CHECK(h.append(e, err));
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
  }
  {
    HistoryFile h(path, 3);
    std::string err;
    auto entries = h.load(err);
    REQUIRE(entries.size() == 3);
    CHECK(entries[1] == "two\nlines");
    for (std::string e : {"4", "5", "6", "7"}) CHECK(h.append(e, err));
  }
  {
    HistoryFile h(path, 3);
    std::string err;
    auto entries = h.load(err);  // 7 > 2 * 3: compacted to the newest 3
    CHECK(entries == std::vector<std::string>{"5", "6", "7"});
    std::ifstream in(path);
    std::string line;
    int lines = 0;
    while (std::getline(in, line)) ++lines;
    CHECK(lines == 3);
  }
  std::string cmd = "rm -rf '" + dir + "'";
  CHECK(std::system(cmd.c_str()) == 0);
}

TEST_CASE("input decoder: typed keys pass through, a bracketed paste comes out whole") {
  InputDecoder d;
  d.push("ab\x1b[200~line1\nline2\x1b[201~c");
  auto k = d.next();
  REQUIRE(k);
  CHECK_FALSE(k->paste);
  CHECK(k->text == "ab");
  auto p = d.next();
  REQUIRE(p);
  CHECK(p->paste);
  CHECK(p->text == "line1\nline2");
  auto c = d.next();
  REQUIRE(c);
  CHECK(c->text == "c");
  CHECK_FALSE(d.next());
  CHECK(d.empty());
}

TEST_CASE("input decoder: markers split across reads, and a lone Escape released") {
  InputDecoder d;
  d.push("x\x1b[20");
  auto k = d.next();
  REQUIRE(k);
  CHECK(k->text == "x");
  CHECK_FALSE(d.next());
  CHECK(d.holding_partial());
  d.push("0~pas");
  CHECK_FALSE(d.next());
  CHECK(d.in_paste());
  d.push("ted\x1b[2");
  CHECK_FALSE(d.next());
  d.push("01~");
  auto p = d.next();
  REQUIRE(p);
  CHECK(p->paste);
  CHECK(p->text == "pasted");

  d.push("\x1b");
  CHECK_FALSE(d.next());
  d.release_partial();
  auto esc = d.next();
  REQUIRE(esc);
  CHECK(esc->text == "\x1b");
  // An arrow key is not a marker prefix: it passes at once.
  d.push("\x1b[A");
  auto up = d.next();
  REQUIRE(up);
  CHECK(up->text == "\x1b[A");
}

TEST_CASE("pasted text is cleaned for the editor") {
  CHECK(clean_paste("a\r\nb\rc\n") == "a\nb\nc\n");
  CHECK(clean_paste("tab\there\x1b[31mred\x07") == "tab\there[31mred");
}

TEST_CASE("sanitize: escape sequences and control characters go, text stays") {
  CHECK(sanitize_text("plain\ttext\n") == "plain\ttext\n");
  CHECK(sanitize_text("\x1b[31mred\x1b[0m") == "red");
  CHECK(sanitize_text("a\rb\x08" "c\x7f") == "abc");
  CHECK(sanitize_text("\x1b]0;title\x07" "after") == "after");
  CHECK(sanitize_text("caf\xc3\xa9 \xc2\x9b") == "caf\xc3\xa9 ");
}

TEST_CASE("terminal_text: every kind of escape sequence and control goes whole, text around it stays") {
  using tether::cli::terminal_text;
  // OSC, terminated by BEL or by ST; OSC 52 would write the clipboard.
  CHECK(terminal_text("a\x1b]52;c;SGVsbG8=\x07" "b") == "ab");
  CHECK(terminal_text("a\x1b]0;title\x1b\\b") == "ab");
  // DCS, SOS, PM, APC: strings up to ST.
  CHECK(terminal_text("a\x1bP1$q\x1b\\b\x1bXsos\x1b\\c\x1b^pm\x1b\\d\x1b_apc\x1b\\e") == "abcde");
  // CSI with parameters and intermediates; other ESC sequences with intermediates.
  CHECK(terminal_text("a\x1b[2J\x1b[1;1H\x1b[?2004h\x1b[0 qb") == "ab");
  CHECK(terminal_text("a\x1b(B" "b\x1b#8" "c\x1b" "7d\x1b" "ce") == "abcde");
  // A CSI cut short by a control ends there; the text after it stays.
  CHECK(terminal_text("a\x1b[12\nb") == "a\nb");
  // Unterminated: the rest of the text goes (it is part of the sequence).
  CHECK(terminal_text("a\x1b]0;never ends") == "a");
  CHECK(terminal_text("a\x1b") == "a");
  // C1 controls, UTF-8 encoded and as raw bytes: CSI and OSC are parsed like their ESC forms.
  CHECK(terminal_text("a\xc2\x9b" "31mb\xc2\x9d" "0;t\x07" "c\xc2\x85" "d") == "abcd");
  CHECK(terminal_text("a\x9b" "2Jb\x9d" "0;t\xc2\x9c" "c\x90" "dcs\x1b\\d") == "abcd");
  // C0 controls but newline and tab, DEL; bidi embeddings, overrides and isolates.
  CHECK(terminal_text(std::string_view("a\x07\x08\x0c\r\x7f\x00" "b\n\tc", 11)) == "ab\n\tc");
  CHECK(terminal_text("a\xe2\x80\xae" "b\xe2\x81\xa6" "c\xe2\x80\xaa" "d") == "abcd");
  // Not UTF-8: shown as U+FFFD, but a stray byte 0x80..0x9f is a C1 control (a terminal may take
  // it for one); UTF-8 text is kept as it is (its continuation bytes 0x80..0x9f too).
  CHECK(terminal_text("a\xff" "b\xe2\x82") == "a\xef\xbf\xbd" "b\xef\xbf\xbd");
  CHECK(terminal_text("caf\xc3\xa9 \xe2\x86\x92 \xe2\x80\xa6 \xf0\x9f\x99\x82") == "caf\xc3\xa9 \xe2\x86\x92 \xe2\x80\xa6 \xf0\x9f\x99\x82");
  // Overlong forms and surrogates are not UTF-8: an overlong ESC or CSI does not pass as one.
  CHECK(terminal_text("a\xc0\x9b" "b") == "a\xef\xbf\xbd");
  CHECK(terminal_text("a\xc0\x9b" "b").find('\x1b') == std::string::npos);
  CHECK(terminal_text("a\xed\xa0\x80" "b").find("\xed") == std::string::npos);
}

TEST_CASE("json_for_terminal: the same JSON, with nothing a terminal acts on") {
  using tether::cli::json_for_terminal;
  CHECK(json_for_terminal(R"({"t":"a\u001b]0;x\u0007 \u00e9"})") == R"({"t":"a\u001b]0;x\u0007 \u00e9"})");
  CHECK(json_for_terminal("{\"t\":\"a\xc2\x9b" "2J\x7f\xe2\x80\xae\xc3\xa9\"}") == R"({"t":"a\u009b2J\u007f\u202e)" "\xc3\xa9\"}");
}

TEST_CASE("terminal_line: one line, whatever the agent put in") {
  using tether::cli::terminal_line;
  CHECK(terminal_line("title\n  permission: fake\tquestion\r\n") == "title   permission: fake question ");
  CHECK(terminal_line("\x1b[2Jtool\x1b]0;x\x07") == "tool");
}

TEST_CASE("the renderer keeps the agent's fields on their lines and strips what goes to a terminal") {
  Renderer r(plain());
  r.begin_turn();
  Update u;
  u.kind = Update::Kind::tool_call;
  u.tool.id = "t1";
  u.tool.title = "Edit\n  permission: fake\x1b]52;c;eA==\x07";
  u.tool.kind = "edit\x1b[2J";
  r.update(u);
  tether::acp::PermissionRequest p;
  p.tool = u.tool;
  p.options = {{"ok", "Allow\x1b]0;t\x07\nnext", "allow_once"}};
  r.permission(p);
  r.permission_choice("Allow\x1b]0;t\x07\nnext");
  std::string err;
  for (auto& w : r.take())
    if (w.fd == 2) err += w.text;
  CHECK(err ==
        "  tool: Edit   permission: fake (edit)\n"
        "  permission: Edit   permission: fake (edit)\n"
        "    [1/a] Allow next\n"
        "  choose 1-1 or a letter (Ctrl-C: cancel): Allow next\n");
}

TEST_CASE("a question's outcome ends its line, or has a line of its own when something came after the question") {
  Renderer r(plain());
  r.begin_turn();
  tether::acp::PermissionRequest p;
  p.tool.id = "t1";
  p.tool.title = "Touch";
  p.options = {{"y", "Yes", "allow_once"}};
  r.permission(p);
  Update u;
  u.kind = Update::Kind::agent_message;
  u.text = "streaming on";
  r.update(u);
  r.permission_choice("withdrawn");
  std::string all;
  for (auto& w : r.take()) all += w.text;
  CHECK(all.find("streaming onwithdrawn") == std::string::npos);
  CHECK(all.find("  permission: Touch: withdrawn\n") != std::string::npos);
}

TEST_CASE("permission keys: numbers always, first letters when unambiguous") {
  std::vector<PermissionOption> opts = {{"allow-once", "Allow", "allow_once"},
                                        {"allow-always", "Always allow", "allow_always"},
                                        {"reject-once", "Reject", "reject_once"},
                                        {"reject-always", "Always reject", "reject_always"}};
  auto letters = option_letters(opts);
  CHECK(letters == std::vector<char>{'a', 0, 'r', 0});
  CHECK(pick_option('1', letters, 4) == 0u);
  CHECK(pick_option('4', letters, 4) == 3u);
  CHECK_FALSE(pick_option('5', letters, 4));
  CHECK(pick_option('a', letters, 4) == 0u);
  CHECK(pick_option('R', letters, 4) == 2u);
  CHECK_FALSE(pick_option('x', letters, 4));
  CHECK_FALSE(pick_option('\r', letters, 4));
}

TEST_CASE("render: the answer streams to stdout as it comes") {
  Renderer r(plain());
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_message, "Hel"));
  r.update(chunk(Update::Kind::agent_message, "lo"));
  auto w = r.take();
  CHECK(all_text(w, 1) == "Hello");
  CHECK(all_text(w, 2).empty());
  r.end_turn(completed("end_turn"));
  CHECK(all_text(r.take()) == "\n");
}

TEST_CASE("render: a thought is set apart and never shares a line with the answer") {
  Renderer r(plain());
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_thought, "thinking hard\nabout it"));
  r.update(chunk(Update::Kind::agent_message, "Answer"));
  auto w = r.take();
  CHECK(all_text(w, 2) == "  thinking: thinking hard\n    about it\n");
  CHECK(all_text(w, 1) == "Answer");
}

TEST_CASE("render: tool calls show title, kind and status changes only") {
  Renderer r(plain());
  r.begin_turn();
  r.update(tool_update(Update::Kind::tool_call, "t1", "Count words", "in_progress", "think"));
  r.update(tool_update(Update::Kind::tool_call_update, "t1", std::nullopt, "in_progress"));
  r.update(tool_update(Update::Kind::tool_call_update, "t1", std::nullopt, std::nullopt));
  r.update(tool_update(Update::Kind::tool_call_update, "t1", std::nullopt, "completed"));
  auto text = all_text(r.take());
  CHECK(text == "  tool: Count words (think, in_progress)\n  tool: Count words: completed\n");
}

TEST_CASE("render: a note in the middle of an answer line starts on its own line (shared terminal)") {
  Renderer r(plain(true));
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_message, "partial"));
  r.update(tool_update(Update::Kind::tool_call, "t1", "Read", "pending", "read"));
  auto w = r.take();
  REQUIRE(w.size() == 2);
  CHECK(w[0].fd == 1);
  CHECK(w[0].text == "partial\n");
  CHECK(w[1].fd == 2);
}

TEST_CASE("render: with separate streams, stdout carries only the answer") {
  Renderer r(plain(false));
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_message, "partial"));
  r.update(tool_update(Update::Kind::tool_call, "t1", "Read", "pending", "read"));
  r.update(chunk(Update::Kind::agent_message, "more"));
  r.end_turn(completed("end_turn"));
  auto w = r.take();
  // Text that resumes after a tool call is a new message of the agent's: a new paragraph.
  CHECK(all_text(w, 1) == "partial\n\nmore\n");
}

TEST_CASE("render: plans are compact and not repeated; usage comes once at the end") {
  Renderer r(plain());
  r.begin_turn();
  Update plan;
  plan.kind = Update::Kind::plan;
  plan.plan = {{"Read", "high", "completed"}, {"Answer", "medium", "in_progress"}};
  r.update(plan);
  r.update(plan);
  Update usage;
  usage.kind = Update::Kind::usage;
  usage.usage.used = 1004;
  usage.usage.size = 200000;
  r.update(usage);
  r.update(chunk(Update::Kind::agent_message, "ok"));
  r.end_turn(completed("end_turn"));
  auto text = all_text(r.take());
  CHECK(text == "  plan: [x] Read; [~] Answer\nok\n  usage: 1,004 of 200,000 tokens (0.5%)\n");
}

TEST_CASE("render: details off shows only the answer") {
  RenderStyle s = plain();
  s.details = false;
  Renderer r(s);
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_thought, "hmm"));
  r.update(tool_update(Update::Kind::tool_call, "t1", "Read", "pending"));
  r.update(chunk(Update::Kind::agent_message, "ok"));
  r.end_turn(completed("end_turn"));
  CHECK(all_text(r.take()) == "ok\n");
}

TEST_CASE("render: permission menu, then the choice on the same line") {
  Renderer r(plain());
  r.begin_turn();
  PermissionRequest p;
  p.token = 1;
  p.tool.id = "e1";
  p.tool.title = "Edit a file";
  p.tool.kind = "edit";
  p.options = {{"allow-once", "Allow", "allow_once"}, {"reject-once", "Reject", "reject_once"}};
  r.permission(p);
  auto text = all_text(r.take());
  CHECK(text.find("permission: Edit a file (edit)\n") != std::string::npos);
  CHECK(text.find("[1/a] Allow  [2/r] Reject") != std::string::npos);
  CHECK(text.back() == ' ');  // waits for the key on the same line
  r.permission_choice("Allow");
  CHECK(all_text(r.take()) == "Allow\n");

  p.answered = true;
  p.chosen = p.options[1];
  r.permission(p);
  CHECK(all_text(r.take()) == "  permission: Edit a file (edit): Reject\n");
}

TEST_CASE("render: cancel, unusual stop reasons and errors") {
  {
    Renderer r(plain());
    r.begin_turn();
    r.update(chunk(Update::Kind::agent_message, "half an ans"));
    r.cancelled();
    r.end_turn(completed("cancelled"));
    auto text = all_text(r.take());
    CHECK(text == "half an ans\n^C (cancelled)\n");
  }
  {
    Renderer r(plain());
    r.begin_turn();
    r.end_turn(completed("refusal"));
    CHECK(all_text(r.take()).find("refused") != std::string::npos);
  }
  {
    Renderer r(plain());
    r.begin_turn();
    TurnEvent e;
    e.kind = TurnEvent::Kind::failed;
    e.error = {{"code", "bridge_exited"}, {"message", "the bridge exited with status 3"}, {"stderrTail", "boom\nlast words\n"}};
    r.end_turn(e);
    auto text = all_text(r.take(), 2);
    CHECK(text.find("tether: the bridge exited with status 3\n") == 0);
    CHECK(text.find("last words") != std::string::npos);
  }
  {
    // A cancel that escalated: only the escalation is told, the ^C line already said the rest.
    Renderer r(plain());
    r.begin_turn();
    r.cancelled();
    TurnEvent e;
    e.kind = TurnEvent::Kind::failed;
    e.cancelled = tether::acp::CancelCause::interrupt;
    e.error = {{"code", "cancelled"},
               {"message", "the turn was cancelled; the agent did not answer session/cancel within 2 s, so the bridge was restarted"}};
    r.end_turn(e);
    CHECK(all_text(r.take()) ==
          "^C (cancelled)\ntether: the agent did not answer session/cancel within 2 s, so the bridge was restarted\n");
  }
}

TEST_CASE("render: colour only when asked, and never across a line end") {
  RenderStyle s = plain();
  s.color = true;
  Renderer r(s);
  r.note("two\nlines");
  auto text = all_text(r.take());
  CHECK(text == "\x1b[33mtether: two\x1b[0m\n\x1b[33mlines\x1b[0m\n");
  Renderer p(plain());
  p.note("x");
  CHECK(all_text(p.take()) == "tether: x\n");
}

TEST_CASE("render: the agent's escape sequences do not reach the terminal") {
  Renderer r(plain());
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_message, "\x1b]0;pwned\x07hi\x1b[2J"));
  CHECK(all_text(r.take()) == "hi");
}

TEST_CASE("one number format: digits grouped by thousands") {
  CHECK(number_text(0) == "0");
  CHECK(number_text(999) == "999");
  CHECK(number_text(1000) == "1,000");
  CHECK(number_text(1028) == "1,028");
  CHECK(number_text(1234567) == "1,234,567");
  CHECK(number_text(-4321) == "-4,321");
  tether::acp::Usage u;
  u.used = 1028;
  u.size = 200000;
  CHECK(usage_text(u) == "1,028 of 200,000 tokens (0.5%)");
}

TEST_CASE("after the cancel mark nothing of the turn is drawn; the answer's characters are counted") {
  Renderer r(plain());
  r.begin_turn();
  Update u;
  u.kind = Update::Kind::agent_message;
  u.text = "before ";
  r.update(u);
  r.cancelled();
  u.text = "after é";
  r.update(u);
  Update t;
  t.kind = Update::Kind::tool_call;
  t.tool.id = "t1";
  t.tool.title = "Late tool";
  r.update(t);
  TurnEvent end;
  end.kind = TurnEvent::Kind::completed;
  end.stop_reason = "cancelled";
  r.end_turn(end);
  std::string all;
  for (auto& w : r.take()) all += w.text;
  CHECK(all.find("after é") == std::string::npos);
  CHECK(all.find("Late tool") == std::string::npos);
  CHECK(all.find("(7 more characters of the answer came after the cancel: not shown)") != std::string::npos);
}

TEST_CASE("script mode: blocks of stdout (answers, command output) are one blank line apart") {
  RenderStyle s = plain(false);
  s.separate_blocks = true;
  Renderer r(s);
  TurnEvent end;
  end.kind = TurnEvent::Kind::completed;
  end.stop_reason = "end_turn";
  Update u;
  u.kind = Update::Kind::agent_message;
  for (const char* text : {"first", "second\n"}) {
    r.begin_turn();
    u.text = text;
    r.update(u);
    r.end_turn(end);
  }
  r.begin_turn();  // a turn with no answer adds no blank line
  r.end_turn(end);
  r.info("listing");
  std::string out;
  for (auto& w : r.take())
    if (w.fd == 1) out += w.text;
  CHECK(out == "first\n\nsecond\n\nlisting\n");
}

TEST_CASE("/help lists an agent command named like one of talk's with the // that reaches it") {
  std::vector<Command> cmds = {{"exit", "Exit at once", "CODE"}, {"chunks", "Answer in N chunks", "N"}};
  std::string h = help_text(cmds);
  CHECK(h.find("  //exit CODE") != std::string::npos);
  CHECK(h.find("\n  /exit CODE") == std::string::npos);
  CHECK(h.find("  /chunks N") != std::string::npos);
  CHECK(h.find("type the // to reach the agent's") != std::string::npos);
  CHECK(help_text({cmds[1]}).find("type the //") == std::string::npos);
  CHECK(parse_line("//exit 3", cmds).kind == LineKind::prompt);
  CHECK(parse_line("//exit 3", cmds).text == "/exit 3");
}

// The cancel mark hides the rest of OUR cancelled turn only (review of issue 16). Through a tether
// server another client's turn is drawn while ours waits in the queue: a Ctrl-C on ours must not
// hide it, and once our cancelled turn has ended, what comes next is drawn again.
TEST_CASE("the cancel mark hides our cancelled turn only: another client's turn is drawn, and it ends with our turn") {
  Renderer r(plain());
  r.begin_turn();
  r.update(chunk(Update::Kind::agent_message, "ours before "));
  r.cancelled();
  r.begin_section();  // another client's prompt shown meanwhile: our cancel stays in force
  r.update(chunk(Update::Kind::agent_message, "other answer"), Renderer::Whose::other_client);
  r.update(chunk(Update::Kind::agent_message, "ours late"));
  r.end_turn(completed("cancelled"));
  std::string all = all_text(r.take());
  CHECK(all.find("other answer") != std::string::npos);
  CHECK(all.find("ours late") == std::string::npos);
  // Only our hidden characters are counted ("ours late": 9), not the other client's.
  CHECK(all.find("(9 more characters of the answer came after the cancel: not shown)") != std::string::npos);

  // Our cancelled turn is over: later updates without a begin_turn() are drawn.
  r.update(chunk(Update::Kind::agent_message, "the other client's answer"));
  r.finish_lines();
  CHECK(all_text(r.take()).find("the other client's answer") != std::string::npos);
}
