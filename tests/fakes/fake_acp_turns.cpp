// Every mode's session/prompt for the fake ACP agent (the modes are listed in fake_acp_agent.cpp):
// on_prompt for the one-behaviour modes, then the three modes that play a whole scene: "server"
// (a `tether serve` seen by a --connect client), "hostile" (terminal escapes everywhere) and "batch"
// (behaviours picked by words in each prompt, so one batch can mix them).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <thread>

#include "fake_acp_agent.h"

namespace fake_acp {

namespace {

// Waits for session/cancel; records what arrives meanwhile.
void await_cancel() {
  for (;;) {
    auto m = next();
    if (!m) ::_exit(0);
    std::string method = m->value("method", "");
    if (mode == "record" || mode == "cancel-end-turn") append_file(arg, method.empty() ? "response" : method);
    if (method == "session/cancel") return;
  }
}

// Asks permission for the session as another client's turn would; the outcome, as text.
std::string ask_permission(bool withdraw) {
  long rid = next_id++;
  send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", "session/request_permission"},
        {"params", {{"sessionId", session_id}, {"toolCall", {{"toolCallId", "b1"}, {"title", "B edits"}, {"kind", "edit"}}},
                    {"options", {{{"optionId", "yes"}, {"name", "Allow"}, {"kind", "allow_once"}},
                                 {{"optionId", "no"}, {"name", "Reject"}, {"kind", "reject_once"}}}}}}});
  if (withdraw) send(notification("$/cancel_request", {{"requestId", rid}}));
  std::vector<json> others;
  json r = await_response(rid, others);
  const json& o = r.contains("result") ? r["result"].value("outcome", json::object()) : json::object();
  return o.value("outcome", "") == "selected" ? "selected:" + o.value("optionId", "") : "cancelled";
}

}  // namespace

void on_server_prompt(const json& id, const json& params) {
  // As tether serve does when it sends a prompt on: what follows is the sender's turn.
  send(notification("_tether/turn_started", {{"sessionId", params.value("sessionId", "")}}));
  std::string text = prompt_text(params);
  std::string word = text.substr(0, text.find(' '));
  if (word == "fail") {
    send({{"jsonrpc", "2.0"}, {"id", id},
          {"error", {{"code", -32090}, {"message", "the bridge exited"},
                     {"data", {{"code", "bridge_exited"}, {"message", "the bridge was killed by SIGSEGV"}, {"signal", "SIGSEGV"}}}}}});
  } else if (word == "other") {
    send(chunk("mine"));
    send(result(id, {{"stopReason", "end_turn"}}));
    send(chunk("LATE "));  // our own turn's late chunk: before another client's prompt, not shown
    send(update({{"sessionUpdate", "user_message_chunk"}, {"content", {{"type", "text"}, {"text", "from B"}}}}));
    send(chunk("answer B "));
    send(chunk("B got " + ask_permission(false)));
    send(notification("_tether/bridge_restarted", {{"generation", 2},
                                                   {"cause", "the bridge was killed by SIGSEGV; its last stderr line: boom"},
                                                   {"stderrLine", "boom"},
                                                   {"sessionsRestored", false}}));
    send(notification("_tether/bridge_gone", {{"message", "tether gave up on the bridge after 3 restarts"}}));
  } else if (word == "withdraw") {
    send(result(id, {{"stopReason", "end_turn"}}));
    send(update({{"sessionUpdate", "user_message_chunk"}, {"content", {{"type", "text"}, {"text", "from B"}}}}));
    send(chunk("B got " + ask_permission(true)));
  } else {
    send(chunk("ok " + params.value("sessionId", "")));
    send(result(id, {{"stopReason", "end_turn"}}));
  }
}

void on_hostile_prompt(const json& id, const json& params) {
  std::string text = prompt_text(params);
  std::string word = text.substr(0, text.find(' '));
  std::string err = "hostile stderr in the turn " + kHostileRaw + "\n";
  if (word == "fail") {
    [[maybe_unused]] auto n = ::write(2, err.data(), err.size());
    json e = error(id, -32603, evil("Internal error"));
    e["error"]["data"] = {{"details", evil("details")}};
    send(e);
    return;
  }
  if (word == "crash") {
    [[maybe_unused]] auto n = ::write(2, err.data(), err.size());
    ::_exit(3);
  }
  write_all("not json " + kHostileRaw + "\n");
  send(update({{"sessionUpdate", "agent_thought_chunk"}, {"content", {{"type", "text"}, {"text", evil("thought")}}}}));
  send(update({{"sessionUpdate", "plan"},
               {"entries", {{{"content", evil("step")}, {"priority", "high"}, {"status", "pending"}}}}}));
  send(update({{"sessionUpdate", "tool_call"}, {"toolCallId", "t1"}, {"title", evil("tool")}, {"kind", evil("kind")},
               {"status", "pending"}}));
  send(update({{"sessionUpdate", "tool_call_update"}, {"toolCallId", "t1"}, {"status", evil("status")}}));
  send(update({{"sessionUpdate", "current_mode_update"}, {"currentModeId", evil("newmode")}}));
  long rid = next_id++;
  send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", "session/request_permission"},
        {"params", {{"sessionId", session_id},
                    {"toolCall", {{"toolCallId", "t2"}, {"title", evil("ask")}, {"kind", evil("kind")}}},
                    {"options", {{{"optionId", "yes"}, {"name", evil("Allow")}, {"kind", "allow_once"}},
                                 {{"optionId", "no"}, {"name", evil("Reject")}, {"kind", "reject_once"}}}}}}});
  std::vector<json> others;
  json r = await_response(rid, others);
  send(chunk(evil("answer") + "\n"));
  send(chunk(std::string("permission ") + (r.contains("result") ? "answered" : "failed") + "\n"));
  send(result(id, {{"stopReason", "end_turn"}}));
}

void on_prompt(const json& id, const json& params) {
  static int turn = 0;
  ++turn;
  if (mode == "count") {
    int n = std::atoi(arg.c_str());
    std::string out;
    for (int i = 1; i <= n; ++i) out += line(chunk(std::to_string(i) + " "));
    out += line(result(id, {{"stopReason", "end_turn"}}));
    write_all(out);
  } else if (mode == "oversize") {
    send(chunk("before "));
    send(chunk(std::string(std::strtoul(arg.c_str(), nullptr, 10), 'y')));
    send(chunk("after"));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "crash-once" || mode == "no-load") {
    if (!exists(arg)) {
      append_file(arg, "crashed");
      send(chunk("partial "));
      std::fputs("fake: crashing once\n", stderr);
      ::_exit(3);
    }
    send(chunk("recovered"));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "crash-always") {
    send(chunk("partial "));
    std::fprintf(stderr, "fake: starting the turn\nfake: boom %d\n", static_cast<int>(::getpid()));
    ::_exit(3);
  } else if (mode == "hang") {
    send(chunk("thinking "));
    while (next()) {
    }
    ::_exit(0);
  } else if (mode == "record" || mode == "cancel-end-turn") {
    send(chunk("ready\n"));
    await_cancel();
    send(chunk("stopped "));  // a trailing update after the cancel, as the spec allows
    send(result(id, {{"stopReason", mode == "record" ? "cancelled" : "end_turn"}}));
  } else if (mode == "late-updates") {
    if (!arg.empty()) ::poll(nullptr, 0, std::atoi(arg.c_str()));  // a slow agent
    std::string out = line(chunk("answer-" + std::to_string(turn)));
    out += line(result(id, {{"stopReason", "end_turn"}}));
    out += line(chunk("LATE-" + std::to_string(turn)));
    out += line(update({{"sessionUpdate", "tool_call"}, {"toolCallId", "late"}, {"title", "Late"}, {"status", "completed"}}));
    out += line(update({{"sessionUpdate", "session_info_update"}, {"title", "late title " + std::to_string(turn)}}));
    write_all(out);
  } else if (mode == "permission" || mode == "withdraw") {
    json options = json::array();
    std::stringstream kinds(mode == "withdraw" ? std::string("allow_once,reject_once") : arg);
    for (std::string k; std::getline(kinds, k, ',');)
      if (!k.empty()) options.push_back({{"optionId", "opt-" + k}, {"name", k}, {"kind", k}});
    long rid = next_id++;
    send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", "session/request_permission"},
          {"params", {{"sessionId", session_id}, {"toolCall", {{"toolCallId", "t1"}, {"title", "Touch a file"}, {"kind", "edit"}}},
                      {"options", options}}}});
    // withdraw mid-answer / turn-ends: the answer streams on while the question is open, then the
    // question is withdrawn, or the turn ends with it unanswered (an agent that stopped waiting).
    if (mode == "withdraw" && !arg.empty()) send(chunk("partial answer"));
    if (mode == "withdraw" && arg == "turn-ends") {
      send(result(id, {{"stopReason", "end_turn"}}));
      std::vector<json> others;
      await_response(rid, others);  // the client's cancelled answer, read and dropped
      return;
    }
    if (mode == "withdraw") {
      send({{"jsonrpc", "2.0"}, {"method", "$/cancel_request"}, {"params", {{"requestId", rid}}}});
    }
    std::vector<json> others;
    json r = await_response(rid, others);
    if (mode == "withdraw" && !arg.empty()) {
      send(chunk(" and the rest\n"));
      send(result(id, {{"stopReason", "end_turn"}}));
      return;
    }
    std::string text = "cancelled";
    if (r.contains("result")) {
      const json& o = r["result"]["outcome"];
      if (o.value("outcome", "") == "selected") text = "selected:" + o.value("optionId", "");
    } else {
      text = "error:" + std::to_string(r["error"].value("code", 0));
    }
    send(chunk(text));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "unknown-requests") {
    std::string text;
    std::vector<json> others;
    for (const char* method : {"terminal/create", "fs/read_text_file"}) {
      long rid = next_id++;
      send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", method},
            {"params", {{"sessionId", session_id}, {"command", "ls"}, {"path", "/etc/hostname"}}}});
      json r = await_response(rid, others);
      text += std::string(method) + ":" + (r.contains("error") ? std::to_string(r["error"].value("code", 0)) : "ok") + " ";
    }
    send(chunk(text));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "fs-race") {
    std::string race = session_cwd + "/race", spare = session_cwd + "/spare";
    std::atomic<bool> stop{false};
    std::thread swapper([&] {
      while (!stop.load()) ::renameat2(AT_FDCWD, race.c_str(), AT_FDCWD, spare.c_str(), RENAME_EXCHANGE);
    });
    int tries = 0, reads = 0, leaks = 0, writes = 0;
    std::vector<json> others;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (tries < 3000 && std::chrono::steady_clock::now() < until) {
      ++tries;
      long rid = next_id++;
      send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", "fs/read_text_file"},
            {"params", {{"sessionId", session_id}, {"path", race + "/secret.txt"}}}});
      json r = await_response(rid, others);
      if (r.contains("result")) ++(r["result"].value("content", "") == "secret" ? leaks : reads);
      rid = next_id++;
      send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", "fs/write_text_file"},
            {"params", {{"sessionId", session_id}, {"path", race + "/planted.txt"}, {"content", "planted"}}}});
      writes += await_response(rid, others).contains("result");
    }
    stop = true;
    swapper.join();
    send(chunk("tries=" + std::to_string(tries) + " reads=" + std::to_string(reads) + " leaks=" + std::to_string(leaks) +
               " writes=" + std::to_string(writes)));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "flood") {
    std::string c = line(chunk("x "));
    std::string block;
    for (int i = 0; i < 256; ++i) block += c;
    for (;;) {
      write_all(block);
      if (input_ready()) {
        auto m = next();
        if (!m) ::_exit(0);
        if (m->value("method", "") == "session/cancel") break;
      }
    }
    send(result(id, {{"stopReason", "cancelled"}}));
  } else if (mode == "sessions") {
    send(chunk("ok " + params.value("sessionId", "")));
    send(result(id, {{"stopReason", "end_turn"}}));
  } else if (mode == "server") {
    on_server_prompt(id, params);
  } else {
    send(chunk("ok"));
    send(result(id, {{"stopReason", "end_turn"}}));
  }
}

namespace {

// "batch" mode: the words of a prompt (all its text blocks) pick what the turn does.
std::optional<std::string> word_arg(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w.rfind(word, 0) == 0) return w.substr(word.size());
  return std::nullopt;
}

bool has_word(const std::string& text, const std::string& word) {
  std::istringstream in(text);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

// True the first time `key` is seen by any agent process of this test ($FAKE_STATE_DIR/KEY marks it).
bool first_time(const std::string& key) {
  const char* dir = std::getenv("FAKE_STATE_DIR");
  std::string path = std::string(dir ? dir : "/tmp") + "/" + key;
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (fd < 0) return false;
  ::fsync(fd);
  ::close(fd);
  return true;
}

}  // namespace

void on_batch_prompt(const json& id, const json& params) {
  session_id = params.value("sessionId", session_id);  // the chunks go to the prompt's session
  std::string text;
  for (const auto& block : params.value("prompt", json::array()))
    if (block.value("type", "") == "text") text += block.value("text", "");
  if (const char* log = std::getenv("FAKE_LOG")) {
    if (FILE* f = std::fopen(log, "a")) {
      std::fprintf(f, "%d %s\n", static_cast<int>(::getpid()), text.c_str());
      std::fclose(f);
    }
  }
  if (has_word(text, "crash")) ::kill(::getpid(), SIGKILL);
  if (auto key = word_arg(text, "crash-once:"); key && first_time("crash-" + *key)) ::kill(::getpid(), SIGKILL);
  // Deaf: reads on but never answers, not even a session/cancel; exits at stdin's end (at once
  // when the bridge is stopped).
  if (auto key = word_arg(text, "deaf-once:"); key && first_time("deaf-" + *key)) {
    char buf[4096];
    while (::read(STDIN_FILENO, buf, sizeof buf) > 0) {
    }
    ::_exit(0);
  }
  bool cancelled = false;
  if (auto key = word_arg(text, "hang-once:"); key && first_time("hang-" + *key)) cancelled = wait_for_cancel(-1);
  if (auto ms = word_arg(text, "sleep:"); ms && !cancelled) cancelled = wait_for_cancel(std::stol(*ms));
  if (cancelled) {
    send(result(id, {{"stopReason", "cancelled"}}));
    return;
  }
  if (has_word(text, "error")) {
    send(error(id, -32603, "asked to fail"));
    return;
  }
  std::string answer = "echo: " + text;
  std::size_t half = answer.size() / 2;
  while (half > 0 && (static_cast<unsigned char>(answer[half]) & 0xC0) == 0x80) --half;  // not inside a character
  send(chunk(answer.substr(0, half)));
  if (auto n = word_arg(text, "oversize:")) send(chunk(std::string(std::stoul(*n), 'y')));
  send(chunk(answer.substr(half)));
  send(result(id, {{"stopReason", has_word(text, "refuse") ? "refusal" : "end_turn"}}));
}

}  // namespace fake_acp
