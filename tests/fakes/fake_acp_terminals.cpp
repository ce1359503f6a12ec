// The fake ACP agent's "terminals" mode (the modes are listed in fake_acp_agent.cpp): on a prompt
// it drives the client's terminal/* methods through a scene picked by the prompt's first word,
// and answers with one chunk: a JSON object of what it got back, for the test to check.
//
//   basic     create `echo hello` (args), wait_for_exit, output, release; then a shell line
//             (no args) with env FAKE_X=42 that prints $FAKE_X, its cwd, a line on stderr and a
//             line with a byte that is not UTF-8 and an OSC title sequence, and exits 3, in
//             subdirectory "sub"
//   limit     create a shell line printing 40 'é' (80 bytes) with outputByteLimit 11, wait, output
//   stubborn  create a shell that ignores SIGTERM with a child that does too, polls output until
//             both pids are printed, kill, wait_for_exit, output, release, then waits until
//             both pids are gone from /proc (stopped and reaped: no zombie): "gone"
//   release   create a stubborn shell, polls for its pids, release without kill (the client must
//             stop it), output of the released id (an error), then "gone" as above
//   outside   create with cwd "/", with cwd "..", and with cwd a file: all errors
//   many      create 17 `sleep 30`: the 17th fails; release them all
//   shown     create a shell line printing two lines (one with an OSC title sequence), wait for
//             it, then send a tool call whose content is that terminal, and leave it to the
//             client to release (at the session's end): the client shows the terminal's output
//   notty     run a shell line that says whether /dev/tty opens: "NO_TTY" expected
//   exited    create 16 commands that exit, wait for each, do not release; create a 17th
//   flood     1 MiB of NUL output, then 20 terminal/output requests sent at once: "ok", "busy"
//   waits     65 terminal/wait_for_exit on a running command: the answer to the last
//   hang      create a stubborn shell, write its pids to FILE (argv[2]), send a tool call, and
//             answer only after a session/cancel (leaving the terminal running)
//
// "Its pids" are printed by the shell as "pids LEADER CHILD"; the answer carries them as "pids".
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include "fake_acp_agent.h"

namespace fake_acp {

namespace {

json call(const std::string& method, json params) {
  long rid = next_id++;
  params["sessionId"] = session_id;
  send({{"jsonrpc", "2.0"}, {"id", rid}, {"method", method}, {"params", std::move(params)}});
  std::vector<json> others;
  json r = await_response(rid, others);
  if (r.contains("error")) return {{"error", r["error"]}};
  return r.value("result", json());
}

std::string create(json params) {
  json r = call("terminal/create", std::move(params));
  return r.value("terminalId", "");
}

// A shell that ignores SIGTERM, with a child (a shell too, so that it ignores it after exec)
// that does too; it prints both pids, then waits.
const char* kStubborn =
    "trap '' TERM; sh -c 'trap \"\" TERM; while :; do sleep 1; done' & echo pids $$ $!; wait";

// Polls terminal/output until it shows "pids A B"; the two pids.
json await_pids(const std::string& tid) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < until) {
    json out = call("terminal/output", {{"terminalId", tid}});
    std::string text = out.value("output", "");
    auto at = text.find("pids ");
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      std::istringstream in(text.substr(at + 5));
      long a = 0, b = 0;
      in >> a >> b;
      return json::array({a, b});
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return json::array();
}

// Waits (up to 5 s) until none of `pids` exists any more, not even as a zombie: the client has
// stopped and reaped them. True when that happened.
bool await_gone(const json& pids) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (std::chrono::steady_clock::now() < until) {
    bool any = false;
    for (const auto& p : pids) any = any || exists("/proc/" + std::to_string(p.get<long>()));
    if (!any) return !pids.empty();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

json scene(const std::string& name) {
  json r = json::object();
  if (name == "basic") {
    std::string t = create({{"command", "echo"}, {"args", {"hello"}}});
    r["wait"] = call("terminal/wait_for_exit", {{"terminalId", t}});
    r["output"] = call("terminal/output", {{"terminalId", t}});
    r["release"] = call("terminal/release", {{"terminalId", t}});
    r["after_release"] = call("terminal/output", {{"terminalId", t}});
    std::string s = create({{"command", "echo x=$FAKE_X; pwd; echo err >&2; printf 'bad\\377\\033]0;title\\007\\n'; exit 3"},
                            {"env", {{{"name", "FAKE_X"}, {"value", "42"}}}}, {"cwd", session_cwd + "/sub"}});
    r["shell_wait"] = call("terminal/wait_for_exit", {{"terminalId", s}});
    r["shell_output"] = call("terminal/output", {{"terminalId", s}});
    call("terminal/release", {{"terminalId", s}});
  } else if (name == "limit") {
    std::string t = create({{"command", "i=0; while [ $i -lt 40 ]; do printf '\xc3\xa9'; i=$((i+1)); done"},
                            {"outputByteLimit", 11}});
    r["wait"] = call("terminal/wait_for_exit", {{"terminalId", t}});
    r["output"] = call("terminal/output", {{"terminalId", t}});
    call("terminal/release", {{"terminalId", t}});
  } else if (name == "stubborn") {
    std::string t = create({{"command", kStubborn}});
    r["pids"] = await_pids(t);
    r["kill"] = call("terminal/kill", {{"terminalId", t}});
    r["wait"] = call("terminal/wait_for_exit", {{"terminalId", t}});
    r["output"] = call("terminal/output", {{"terminalId", t}});
    r["release"] = call("terminal/release", {{"terminalId", t}});
    r["gone"] = await_gone(r["pids"]);
  } else if (name == "release") {
    std::string t = create({{"command", kStubborn}});
    r["pids"] = await_pids(t);
    r["release"] = call("terminal/release", {{"terminalId", t}});
    r["after_release"] = call("terminal/output", {{"terminalId", t}});
    r["gone"] = await_gone(r["pids"]);
  } else if (name == "outside") {
    r["root"] = call("terminal/create", {{"command", "pwd"}, {"cwd", "/"}});
    r["up"] = call("terminal/create", {{"command", "pwd"}, {"cwd", session_cwd + "/.."}});
    append_file(session_cwd + "/a-file", "x");
    r["file"] = call("terminal/create", {{"command", "pwd"}, {"cwd", session_cwd + "/a-file"}});
  } else if (name == "many") {
    std::vector<std::string> ids;
    for (int i = 0; i < 17; ++i) {
      json c = call("terminal/create", {{"command", "sleep"}, {"args", {"30"}}});
      if (c.contains("error")) r["error"] = c["error"];
      else ids.push_back(c.value("terminalId", ""));
    }
    r["created"] = ids.size();
    for (const auto& t : ids) call("terminal/release", {{"terminalId", t}});
  } else if (name == "shown") {
    std::string t = create({{"command", "printf 'first line\\nsecond \\033]0;title\\007line\\n'"}});
    r["wait"] = call("terminal/wait_for_exit", {{"terminalId", t}});
    send(update({{"sessionUpdate", "tool_call"}, {"toolCallId", "t1"}, {"title", "Run printf"}, {"kind", "execute"},
                 {"status", "completed"}, {"content", {{{"type", "terminal"}, {"terminalId", t}}}}}));
  } else if (name == "notty") {
    // Whether a command can open a controlling terminal (it must not: it would write to ours).
    std::string t = create({{"command", "if (: </dev/tty) 2>/dev/null; then echo HAS_TTY; else echo NO_TTY; fi"}});
    call("terminal/wait_for_exit", {{"terminalId", t}});
    r["output"] = call("terminal/output", {{"terminalId", t}});
  } else if (name == "exited") {
    // 16 commands that exit at once, not released: a 17th may still start.
    for (int i = 0; i < 16; ++i) {
      std::string t = create({{"command", "true"}});
      call("terminal/wait_for_exit", {{"terminalId", t}});
    }
    r["seventeenth"] = call("terminal/create", {{"command", "true"}});
  } else if (name == "flood") {
    // 1 MiB of NUL bytes (6 MiB as JSON per answer), then 20 output requests sent without
    // reading any answer: the client must refuse some rather than queue them all.
    std::string t = create({{"command", "head -c 1048576 /dev/zero"}, {"outputByteLimit", 1048576}});
    call("terminal/wait_for_exit", {{"terminalId", t}});
    long first = next_id;
    for (int i = 0; i < 20; ++i)
      send({{"jsonrpc", "2.0"}, {"id", next_id++}, {"method", "terminal/output"},
            {"params", {{"sessionId", session_id}, {"terminalId", t}}}});
    std::vector<json> got;
    got.push_back(await_response(next_id - 1, got));
    int ok = 0, busy = 0;
    for (const auto& m : got) {
      if (m.contains("method") || !m.contains("id") || m["id"].get<long>() < first) continue;
      if (m.contains("result")) ++ok;
      else if (m["error"].value("message", "").find("busy") != std::string::npos) ++busy;
    }
    r["ok"] = ok;
    r["busy"] = busy;
    call("terminal/release", {{"terminalId", t}});
  } else if (name == "waits") {
    // 65 wait_for_exit on a running command: the 65th is refused.
    std::string t = create({{"command", "sleep"}, {"args", {"30"}}});
    for (int i = 0; i < 65; ++i)
      send({{"jsonrpc", "2.0"}, {"id", next_id++}, {"method", "terminal/wait_for_exit"},
            {"params", {{"sessionId", session_id}, {"terminalId", t}}}});
    std::vector<json> others;
    r["last"] = await_response(next_id - 1, others);
    call("terminal/kill", {{"terminalId", t}});
    call("terminal/release", {{"terminalId", t}});
  } else if (name == "hang") {
    std::string t = create({{"command", kStubborn}});
    json pids = await_pids(t);
    append_file(arg, pids.dump());
    // Something for the client to show (prompt -v: a tool line on stderr), after the file is written.
    send(update({{"sessionUpdate", "tool_call"}, {"toolCallId", "t1"}, {"title", "pids written"}, {"kind", "execute"}}));
    wait_for_cancel(-1);  // the client is killed mid-turn: it cancels the turn first
    r["cancelled"] = true;
  }
  return r;
}

}  // namespace

void on_terminals_prompt(const json& id, const json& params) {
  std::string text = prompt_text(params);
  json r = scene(text.substr(0, text.find(' ')));
  r["advertised"] = client_capabilities.value("terminal", false);
  send(chunk(r.dump()));
  send(result(id, {{"stopReason", "end_turn"}}));
}

}  // namespace fake_acp
