// How a turn ended, as values: the error object of DESIGN §7 and the exit status each outcome
// maps to. Pure functions, shared by every front-end.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/clock.h"

namespace tether::acp {

// Why tether cancelled a turn.
enum class CancelCause {
  none,
  interrupt,    // SIGINT, SIGTERM, SIGHUP, or a person asked
  timeout,      // --timeout expired
  caller_gone,  // whoever wanted the answer went away (closed pipe, dropped client)
};
const char* to_string(CancelCause c);

// Exit statuses (DESIGN §7, after sysexits.h): the one table every front-end returns from
// (cli/common.h names the same constants in tether::cli).
inline constexpr int kExitOk = 0;
inline constexpr int kExitNotClean = 1;       // the agent answered but not cleanly; or some items / requests failed
inline constexpr int kExitUsage = 64;
inline constexpr int kExitDataErr = 65;       // malformed input data
inline constexpr int kExitUnavailable = 69;   // bridge cannot start, handshake failed, restart limit reached, died
inline constexpr int kExitSoftware = 70;      // internal error
inline constexpr int kExitIoErr = 74;
inline constexpr int kExitTimeout = 75;
inline constexpr int kExitProtocol = 76;      // the bridge does not speak what we expect
inline constexpr int kExitConfig = 78;
inline constexpr int kExitInterrupted = 130;  // 128 + SIGINT: a turn cancelled by an interrupt

// Tether's error object (DESIGN §7), {"code":…,"message":…} plus the given extras: the one
// builder of what --json, batch records and a tether server's answers carry as "error".
nlohmann::json error_object(std::string_view code, std::string message,
                            nlohmann::json extra = nlohmann::json::object());

// Of two exit statuses, the one a run that met both ends with: the more serious (unavailable >
// protocol > timeout > I/O error > internal error, usage and any other > bad data > not clean >
// ok); on a tie, `a`, the earlier. The one precedence rule of every command that ends on the worst of several outcomes
// (call, talk).
int worse_exit(int a, int b);

// end_turn -> 0; refusal, max_tokens, max_turn_requests, cancelled and anything unknown -> 1.
int exit_status_for_stop_reason(std::string_view stop_reason);

// By error code: bridge_exited, bridge_hung, restart_limit -> 69; timeout -> 75;
// protocol_error -> 76; cancelled -> 130; bad_input -> 65; usage (an option the agent does not
// take: --mode, --model, --set) -> 64; auth_required (no usable sign-in) -> 69; agent_error -> 1, or 69 when it happened
// while setting the session up (the bridge is then unusable, not merely unhelpful); other -> 70.
int exit_status_for_error(const nlohmann::json& error, bool during_setup);

// A duration as a person reads it in a message: "250 ms" under a second, else seconds with at most
// three decimals and no trailing zeros ("1 s", "1.5 s", "90 s"). Never "1.000000 s".
std::string duration_text(base::Duration d);

// The error's message with, when the error carries a stderr tail that the message does not
// already end with, the tail's last `lines` lines appended: what a person reads last is what the
// bridge said last.
std::string message_with_tail(const nlohmann::json& error, std::size_t lines = 5);

}  // namespace tether::acp
