// The demo agent's request loop and its session requests (see agent.h): initialize,
// session/new, resume, close, set_mode and set_config_option; session/load is history.cpp's,
// session/list store.cpp's and session/prompt turn.cpp's. Sessions live in memory; their histories on disk.
#include "acp/demo_agent.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <initializer_list>
#include <tuple>

#include "acp/demo/agent.h"
#include "acp/protocol.h"
#include "tether_config.h"

namespace tether::acp {
namespace demo {

int DemoAgent::run() {
  for (;;) {
    json msg;
    if (!deferred_.empty()) {
      msg = std::move(deferred_.front());
      deferred_.pop_front();
    } else {
      auto m = next_message(-1);
      if (!m) break;
      msg = std::move(*m);
    }
    handle(std::move(msg));
    if (exit_code_) break;
  }
  flush();
  return exit_code_.value_or(0);
}

void DemoAgent::handle(json msg) {
  auto method_it = msg.find("method");
  if (method_it == msg.end() || !method_it->is_string()) return;  // a stray response
  std::string method = method_it->get<std::string>();
  bool is_request = msg.contains("id");
  json params = msg.contains("params") ? msg["params"] : json::object();
  if (!is_request) return;  // session/cancel outside a turn, and other notifications
  const json& id = msg["id"];
  // Params of an unexpected type (a number where a string belongs) must not kill the agent, and
  // through `tether serve` crash-loop its bridge: the request fails, the agent goes on.
  try {
    dispatch(method, id, params);
  } catch (const json::exception& e) {
    respond_error(id, -32603, std::string("Internal error: ") + e.what());
  }
}

void DemoAgent::dispatch(const std::string& method, const json& id, const json& params) {
  if (method == "initialize") on_initialize(id, params);
  else if (method == "session/new") on_new(id, params);
  else if (method == "session/load") on_load(id, params);
  else if (method == "session/resume") on_resume(id, params);
  else if (method == "session/list") on_list(id, params);
  else if (method == "session/close") on_close(id, params);
  else if (method == "session/set_mode") on_set_mode(id, params);
  else if (method == "session/set_config_option") on_set_option(id, params);
  else if (method == "session/prompt") on_prompt(id, params);
  else if (method == "authenticate") respond(id, json::object());
  else respond_error(id, -32601, "Method not found: " + method);
}

void DemoAgent::on_initialize(const json& id, const json& params) {
  const json& caps = params.value("clientCapabilities", json::object());
  if (caps.is_object() && caps.contains("fs") && caps["fs"].is_object()) {
    fs_read_ = caps["fs"].value("readTextFile", false);
    fs_write_ = caps["fs"].value("writeTextFile", false);
  }
  respond(id, {{"protocolVersion", kProtocolVersion},
               {"agentCapabilities",
                {{"loadSession", true},
                 {"promptCapabilities", {{"image", images_}, {"audio", false}, {"embeddedContext", true}}},
                 {"sessionCapabilities", {{"close", json::object()}, {"resume", json::object()}, {"list", json::object()}}}}},
               {"agentInfo", {{"name", "tether-demo-agent"}, {"title", "tether demo agent"}, {"version", TETHER_VERSION}}},
               {"authMethods", json::array()}});
}

bool DemoAgent::check_cwd(const json& id, const json& params, std::string& cwd) {
  cwd = params.value("cwd", "");
  if (cwd.empty() || cwd[0] != '/') {
    respond_error(id, -32602, "Invalid params: cwd must be an absolute path");
    return false;
  }
  return true;
}

void DemoAgent::on_new(const json& id, const json& params) {
  std::string cwd;
  if (!check_cwd(id, params, cwd)) return;
  Session s;
  // Unique across processes and time (the store outlives both): the time, our pid, a count.
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch());
  s.id = "demo-" + std::to_string(ms.count()) + "-" + std::to_string(::getpid()) + "-" + std::to_string(++created_);
  s.cwd = cwd;
  std::string sid = s.id;
  json answer = {{"sessionId", sid}};
  add_settings(answer, s);
  sessions_[sid] = std::move(s);
  respond(id, answer);
  announce_commands(sid);
}

// The session's modes and its one config option, as session/new (load, resume) answers them.
void DemoAgent::add_settings(json& answer, const Session& s) {
  answer["modes"] = {{"currentModeId", s.mode},
                     {"availableModes",
                      {{{"id", "ask"}, {"name", "Ask"}, {"description", "Ask permission before editing"}},
                       {{"id", "read-only"}, {"name", "Read-only"}, {"description", "Never edit files"}}}}};
  answer["configOptions"] = json::array({config_option(s)});
}

json DemoAgent::config_option(const Session& s) {
  return {{"id", "model"},
          {"name", "Model"},
          {"category", "model"},
          {"type", "select"},
          {"currentValue", s.model},
          {"options",
           {{{"value", "echo"}, {"name", "Echo"}, {"description", "Echo the prompt as typed"}},
            {{"value", "shout"}, {"name", "Shout"}, {"description", "Echo the prompt in capitals"}}}}};
}

DemoAgent::Session* DemoAgent::find_session(const json& id, const json& params) {
  auto it = sessions_.find(params.value("sessionId", ""));
  if (it != sessions_.end()) return &it->second;
  respond_error(id, -32002, "Resource not found: session " + params.value("sessionId", ""));
  return nullptr;
}

void DemoAgent::on_set_mode(const json& id, const json& params) {
  Session* s = find_session(id, params);
  if (!s) return;
  std::string mode = params.value("modeId", "");
  if (mode != "ask" && mode != "read-only") {
    respond_error(id, -32602, "Invalid params: no mode " + mode);
    return;
  }
  s->mode = mode;
  respond(id, json::object());
  update(s->id, {{"sessionUpdate", "current_mode_update"}, {"currentModeId", mode}});
}

void DemoAgent::on_set_option(const json& id, const json& params) {
  Session* s = find_session(id, params);
  if (!s) return;
  std::string value = params.contains("value") && params["value"].is_string() ? params["value"].get<std::string>() : "";
  if (params.value("configId", "") != "model" || (value != "echo" && value != "shout")) {
    respond_error(id, -32602, "Invalid params: no such option or value");
    return;
  }
  s->model = value;
  respond(id, {{"configOptions", json::array({config_option(*s)})}});
}

void DemoAgent::on_close(const json& id, const json& params) {
  if (!find_session(id, params)) return;
  sessions_.erase(params.value("sessionId", ""));
  respond(id, json::object());
}

// session/resume: the session back on this process without a replay. Its history file is the
// proof that it existed (and the turn count comes from it).
void DemoAgent::on_resume(const json& id, const json& params) { on_load(id, params, /*replay=*/false); }

// Sent after session/new's answer: an update outside any turn, as real agents do.
void DemoAgent::announce_commands(const std::string& sid) {
  json cmds = json::array();
  for (auto [name, desc, hint] : std::initializer_list<std::tuple<const char*, const char*, const char*>>{
           {"chunks", "Answer in exactly N chunks", "N"},
           {"flood", "Stream N one-word chunks as fast as possible", "N"},
           {"big", "Answer with one chunk of BYTES bytes", "BYTES"},
           {"sleep", "Wait MS milliseconds before answering", "MS"},
           {"crash", "Crash after the first chunk", ""},
           {"hang", "Stop answering after the first chunk", ""},
           {"exit", "Exit at once with status CODE", "CODE"},
           {"stop", "Answer with stop reason REASON", "REASON"},
           {"error", "Answer the prompt with an error", ""},
           {"read", "Read PATH through the client", "PATH"},
           {"write", "Write the echo to PATH through the client", "PATH"}}) {
    json c = {{"name", name}, {"description", desc}};
    if (*hint) c["input"] = {{"hint", hint}};
    cmds.push_back(std::move(c));
  }
  update(sid, {{"sessionUpdate", "available_commands_update"}, {"availableCommands", std::move(cmds)}});
}
}  // namespace demo

int run_demo_agent(int in_fd, int out_fd, bool images) {
  // A closed stdout must end us quietly, not by SIGPIPE's default in the middle of a write.
  ::signal(SIGPIPE, SIG_IGN);
  demo::DemoAgent agent(in_fd, out_fd);
  agent.set_images(images);
  return agent.run();
}

}  // namespace tether::acp
