// The demo agent's turns (see agent.h): session/prompt in named steps (the trigger words that end
// the turn at once; the echo and summary; the work it shows (thought, plan, tool call); the tools
// it uses (edit after permission, read, sleep); the answer streamed in pieces), and the tools
// themselves, which ask the client through requests and wait for the answers.
#include "acp/demo/agent.h"

#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>

namespace tether::acp::demo {
namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

namespace {
// The decoded size of base64 text (padding counted off).
std::size_t base64_size(const std::string& b64) {
  std::size_t pad = 0;
  for (auto it = b64.rbegin(); it != b64.rend() && *it == '=' && pad < 2; ++it) ++pad;
  return b64.size() / 4 * 3 - (b64.size() % 4 == 0 ? pad : 0);
}
}  // namespace

std::string DemoAgent::prompt_text(const json& prompt) {
  std::string text;
  if (!prompt.is_array()) return text;
  for (const auto& block : prompt) {
    if (!block.is_object()) continue;
    std::string type = block.value("type", "");
    std::string part;
    if (type == "text") part = block.value("text", "");
    else if (type == "resource_link") part = block.value("uri", "");
    else if (type == "resource" && block.contains("resource") && block["resource"].is_object())
      part = block["resource"].value("text", "");
    else if (type == "image" || type == "audio")  // what it got, not what it shows
      part = "[" + type + " " + block.value("mimeType", "?") + ", " + std::to_string(base64_size(block.value("data", ""))) +
             " bytes]";
    if (part.empty()) continue;
    if (!text.empty()) text += ' ';
    text += part;
  }
  return text;
}

// True once the client cancelled the turn or closed our stdin (it will not read the rest).
bool DemoAgent::cancelled(Session& s) {
  poll_input(0);
  if (eof_) s.cancelled = true;
  return s.cancelled;
}

void DemoAgent::finish(const json& id, Session& s, const std::string& answer, std::string stop) {
  if (s.cancelled) stop = "cancelled";
  remember(s, s.prompt, answer);
  respond(id, {{"stopReason", stop}});
}
void DemoAgent::on_prompt(const json& id, const json& params) {
  std::string sid = params.value("sessionId", "");
  auto it = sessions_.find(sid);
  if (it == sessions_.end()) {
    respond_error(id, -32002, "Resource not found: session " + sid);
    return;
  }
  Session& s = it->second;
  s.cancelled = false;
  std::string text = prompt_text(params.value("prompt", json::array()));
  Triggers t = parse_triggers(text);
  ++s.turns;
  s.prompt = text;

  if (t.exit_code) exit_as_asked(*t.exit_code);
  if (t.error) {
    respond_error(id, -32603, "Internal error: the prompt asked for one (/error)");
    return;
  }
  if (t.flood) {
    flood(id, s, *t.flood);
    return;
  }
  if (t.big) {
    big_answer(id, s, t);
    return;
  }

  std::string answer = echo_answer(s, t);
  bool quiet = t.chunks.has_value();
  if (!quiet) show_work(s, words_of(t.echo).size());
  std::string notes = use_tools(s, t);  // what the tools did, told at the end of the answer
  if (s.cancelled || cancelled(s)) {
    finish(id, s, "", "cancelled");
    return;
  }
  if (!notes.empty()) answer += "\n" + notes;
  if (!quiet) {
    update(sid, {{"sessionUpdate", "plan"},
                 {"entries", {{{"content", "Read the prompt"}, {"priority", "high"}, {"status", "completed"}},
                              {{"content", "Count its words"}, {"priority", "medium"}, {"status", "completed"}},
                              {{"content", "Answer"}, {"priority", "medium"}, {"status", "in_progress"}}}}});
  }
  stream_answer(s, t, answer);
  if (!quiet && !s.cancelled) {
    update(sid, {{"sessionUpdate", "usage_update"}, {"used", 1000 + 4 * s.turns}, {"size", 200000}});
  }
  finish(id, s, answer, t.stop);
}

// /exit CODE: at once, without answering.
void DemoAgent::exit_as_asked(long long code) {
  std::string msg = "demo-agent: exiting with status " + std::to_string(code) + " as asked (/exit)\n";
  [[maybe_unused]] auto n = ::write(2, msg.data(), msg.size());
  flush();
  ::_exit(static_cast<int>(code & 255));
}

// /big BYTES: one chunk of that many digits.
void DemoAgent::big_answer(const json& id, Session& s, const Triggers& t) {
  std::string answer;
  answer.reserve(static_cast<std::size_t>(*t.big));
  for (long long i = 0; i < *t.big; ++i) answer += static_cast<char>('0' + i % 10);
  chunk(s.id, answer);
  finish(id, s, answer, t.stop);
}

// The answer to an ordinary prompt: the echo (in capitals with the shout model) and a summary.
std::string DemoAgent::echo_answer(const Session& s, const Triggers& t) {
  auto words = words_of(t.echo);
  const std::size_t chars = utf8_length(t.echo);
  std::string echo = t.echo;
  if (s.model == "shout")
    for (char& c : echo) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return "Echo: " + echo + "\nSummary: " + std::to_string(words.size()) + " word" + (words.size() == 1 ? "" : "s") +
         ", " + std::to_string(chars) + " character" + (chars == 1 ? "" : "s") + "; turn " + std::to_string(s.turns) +
         " of this session.";
}

// A thought, a plan and a tool call before the answer (not with /chunks).
void DemoAgent::show_work(const Session& s, std::size_t words) {
  const std::string& sid = s.id;
  chunk(sid, "Reading the prompt and counting its words.", "agent_thought_chunk");
  update(sid, {{"sessionUpdate", "plan"},
               {"entries", {{{"content", "Read the prompt"}, {"priority", "high"}, {"status", "completed"}},
                            {{"content", "Count its words"}, {"priority", "medium"}, {"status", "in_progress"}},
                            {{"content", "Answer"}, {"priority", "medium"}, {"status", "pending"}}}}});
  std::string call = "count-" + std::to_string(s.turns);
  update(sid, {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", "Count words"}, {"kind", "think"},
               {"status", "in_progress"}});
  update(sid, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", "completed"},
               {"content", {{{"type", "content"}, {"content", {{"type", "text"}, {"text", std::to_string(words) + " words"}}}}}}});
}

// The edit, the read and the sleep the prompt asks for, each only while the turn is not cancelled.
// Returns what they did, as sentences for the end of the answer.
std::string DemoAgent::use_tools(Session& s, const Triggers& t) {
  std::string notes;
  if (t.edit && !cancelled(s)) {
    if (s.mode == "read-only") notes += "Read-only mode: no file was edited.";
    else notes += edit(s, t);
  }
  if (!t.read_path.empty() && !cancelled(s)) notes += read(s, t.read_path);
  if (t.sleep_ms && !cancelled(s)) {
    auto until = Clock::now() + std::chrono::milliseconds(*t.sleep_ms);
    while (!s.cancelled && !eof_) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
      if (left <= 0) break;
      poll_input(static_cast<int>(left));
    }
  }
  return notes;
}

// The answer, streamed: word by word, or in exactly N pieces with /chunks N (cut on whole
// characters). /crash and /hang strike after the first piece.
void DemoAgent::stream_answer(Session& s, const Triggers& t, std::string_view answer) {
  const bool quiet = t.chunks.has_value();
  std::vector<std::string_view> pieces;
  std::string_view rest(answer);
  if (t.chunks) {
    std::size_t n = static_cast<std::size_t>(std::max<long long>(1, *t.chunks));
    std::size_t pos = 0;
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t end = i + 1 == n ? rest.size() : std::min(rest.size(), (rest.size() * (i + 1)) / n);
      while (end < rest.size() && (static_cast<unsigned char>(rest[end]) & 0xC0) == 0x80) ++end;  // whole characters
      if (end < pos) end = pos;
      pieces.push_back(rest.substr(pos, end - pos));
      pos = end;
    }
  } else {
    std::size_t pos = 0;
    while (pos < rest.size()) {
      std::size_t end = rest.find_first_of(" \n", pos);
      end = end == std::string_view::npos ? rest.size() : end + 1;
      pieces.push_back(rest.substr(pos, end - pos));
      pos = end;
    }
  }
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    chunk(s.id, pieces[i]);
    if (i == 0 && t.crash) crash();
    if (i == 0 && t.hang) hang();
    bool look = !quiet || i % kFloodCheckEvery == kFloodCheckEvery - 1;
    if (look && cancelled(s)) break;
  }
}

void DemoAgent::flood(const json& id, Session& s, long long n) {
  std::string line;
  line += R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
  append_escaped(line, s.id);
  line += R"(","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"w "}}}})";
  line += '\n';
  long long sent = 0;
  for (; sent < n; ++sent) {
    out_ += line;
    if (out_.size() >= kFlushAt) flush();
    if (sent % kFloodCheckEvery == kFloodCheckEvery - 1 && cancelled(s)) break;
  }
  finish(id, s, "(" + std::to_string(sent) + " flood chunks)", "end_turn");
}

std::string DemoAgent::edit(Session& s, const Triggers& t) {
  std::string call = "edit-" + std::to_string(s.turns);
  std::string title = t.write_path.empty() ? "Edit a file" : "Write " + t.write_path;
  json tool = {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", title}, {"kind", "edit"}, {"status", "pending"}};
  if (!t.write_path.empty()) tool["locations"] = {{{"path", t.write_path}}};
  update(s.id, tool);
  auto r = request("session/request_permission",
                   {{"sessionId", s.id},
                    {"toolCall", {{"toolCallId", call}, {"title", title}, {"kind", "edit"}}},
                    {"options", {{{"optionId", "allow-once"}, {"name", "Allow"}, {"kind", "allow_once"}},
                                 {{"optionId", "allow-always"}, {"name", "Always allow"}, {"kind", "allow_always"}},
                                 {{"optionId", "reject-once"}, {"name", "Reject"}, {"kind", "reject_once"}},
                                 {{"optionId", "reject-always"}, {"name", "Always reject"}, {"kind", "reject_always"}}}}});
  std::string chosen;
  if (r && r->contains("result")) {
    const json& outcome = (*r)["result"].value("outcome", json::object());
    if (outcome.value("outcome", "") == "selected") chosen = outcome.value("optionId", "");
  }
  bool allowed = chosen == "allow-once" || chosen == "allow-always";
  std::string note;
  if (allowed && !t.write_path.empty()) {
    if (!fs_write_) {
      note = "Permission granted, but the client does not offer file writes (try --allow-fs).";
      allowed = false;
    } else {
      auto w = request("fs/write_text_file", {{"sessionId", s.id}, {"path", t.write_path}, {"content", t.echo + "\n"}});
      if (w && w->contains("result")) {
        note = "Permission granted: wrote " + t.write_path + ".";
      } else {
        allowed = false;
        note = "Permission granted, but writing " + t.write_path + " failed: " +
               (w && w->contains("error") ? (*w)["error"].value("message", "error") : std::string("no answer"));
      }
    }
  } else if (allowed) {
    note = "Permission granted: the edit was applied (nothing was written: this is a demo).";
  } else {
    note = chosen.empty() ? "Permission was not given: the edit was skipped." : "Permission denied: the edit was skipped.";
  }
  update(s.id, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", allowed ? "completed" : "failed"}});
  return note;
}

std::string DemoAgent::read(Session& s, const std::string& path) {
  if (!fs_read_) return "Cannot read " + path + ": the client does not offer file reads (try --allow-fs).";
  std::string call = "read-" + std::to_string(s.turns);
  update(s.id, {{"sessionUpdate", "tool_call"}, {"toolCallId", call}, {"title", "Read " + path}, {"kind", "read"},
                {"status", "in_progress"}, {"locations", {{{"path", path}}}}});
  auto r = request("fs/read_text_file", {{"sessionId", s.id}, {"path", path}});
  bool ok = r && r->contains("result");
  update(s.id, {{"sessionUpdate", "tool_call_update"}, {"toolCallId", call}, {"status", ok ? "completed" : "failed"}});
  if (ok) return "Read " + path + ": " + (*r)["result"].value("content", "");
  return "Could not read " + path + ": " + (r && r->contains("error") ? (*r)["error"].value("message", "error") : "no answer");
}

void DemoAgent::crash() {
  flush();
  static const char msg[] = "demo-agent: crashing on purpose (/crash)\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
  ::prctl(PR_SET_DUMPABLE, 0);  // no core file for a crash on purpose
  ::signal(SIGSEGV, SIG_DFL);
  ::raise(SIGSEGV);
  ::_exit(139);
}

void DemoAgent::hang() {
  flush();
  static const char msg[] = "demo-agent: hanging on purpose (/hang)\n";
  [[maybe_unused]] auto n = ::write(2, msg, sizeof msg - 1);
  char buf[kReadChunk];
  for (;;) {
    ssize_t r = ::read(in_, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) ::_exit(0);
  }
}

}  // namespace tether::acp::demo
