// A fake ACP agent for the acp tests: one program, one misbehaviour per mode (argv[1]), so that
// every path of the client is driven by a real process over real pipes.
//
//   count N            answers each prompt with N chunks "1 ", "2 ", ... then end_turn
//   crash-once FILE    the first process (FILE absent) creates FILE, sends one chunk, dies with
//                      status 3; later processes answer "recovered"
//   crash-always FILE  appends its pid to FILE; on a prompt says "fake: boom N" on stderr, exits 3
//   hang FILE          writes its pid to FILE; never answers a prompt, ignores session/cancel
//   record FILE        appends every method it receives to FILE; on a prompt sends "ready" and
//                      answers only after a session/cancel, with stopReason cancelled; what
//                      arrives meanwhile (tether's $/ping) is never answered, as careless agents do
//   cancel-end-turn FILE  as record, but answers end_turn after the cancel (a common bug)
//   late-updates [MS]  answers "answer-N", then (same write) sends chunks and a tool call after it;
//                      with MS, it first takes MS milliseconds over each prompt
//   permission KINDS   asks permission offering the option kinds in KINDS (comma separated), and
//                      answers "selected:ID" or "cancelled"; ids are "opt-KIND"
//   version N          answers initialize with protocolVersion N
//   auth [FILE]        session/new fails with -32000 (data.details says why) until authenticate with
//                      agent-login, or api-key while FAKE_API_KEY is set; offers terminal-login
//                      (terminal), agent-login (agent) and api-key (env_var: FAKE_API_KEY); with
//                      FILE, appends every method it receives to it
//   settings FILE      appends every method it receives (with set_mode's and set_config_option's
//                      value) to FILE; offers sessionCapabilities close and resume, the modes ask
//                      and plan (ask current), the config options model (select m1, m2; category
//                      model) and fast (boolean); a prompt answers "mode=M model=V fast=B"; with
//                      FAKE_RESUME_BARE set, session/resume answers {}
//   noisy              writes non-JSON lines on stdout (a sign-in URL) before its initialize
//                      answer and during a prompt; answers "ok"
//   error-data         a prompt fails with -32603 and data.details; its stderr is a multi-line
//                      dump that ends with "}"
//   unknown-requests   on a prompt, calls terminal/create and fs/read_text_file (not advertised)
//                      and answers with the error codes it got back
//   withdraw           asks permission, then withdraws it with $/cancel_request; answers with
//                      what the client answered
//   before-new         sends updates for the new session before answering session/new
//   no-load FILE       like crash-once, but without loadSession
//   flood FILE         writes its pid to FILE; streams chunks until cancelled or stdin closes
//   pid FILE           writes its pid to FILE; answers "ok"
//   sessions FILE      appends every method it receives to FILE; answers "ok SESSION-ID"
//   server FILE        plays a `tether serve` server: appends every method (with a session/load's
//                      sessionId) to FILE; initialize carries _meta.tether (main session
//                      "main-1"); session/load answers {} without replay; _tether/status answers.
//                      A prompt's first word picks the turn: "fail" fails it with tether's error
//                      object (bridge_exited); "other" answers "mine", then plays another
//                      client's turn (its prompt as a user chunk, an answer, a permission request
//                      whose outcome it tells in a chunk) and the server's _tether/bridge_restarted
//                      and _tether/bridge_gone; "withdraw" answers, then asks permission and
//                      withdraws it; anything else answers "ok SESSION-ID"
//   not-server         a plain agent where a tether server was expected (no _meta.tether)
//   fs-race            a hostile agent: on a prompt, keeps swapping CWD/race (a directory) and
//                      CWD/spare (a symlink to a directory outside) with RENAME_EXCHANGE while it
//                      asks to read CWD/race/secret.txt and write CWD/race/planted.txt, for 2 s (or
//                      3000 tries); answers "tries=T reads=R leaks=L writes=W", where a leak is a
//                      read that returned "secret" (the outside file's text)
//   hostile            puts terminal escape sequences (kHostile: OSC 52 clipboard, OSC 0 title, CSI
//                      2J clear, C1 CSI and OSC in UTF-8, BEL) into everything a client may show:
//                      agentInfo name, title and version, the session id, its commands (name,
//                      description, hint), modes, config options, and its stderr (with raw 8-bit
//                      C1 bytes); the mode "plain", the model "m2" and the boolean option "fast"
//                      have plain ids, so a client can ask for them. A prompt's first word picks the turn: "fail" fails it with an
//                      error whose message and data.details carry them; "crash" writes them on
//                      stderr and exits 3; anything else sends a non-JSON stdout line, a thought, a
//                      plan, a tool call and its update, asks permission (hostile tool title, kind
//                      and option names) and answers with hostile chunks. set_mode and
//                      set_config_option fail with a hostile message.
//   oversize N         answers "before ", a chunk of N bytes ('y'), "after", then end_turn
//
// Each session/new makes a new session id, "fake-session-PID-N" ("hostile" mode: kHostile in it).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

using nlohmann::json;

namespace {

std::string mode, arg;

// What a hostile agent puts into every text: each sequence would do something to a terminal that
// interpreted it (clipboard, window title, clear the screen, move the cursor, ring the bell).
const std::string kHostile =
    "\x1b]52;c;SG9zdGlsZQ==\x07"   // OSC 52: write the clipboard
    "\x1b]0;pwned-title\x1b\\"     // OSC 0: the window title, ST-terminated
    "\x1b[2J\x1b[1;1H"              // CSI: clear the screen, cursor home
    "\xc2\x9b" "31m"               // C1 CSI, UTF-8 encoded
    "\xc2\x9d" "0;c1-title\x07"    // C1 OSC, UTF-8 encoded
    "\x1bP1$q\x1b\\"               // DCS
    "\x07\x08\x7f";                 // BEL, BS, DEL
// The same for raw bytes (stderr, stdout lines that are not JSON): 8-bit C1 CSI and OSC too.
const std::string kHostileRaw = kHostile + "\x9b" "2J" "\x9d" "0;raw-title\x07";
std::string evil(const std::string& word) { return word + kHostile + " " + word; }
std::string session_cwd;  // of the last session/new
std::string in_buf;
std::string session_id = "fake-session-1";
bool eof = false;
long next_id = 0;

void write_all(const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    ssize_t n = ::write(1, s.data() + off, s.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(0);
    off += static_cast<std::size_t>(n);
  }
}

std::string line(const json& j) { return j.dump() + "\n"; }
void send(const json& j) { write_all(line(j)); }

json result(const json& id, json r) { return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(r)}}; }
json error(const json& id, int code, const std::string& msg) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", msg}}}};
}
json update(json u) {
  return {{"jsonrpc", "2.0"}, {"method", "session/update"}, {"params", {{"sessionId", session_id}, {"update", std::move(u)}}}};
}
json chunk(const std::string& text) {
  return update({{"sessionUpdate", "agent_message_chunk"}, {"content", {{"type", "text"}, {"text", text}}}});
}

// The next message; nothing at EOF.
std::optional<json> next() {
  for (;;) {
    auto nl = in_buf.find('\n');
    if (nl != std::string::npos) {
      std::string l = in_buf.substr(0, nl);
      in_buf.erase(0, nl + 1);
      json j = json::parse(l, nullptr, false);
      if (j.is_object()) return j;
      continue;
    }
    if (eof) return std::nullopt;
    char buf[65536];
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof = true;
      continue;
    }
    in_buf.append(buf, static_cast<std::size_t>(n));
  }
}

bool input_ready() {
  if (in_buf.find('\n') != std::string::npos) return true;
  pollfd p{0, POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

void append_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app) << text << '\n' << std::flush;
}

bool exists(const std::string& path) { return ::access(path.c_str(), F_OK) == 0; }

// Waits for the answer to our request `id`, keeping other messages out of the way.
json await_response(long id, std::vector<json>& others) {
  for (;;) {
    auto m = next();
    if (!m) ::_exit(0);
    if (!m->contains("method") && m->contains("id") && (*m)["id"] == id) return *m;
    others.push_back(*m);
  }
}

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

json notification(const std::string& method, json params) {
  return {{"jsonrpc", "2.0"}, {"method", method}, {"params", std::move(params)}};
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

void on_server_prompt(const json& id, const json& params) {
  // As tether serve does when it sends a prompt on: what follows is the sender's turn.
  send(notification("_tether/turn_started", {{"sessionId", params.value("sessionId", "")}}));
  std::string text;
  if (params.contains("prompt") && params["prompt"].is_array() && !params["prompt"].empty())
    text = params["prompt"][0].value("text", "");
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
  std::string text;
  if (params.contains("prompt") && params["prompt"].is_array() && !params["prompt"].empty())
    text = params["prompt"][0].value("text", "");
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
    if (mode == "withdraw") {
      send({{"jsonrpc", "2.0"}, {"method", "$/cancel_request"}, {"params", {{"requestId", rid}}}});
    }
    std::vector<json> others;
    json r = await_response(rid, others);
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

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  mode = argc > 1 ? argv[1] : "pid";
  arg = argc > 2 ? argv[2] : "";
  if (mode == "crash-always") append_file(arg, std::to_string(::getpid()));
  if (mode == "hang" || mode == "flood" || mode == "pid") append_file(arg, std::to_string(::getpid()));
  if (mode == "record" || mode == "cancel-end-turn") append_file(arg, "spawned");
  bool authenticated = false;
  std::string cur_mode = "ask", cur_model = "m1";
  bool fast = false;
  auto settings = [&] {
    return json{{"modes",
                 {{"currentModeId", cur_mode},
                  {"availableModes", {{{"id", "ask"}, {"name", "Ask"}}, {{"id", "plan"}, {"name", "Plan"}}}}}},
                {"configOptions",
                 {{{"id", "model"},
                   {"name", "Model"},
                   {"category", "model"},
                   {"type", "select"},
                   {"currentValue", cur_model},
                   {"options", {{{"value", "m1"}, {"name", "Model one"}}, {{"value", "m2"}, {"name", "Model two"}}}}},
                  {{"id", "fast"}, {"name", "Fast"}, {"type", "boolean"}, {"currentValue", fast}}}}};
  };
  while (auto m = next()) {
    std::string method = m->value("method", "");
    if (mode == "record" || mode == "cancel-end-turn" || mode == "sessions" || (mode == "auth" && !arg.empty()))
      append_file(arg, method.empty() ? "response" : method);
    if (mode == "settings") {
      json p = m->value("params", json::object());
      std::string extra = method == "session/set_mode" ? " " + p.value("modeId", "")
                          : method == "session/set_config_option" ? " " + p.value("configId", "") + "=" + p.value("value", json()).dump()
                                                                  : "";
      append_file(arg, (method.empty() ? "response" : method) + extra);
    }
    if (mode == "server")
      append_file(arg, method == "session/load" ? method + " " + m->value("params", json::object()).value("sessionId", "")
                                                : method.empty() ? "response" : method);
    if (!m->contains("id") || method.empty()) continue;
    json id = (*m)["id"];
    json params = m->value("params", json::object());
    if (method == "initialize") {
      int version = mode == "version" ? std::atoi(arg.c_str()) : 1;
      json r = {{"protocolVersion", version},
                {"agentCapabilities", {{"loadSession", mode != "no-load"}}},
                {"agentInfo", {{"name", "fake-acp-agent"}, {"version", "1.0"}}},
                {"authMethods", json::array()}};
      if (mode == "auth")
        r["authMethods"] = {{{"id", "terminal-login"}, {"name", "Log in"}, {"type", "terminal"}, {"args", {"--login"}}},
                            {{"id", "agent-login"}, {"name", "Agent login"}, {"description", "Opens a browser"}},
                            {{"id", "api-key"}, {"name", "API key"}, {"type", "env_var"}, {"vars", {{{"name", "FAKE_API_KEY"}}}}}};
      if (mode == "settings") r["agentCapabilities"]["sessionCapabilities"] = {{"close", json::object()}, {"resume", json::object()}};
      if (mode == "noisy") write_all("Please visit https://login.example.invalid/device?code=ABCD to sign in\n");
      if (mode == "hostile") {
        r["agentInfo"] = {{"name", evil("name")}, {"title", evil("title")}, {"version", evil("version")}};
        std::string err = "hostile stderr " + kHostileRaw + "\n";
        [[maybe_unused]] auto n = ::write(2, err.data(), err.size());
      }
      if (mode == "server") r["_meta"] = {{"tether", {{"mainSessionId", "main-1"}, {"generation", 1}, {"version", "test"}}}};
      send(result(id, r));
    } else if (method == "authenticate") {
      std::string how = params.value("methodId", "");
      const char* key = std::getenv("FAKE_API_KEY");
      authenticated = how == "agent-login" || (how == "api-key" && key && *key);
      send(authenticated ? result(id, json::object()) : error(id, -32602, "unknown method"));
    } else if (method == "session/new") {
      if (mode == "auth" && !authenticated) {
        json e = error(id, -32000, "Authentication required");
        e["error"]["data"] = {{"details", "Authentication required: no credentials for the fake provider"}};
        send(e);
        continue;
      }
      std::string cwd = params.value("cwd", "");
      if (cwd.empty() || cwd[0] != '/' || !params.contains("mcpServers")) {
        send(error(id, -32602, "cwd must be absolute and mcpServers present"));
        continue;
      }
      session_cwd = cwd;
      static int created = 0;
      session_id = "fake-session-" + std::to_string(::getpid()) + "-" + std::to_string(++created);
      if (mode == "hostile") session_id = evil("session") + "-" + std::to_string(created);
      if (mode == "before-new") {
        std::string out = line(update({{"sessionUpdate", "available_commands_update"},
                                       {"availableCommands", {{{"name", "early"}, {"description", "sent early"}}}}}));
        out += line(update({{"sessionUpdate", "current_mode_update"}, {"currentModeId", "architect"}}));
        out += line(update({{"sessionUpdate", "some_future_kind"}, {"whatever", 1}}));
        write_all(out);
      }
      json answer = {{"sessionId", session_id}};
      if (mode == "settings") answer.update(settings());
      if (mode == "hostile")
        answer.update({{"modes", {{"currentModeId", evil("mode")}, {"availableModes", {{{"id", evil("mode")}, {"name", evil("Mode")}}, {{"id", "plain"}, {"name", evil("Plain")}}}}}},
                       {"configOptions",
                        {{{"id", "model"}, {"name", evil("Model")}, {"category", "model"}, {"type", "select"},
                          {"currentValue", evil("model")},
                          {"options", {{{"value", evil("model")}, {"name", evil("Model")}}, {{"value", "m2"}, {"name", evil("Model two")}}}}},
                         {{"id", evil("option")}, {"name", evil("Option")}, {"type", "select"}, {"currentValue", evil("value")},
                          {"options", {{{"value", evil("value")}, {"name", evil("Value")}}}}},
                         {{"id", "fast"}, {"name", evil("Fast")}, {"type", "boolean"}, {"currentValue", false}}}}});
      // Before the answer, so that the client knows the commands once its session is open.
      if (mode == "hostile")
        send(update({{"sessionUpdate", "available_commands_update"},
                     {"availableCommands", {{{"name", evil("cmd")}, {"description", evil("description")}, {"input", {{"hint", evil("hint")}}}}}}}));
      send(result(id, answer));
      if (mode == "before-new") send(update({{"sessionUpdate", "session_info_update"}, {"title", "after new"}}));
    } else if (method == "session/load") {
      session_id = params.value("sessionId", "");
      if (mode == "server") {
        // As tether serve does: what a newcomer must know of the session, then attached, no replay.
        send(update({{"sessionUpdate", "available_commands_update"},
                     {"availableCommands", json::array({{{"name", "shared"}, {"description", "a command of the session"}}})}}));
        send(result(id, json::object()));
        continue;
      }
      send(chunk("replayed history"));
      send(result(id, nullptr));  // the docs' example answers null; the schema says an object
    } else if (mode == "settings" && method == "session/set_mode") {
      cur_mode = params.value("modeId", "");
      send(result(id, json::object()));
      send(update({{"sessionUpdate", "current_mode_update"}, {"currentModeId", cur_mode}}));
    } else if (mode == "settings" && method == "session/set_config_option") {
      if (params.value("configId", "") == "model") cur_model = params.value("value", "");
      if (params.value("configId", "") == "fast") fast = params.value("value", false);
      send(result(id, {{"configOptions", settings()["configOptions"]}}));
    } else if (mode == "settings" && (method == "session/close" || method == "session/resume")) {
      if (method == "session/resume") session_id = params.value("sessionId", "");
      // FAKE_RESUME_BARE: a resume answer that reports no modes or options (the schema allows it).
      bool bare = std::getenv("FAKE_RESUME_BARE") != nullptr;
      send(result(id, method == "session/resume" && !bare ? settings() : json::object()));
    } else if (mode == "hostile" && (method == "session/set_mode" || method == "session/set_config_option")) {
      json e = error(id, -32602, evil("refused"));
      e["error"]["data"] = {{"details", evil("details")}};
      send(e);
    } else if (method == "_tether/status" && mode == "server") {
      send(result(id, {{"state", "ready"}, {"clients", 2}}));
    } else if (method == "session/prompt" && mode == "settings") {
      send(chunk("mode=" + cur_mode + " model=" + cur_model + " fast=" + (fast ? "true" : "false")));
      send(result(id, {{"stopReason", "end_turn"}}));
    } else if (method == "session/prompt" && mode == "noisy") {
      write_all("still here: not JSON\n");
      send(chunk("ok"));
      send(result(id, {{"stopReason", "end_turn"}}));
    } else if (method == "session/prompt" && mode == "error-data") {
      std::string dump = "Error: request failed\n{\n  status: 429,\n  message: 'Quota exceeded'\n}\n";
      [[maybe_unused]] auto n = ::write(2, dump.data(), dump.size());
      json e = error(id, -32603, "Internal error");
      e["error"]["data"] = {{"details", "Quota exceeded for model fake-1"}};
      send(e);
    } else if (method == "session/prompt" && mode == "hostile") {
      on_hostile_prompt(id, params);
    } else if (method == "session/prompt") {
      on_prompt(id, params);
    } else {
      send(error(id, -32601, "Method not found"));
    }
  }
  return 0;
}
