// The names of a tether server's ACP extensions that an ACP client of such a server reads
// (AcpSession with ClientOptions::via_server). They live here, below the serve layer, because the
// client half is in acp; serve/protocol.h re-exports them next to the rest of the server's wire
// contract, which is the place to read it whole.
#pragma once

#include "rpc/message.h"

namespace tether::acp::server_wire {

// JSON-RPC error code of a server's own failures (tether's error object in `data`).
inline constexpr int kServerError = rpc::kTetherServerError;

// initialize's answer carries `_meta.tether = {"mainSessionId", "generation", "version"}`.
inline constexpr char kMetaKey[] = "tether";
inline constexpr char kMainSessionId[] = "mainSessionId";

// Client -> server: leave a session ({"sessionId"}).
inline constexpr char kDetach[] = "_tether/detach";
// Server -> client notifications.
inline constexpr char kTurnStarted[] = "_tether/turn_started";          // {"sessionId"}
inline constexpr char kBridgeRestarted[] = "_tether/bridge_restarted";  // {"generation","cause","stderrLine","sessionsRestored"}
inline constexpr char kBridgeGone[] = "_tether/bridge_gone";            // {"message"}
// To a turn's sender whose turn's question (permission, fs) went to another client:
// {"sessionId","method"}.
inline constexpr char kAskedElsewhere[] = "_tether/asked_elsewhere";

}  // namespace tether::acp::server_wire
