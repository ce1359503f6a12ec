// The fake ACP agent of every test that needs one (acp, batch, talk, serve): one program, one
// behaviour or misbehaviour per mode (argv[1]), so that every path of a client is driven by a real
// process over real pipes. Without arguments it runs in mode "pid" with no file. Its files:
// fake_acp_agent.cpp (this: the modes, start-up, the handshake and session methods),
// fake_acp_turns.cpp (each mode's session/prompt), fake_acp_io.cpp (stdin/stdout, message builders).
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
//                      FAKE_RESUME_BARE set, session/resume answers {}; with FAKE_CRASH_SET_MODE=F,
//                      the first set_mode (F absent) creates F and dies, and resume then fails -32002;
//                      with FAKE_NO_REOPEN set, it offers neither resume nor loadSession
//   noisy              writes non-JSON lines on stdout (a sign-in URL) before its initialize
//                      answer and during a prompt; answers "ok"
//   error-data         a prompt fails with -32603 and data.details; its stderr is a multi-line
//                      dump that ends with "}"
//   unknown-requests   on a prompt, calls terminal/create and fs/read_text_file (not advertised)
//                      and answers with the error codes it got back
//   withdraw [HOW]     asks permission, then withdraws it with $/cancel_request; answers with
//                      what the client answered. HOW "mid-answer": a chunk "partial answer" comes
//                      between the question and its withdrawal, then " and the rest"; HOW
//                      "turn-ends": the chunk, then the turn ends with the question unanswered
//   before-new         sends updates for the new session before answering session/new
//   no-load FILE       like crash-once, but without loadSession
//   flood FILE         writes its pid to FILE; streams chunks until cancelled or stdin closes
//   pid FILE           writes its pid to FILE; answers "ok"
//   sessions FILE      appends every method it receives to FILE; answers "ok SESSION-ID";
//                      loadSession only (no resume); with FAKE_CRASH_LOAD=F, the first load (F
//                      absent) creates F and dies after its replay
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
//   terminals [FILE]  drives the client's terminal/* methods: the prompt's first word picks a
//                      scene (fake_acp_terminals.cpp lists them); answers with a JSON chunk of
//                      what came back, and whether initialize advertised the terminal capability
//   oversize N         answers "before ", a chunk of N bytes ('y'), "after", then end_turn
//   batch              for tether batch: no loadSession; a prompt's words (all its text blocks)
//                      pick the turn, so one batch can mix them; it answers "echo: <prompt>" in two
//                      chunks unless a word says otherwise:
//                        sleep:MS        wait MS ms first (a session/cancel ends it: cancelled)
//                        crash           die by SIGKILL before answering (every time)
//                        crash-once:KEY  die by SIGKILL the first time KEY is seen
//                                        ($FAKE_STATE_DIR/KEY marks it)
//                        hang-once:KEY   the first time KEY is seen, never answer (until
//                                        session/cancel)
//                        deaf-once:KEY   the first time KEY is seen, never answer, not even
//                                        after session/cancel
//                        error           answer the prompt with a JSON-RPC error
//                        refuse          answer with stopReason refusal
//                        oversize:N      one more chunk of N bytes ('y') between the halves
//                      Each prompt appends "<pid> <prompt>" to $FAKE_LOG when set, so tests can
//                      count runs. A write to a closed stdout kills it (SIGPIPE), as it does
//                      most agents; every other mode ignores SIGPIPE and exits 0.
//
// Each session/new makes a new session id, "fake-session-PID-N" ("hostile" mode: kHostile in it).
// session/load (modes with loadSession) replays two earlier prompts (user chunks) and an answer;
// an id that starts with "unknown" is refused with -32002 (resource not found).
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "fake_acp_agent.h"

using namespace fake_acp;

int main(int argc, char** argv) {
  mode = argc > 1 ? argv[1] : "pid";
  arg = argc > 2 ? argv[2] : "";
  ::signal(SIGPIPE, mode == "batch" ? SIG_DFL : SIG_IGN);
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
      client_capabilities = params.value("clientCapabilities", json::object());
      int version = mode == "version" ? std::atoi(arg.c_str()) : 1;
      json r = {{"protocolVersion", version},
                {"agentCapabilities", {{"loadSession", mode != "no-load" && mode != "batch"}}},
                {"agentInfo", {{"name", "fake-acp-agent"}, {"version", "1.0"}}},
                {"authMethods", json::array()}};
      if (mode == "auth")
        r["authMethods"] = {{{"id", "terminal-login"}, {"name", "Log in"}, {"type", "terminal"}, {"args", {"--login"}}},
                            {{"id", "agent-login"}, {"name", "Agent login"}, {"description", "Opens a browser"}},
                            {{"id", "api-key"}, {"name", "API key"}, {"type", "env_var"}, {"vars", {{{"name", "FAKE_API_KEY"}}}}}};
      if (mode == "settings") r["agentCapabilities"]["sessionCapabilities"] = {{"close", json::object()}, {"resume", json::object()}};
      if (mode == "settings" && std::getenv("FAKE_NO_REOPEN")) {
        r["agentCapabilities"]["loadSession"] = false;
        r["agentCapabilities"]["sessionCapabilities"].erase("resume");
      }
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
      if (session_id.rfind("unknown", 0) == 0) {
        send(error(id, -32002, "Resource not found: " + session_id));
        continue;
      }
      auto user = [](const char* text) {
        return update({{"sessionUpdate", "user_message_chunk"}, {"content", {{"type", "text"}, {"text", text}}}});
      };
      // The first prompt in two chunks: one prompt, as a client must count it.
      send(user("first earlier "));
      send(user("prompt"));
      send(chunk("an earlier answer"));
      send(user("second earlier prompt"));
      send(chunk("replayed history"));
      // FAKE_CRASH_LOAD=FILE: the first load (FILE absent) dies after its replay, unanswered.
      if (const char* f = std::getenv("FAKE_CRASH_LOAD"); f && ::access(f, F_OK) != 0) {
        append_file(f, "crashed");
        ::_exit(3);
      }
      send(result(id, nullptr));  // the docs' example answers null; the schema says an object
    } else if (mode == "settings" && method == "session/set_mode") {
      // FAKE_CRASH_SET_MODE=FILE: the first set_mode (FILE absent) creates FILE and dies.
      if (const char* f = std::getenv("FAKE_CRASH_SET_MODE"); f && ::access(f, F_OK) != 0) {
        append_file(f, "crashed");
        ::_exit(3);
      }
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
      // After that crash, the new process does not know the session.
      if (const char* f = std::getenv("FAKE_CRASH_SET_MODE");
          method == "session/resume" && f && ::access(f, F_OK) == 0) {
        send(error(id, -32002, "Resource not found: " + session_id));
        continue;
      }
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
    } else if (method == "session/prompt" && mode == "terminals") {
      on_terminals_prompt(id, params);
    } else if (method == "session/prompt" && mode == "batch") {
      on_batch_prompt(id, params);
    } else if (method == "session/prompt") {
      on_prompt(id, params);
    } else {
      send(error(id, -32601, "Method not found"));
    }
  }
  return 0;
}
