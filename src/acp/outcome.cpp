#include "acp/outcome.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/byte_ring.h"

namespace tether::acp {
namespace {
constexpr std::string_view kTailHeading = "\nLast lines of the bridge's stderr:";
}  // namespace

const char* to_string(CancelCause c) {
  switch (c) {
    case CancelCause::none: return "none";
    case CancelCause::interrupt: return "interrupt";
    case CancelCause::timeout: return "timeout";
    case CancelCause::caller_gone: return "caller_gone";
  }
  return "?";
}

nlohmann::json error_object(std::string_view code, std::string message, nlohmann::json extra) {
  nlohmann::json e = {{"code", code}, {"message", std::move(message)}};
  if (extra.is_object())
    for (auto& [k, v] : extra.items()) e[k] = v;
  return e;
}

std::string duration_text(base::Duration d) {
  using std::chrono::duration;
  using std::chrono::milliseconds;
  if (d < std::chrono::seconds(1)) {
    auto ms = std::chrono::round<milliseconds>(d).count();
    if (ms < 1000) return std::to_string(std::max<long long>(0, ms)) + " ms";
  }
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.3f", std::round(duration<double>(d).count() * 1000) / 1000);
  std::string s = buf;
  s.erase(s.find_last_not_of('0') + 1);
  if (s.back() == '.') s.pop_back();
  return s + " s";
}

int worse_exit(int a, int b) {
  auto rank = [](int c) {
    switch (c) {
      case kExitOk: return 0;
      case kExitNotClean: return 1;
      case kExitDataErr: return 2;
      case kExitIoErr: return 4;
      case kExitTimeout: return 5;
      case kExitProtocol: return 6;
      case kExitUnavailable: return 7;
      default: return 3;  // internal error, usage, and whatever else
    }
  };
  return rank(b) > rank(a) ? b : a;
}

int exit_status_for_stop_reason(std::string_view stop_reason) {
  return stop_reason == "end_turn" ? kExitOk : kExitNotClean;
}

int exit_status_for_error(const nlohmann::json& error, bool during_setup) {
  std::string code;
  if (error.is_object())
    if (auto c = error.find("code"); c != error.end() && c->is_string()) code = c->get<std::string>();
  if (code == "bridge_exited" || code == "bridge_hung" || code == "restart_limit") return kExitUnavailable;
  if (code == "timeout") return kExitTimeout;
  if (code == "protocol_error") return kExitProtocol;
  if (code == "cancelled") return kExitInterrupted;
  if (code == "bad_input") return kExitDataErr;
  if (code == "usage") return kExitUsage;
  if (code == "auth_required") return kExitUnavailable;
  if (code == "agent_error") return during_setup ? kExitUnavailable : kExitNotClean;
  return kExitSoftware;
}

std::string message_with_tail(const nlohmann::json& error, std::size_t lines) {
  std::string msg;
  if (error.is_object()) {
    if (auto m = error.find("message"); m != error.end() && m->is_string()) msg = m->get<std::string>();
    // The supervisor's give-up sentence quotes the tail itself, followed by advice; keep the
    // sentence and put the tail last.
    if (auto cut = msg.find(kTailHeading); cut != std::string::npos) msg.erase(cut);
    if (auto t = error.find("stderrTail"); t != error.end() && t->is_string() && !t->get_ref<const std::string&>().empty()) {
      const std::string& tail = t->get_ref<const std::string&>();
      base::ByteRing ring(tail.size() + 1);
      ring.append(tail);
      std::string last = ring.tail_lines(lines);
      while (!msg.empty() && msg.back() == '\n') msg.pop_back();
      bool ends_with_tail = !last.empty() && msg.size() >= last.size() &&
                            msg.compare(msg.size() - last.size(), last.size(), last) == 0;
      if (!last.empty() && !ends_with_tail) msg += std::string(kTailHeading) + "\n" + last;
    }
  }
  return msg;
}

}  // namespace tether::acp
