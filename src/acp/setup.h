// The decisions of ACP session setup, in one place for every command and for `tether serve`
// (DESIGN §6, ACP.md §4): what initialize sends and what its answer means for us (the agent's
// profile), which authentication method may be used and why none can, how a session's mode and
// config options are set from --mode/--model/--set, and how an agent's JSON-RPC error reads.
//
// These are pure functions over JSON values: no I/O, no state, no clock. The sequencing (one setup
// request at a time, retries, restarts) lives with whoever drives a connection: AcpSession for the
// front-ends and the server's bridge link in serve; both build every setup request and read every
// setup answer through this file, so a fix here is a fix everywhere.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/protocol.h"

namespace tether::acp {

// ACP error codes (schema ErrorCode).
inline constexpr int kAuthRequired = -32000;
inline constexpr int kResourceNotFound = -32002;

// What an agent told us about itself in its initialize answer.
struct AgentProfile {
  nlohmann::json info;          // agentInfo {name, title?, version}, or null
  nlohmann::json capabilities = nlohmann::json::object();  // agentCapabilities as sent
  nlohmann::json auth_methods = nlohmann::json::array();
  bool load = false;    // loadSession
  bool resume = false;  // sessionCapabilities.resume
  bool close = false;   // sessionCapabilities.close
  bool list = false;    // sessionCapabilities.list
};

// initialize's params: kProtocolVersion, only the capabilities we implement, clientInfo.
nlohmann::json initialize_params(std::string_view client_name, std::string_view client_version, bool allow_fs,
                                 bool allow_terminal = false);
// The agent's profile from initialize's result, or tether's error object (protocol_error) when
// the answer is not kProtocolVersion.
std::variant<AgentProfile, nlohmann::json> read_initialize(const nlohmann::json& result);

// An MCP server the user gives the agent for a session (--mcp, the config's `mcp`; ACP schema
// McpServer). A stdio server is a command the agent starts; an http or sse one a URL it connects to.
struct McpServer {
  std::string name;
  std::string type = "stdio";  // "stdio", "http" or "sse"
  std::string command;         // stdio: the program (absolute or on the agent's PATH)
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;      // stdio: added to the server's environment
  std::string url;                                           // http, sse
  std::vector<std::pair<std::string, std::string>> headers;  // http, sse
};

// The mcpServers param for session/new, load and resume. stdio servers always (every agent must
// support them); an http or sse server only when the agent advertises mcpCapabilities.http or
// .sse: sent anyway, an agent that cannot connect to it would fail the whole session/new. The
// names of those left out are appended to *left_out (for a notice).
nlohmann::json mcp_servers_param(const std::vector<McpServer>& servers, const nlohmann::json& agent_capabilities,
                                 std::vector<std::string>* left_out = nullptr);
// "fs: npx -y @modelcontextprotocol/server-filesystem /tmp", "docs: http https://…": for /status.
std::string describe_mcp_server(const McpServer& server);

nlohmann::json new_session_params(const std::string& cwd, const nlohmann::json& mcp_servers);
// session/load and session/resume take the same params.
nlohmann::json reopen_params(const std::string& session_id, const std::string& cwd, const nlohmann::json& mcp_servers);

// --- errors ----------------------------------------------------------------------------------

// "error -32603: Internal error (<the agent's own reason>)": the message and what `data` carries
// (`details`, `message`, `error`, or a string); the reason alone is cut at 500 bytes.
std::string rpc_error_text(const nlohmann::json& err);
// The agent's own reason from `data` ("" when it gave none).
std::string rpc_error_reason(const nlohmann::json& err);
// {"rpcCode":…, "data":…} for tether's error object, from a JSON-RPC error.
nlohmann::json rpc_error_extra(const nlohmann::json& err);
bool is_auth_required(const nlohmann::json& err);

// --- authentication ----------------------------------------------------------------------------

// How authenticate is chosen (DESIGN §6): only after session/new or session/load answered
// auth_required; the method the user named (--auth), else an `env_var` method whose variables are
// all set. An `agent` method may start a browser or device login, and a `terminal` one must run in
// a terminal: neither is ever started unless the user named it (a terminal method never: it is
// explained instead).
struct AuthChoice {
  std::string method_id;  // the method to authenticate with; empty: none usable
  nlohmann::json error;   // when none: tether's error object (code auth_required), naming each method
};
using EnvLookup = std::function<const char*(const char*)>;
AuthChoice choose_auth(const nlohmann::json& methods, const std::string& requested, const EnvLookup& env,
                       const nlohmann::json& agent_error);
// The variables an env_var method needs (vars[].name, or varName).
std::vector<std::string> auth_method_vars(const nlohmann::json& method);
// One line per method: "  ID: NAME (type): DESCRIPTION", for messages and the talk menu.
std::string describe_auth_methods(const nlohmann::json& methods);

// --- mode and config options -------------------------------------------------------------------

// What the user asked the session to be set to, applied after every session setup and before the
// first prompt.
struct SessionSettings {
  std::string mode;   // --mode ID
  std::string model;  // --model ID: the config option of category "model" (or id "model")
  std::vector<std::pair<std::string, std::string>> set;  // --set KEY=VALUE, in order
  bool empty() const { return mode.empty() && model.empty() && set.empty(); }
};

// One request that applies a setting: session/set_mode or session/set_config_option.
struct SettingRequest {
  std::string method;
  nlohmann::json params;
  std::string what;  // "mode plan", "model gpt-5": for messages
};

// The requests that bring a session with these `modes` and `config_options` (from session/new,
// load or resume, or later updates) to `want`; settings already in effect are skipped. An id the
// agent does not offer is tether's error object (code usage), listing what it offers.
std::variant<std::vector<SettingRequest>, nlohmann::json> plan_settings(const SessionSettings& want,
                                                                          const std::string& session_id,
                                                                          const nlohmann::json& modes,
                                                                          const nlohmann::json& config_options);

// "mode: plan (Plan, Default, Auto)" lines of a session's modes and config options, for /status
// and listings. Empty when it has none.
std::vector<std::string> describe_settings(const nlohmann::json& modes, const nlohmann::json& config_options);
// The values a select config option offers (groups flattened), as (value, name).
std::vector<std::pair<std::string, std::string>> config_option_values(const nlohmann::json& option);
// The config option that --model sets: category "model", else id "model"; null when none.
const nlohmann::json* model_option(const nlohmann::json& config_options);

}  // namespace tether::acp
