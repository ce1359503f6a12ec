// The parts of the fake ACP agent (tests/fakes/fake_acp_agent.cpp, the mode list is there) that its
// files share: the mode it runs in, its session, reading messages from stdin and writing them to
// stdout, and the JSON-RPC message builders. One process is one agent, single-threaded (the
// fs-race mode's swapper thread touches none of this), so the state is plain globals.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace fake_acp {

using nlohmann::json;

extern std::string mode;         // argv[1]
extern std::string arg;          // argv[2], or ""
extern std::string session_id;   // of the last session/new or session/load
extern std::string session_cwd;  // of the last session/new
extern long next_id;             // of the next request the agent sends
extern json client_capabilities; // of the last initialize

// What a hostile agent puts into every text (clipboard, title, clear screen, C1 codes, BEL), and
// the same with raw 8-bit C1 bytes for stderr and non-JSON stdout lines.
extern const std::string kHostile;
extern const std::string kHostileRaw;
std::string evil(const std::string& word);  // word + kHostile + " " + word

// Output: whole lines; a failed write (the client went away) ends the process with status 0.
void write_all(const std::string& s);
std::string line(const json& j);
void send(const json& j);
json result(const json& id, json r);
json error(const json& id, int code, const std::string& msg);
json notification(const std::string& method, json params);
json update(json u);                   // session/update for session_id
json chunk(const std::string& text);   // an agent_message_chunk update

// Input: messages (JSON objects; other lines are skipped) in arrival order.
std::optional<json> next();            // the next one, blocking; nothing at EOF
bool input_ready();                    // next() would not block
// The answer to our request `id`; what arrives meanwhile is dropped. EOF ends the process.
json await_response(long id, std::vector<json>& others);
// Waits up to `ms` (forever when negative) for a session/cancel; other messages stay queued for
// next(). True when it came. EOF ends the process.
bool wait_for_cancel(long ms);

void append_file(const std::string& path, const std::string& text);
bool exists(const std::string& path);
std::string prompt_text(const json& params);  // the text of the prompt's first block

// session/prompt, by mode (fake_acp_turns.cpp).
void on_prompt(const json& id, const json& params);
void on_server_prompt(const json& id, const json& params);
void on_hostile_prompt(const json& id, const json& params);
void on_batch_prompt(const json& id, const json& params);
void on_terminals_prompt(const json& id, const json& params);  // fake_acp_terminals.cpp

}  // namespace fake_acp
