// The wire contract of `tether serve`: everything the server and its `--connect` clients must
// agree on, in one place. The socket speaks ACP v1 (newline-delimited JSON-RPC 2.0) with tether as
// the agent, so the client code of `talk|prompt|batch --connect` is the ordinary ACP client and
// any ACP client can attach. What the server does with each message:
//
// Client -> server
//   initialize          answered by the server from the bridge's own initialize result
//                       (protocolVersion, agentCapabilities, agentInfo, authMethods), plus
//                       `_meta.tether = {"mainSessionId", "generation", "version"}` (ready_meta).
//   authenticate        {} (the server authenticated with the bridge itself).
//   session/new         forwarded; the new session is the sender's, with the sender attached.
//                       The result goes back to the sender.
//   session/load        a session the server knows (the main one, or one opened through it):
//                       attach, no replay, result = the session's modes and configOptions (the
//                       sender becomes its most recently attached client). Unknown ids are
//                       forwarded when the bridge can load sessions (the replay goes to the
//                       sender), else error -32602.
//   session/prompt      the sender must be attached. Prompts of one session are served one at a
//                       time in arrival order. When it goes out, every other attached client gets
//                       the prompt as `user_message_chunk` session/updates; the response goes to
//                       the sender only. The server's own failures are JSON-RPC errors with
//                       code kServerError (-32090) and `data` = tether's error object
//                       ({"code":"bridge_exited"|"restart_limit"|…, "message", …}). A prompt the
//                       bridge died on is answered with such an error and never sent again: the
//                       client decides (its --retries), so a turn is retried by one side only.
//   session/cancel      cancels the sender's own turn in that session (in flight: forwarded, its
//                       pending permission requests answered `cancelled`; queued: answered with
//                       stopReason "cancelled"). Another client's turn is not touched.
//   other session/*     requests with a sessionId the sender is attached to are forwarded; the
//                       response goes back to the sender (not attached: -32602). session/list,
//                       resume, close and delete are not offered (-32601; sessionCapabilities are
//                       removed from the initialize answer). Anything else: -32601.
//   $/ping              {} from the server itself, never forwarded.
//   _tether/restart     restarts the bridge (the restart budget starts afresh); result
//                       {"generation"} once it is back, or an error.
//   _tether/status      {"state","link","generation","pid","restartsInWindow","restartsTotal",
//                       "clients","sessions",…}.
//   _tether/shutdown    {} and the server stops (what `tether serve --stop` sends).
//   _tether/detach      {"sessionId"}: the sender leaves that session (talk's /new); its turn
//                       there is cancelled, its questions go to another client (below).
//
// Server -> client
//   session/update              every update of a session goes to every client attached to it.
//   session/request_permission, fs/*, terminal/*, other requests with a sessionId
//                               go, under a server-chosen id, to the client whose turn it is
//                               while it is attached and can answer (fs/*: it advertised that
//                               method in its initialize); otherwise to the most recently
//                               attached client that can (last client wins). Its answer goes
//                               back to the bridge. When the asked client leaves first (it
//                               disconnects, is killed, or detaches), the request goes to the
//                               next client by the same rule; when none can answer, a
//                               permission is answered `cancelled`, an fs/* request -32601 (no
//                               attached client serves files), anything else -32603; when no
//                               client is attached at all, or the turn is being cancelled, an
//                               fs/* request gets -32603 too.
//   _tether/asked_elsewhere     {"sessionId","method"} to a turn's sender, once per turn, when the
//                               first question of its turn goes to another client: it is waiting
//                               on someone else's answer.
//   _tether/turn_started        {"sessionId"} to a prompt's sender when the server sends the
//                               prompt on to the bridge: what the sender received for the session
//                               before it belonged to other clients' turns, what follows (until
//                               the response) to its own.
//   _tether/bridge_restarted    {"generation","cause","stderrLine","sessionsRestored"} to every
//                               client, once the new generation is up and the sessions are back.
//   _tether/bridge_gone         {"message"} to every client when the restart budget is spent;
//                               prompts then fail with code restart_limit until a client sends
//                               _tether/restart.
//
// A client that disconnects mid-turn has its turn cancelled at the bridge (session/cancel), its
// permission requests answered `cancelled`; requests routed to it for someone else's turn are
// handed on by the rule above.
//
// The names the client half reads (in acp, below this layer) are defined in acp/server_wire.h and
// re-exported here; the rest are defined here.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "acp/server_wire.h"

namespace tether::serve::protocol {

using acp::server_wire::kAskedElsewhere;
using acp::server_wire::kBridgeGone;
using acp::server_wire::kBridgeRestarted;
using acp::server_wire::kDetach;
using acp::server_wire::kMainSessionId;
using acp::server_wire::kMetaKey;
using acp::server_wire::kServerError;
using acp::server_wire::kTurnStarted;

// Client -> server requests that only a tether server answers.
inline constexpr char kRestart[] = "_tether/restart";
inline constexpr char kStatus[] = "_tether/status";
inline constexpr char kShutdown[] = "_tether/shutdown";

// initialize's `_meta.tether`: what a client needs to attach (the main session) and to tell
// generations apart.
nlohmann::json ready_meta(const std::string& main_session, std::uint64_t generation);

}  // namespace tether::serve::protocol
