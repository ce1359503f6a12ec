// SessionCore's turns (see session_core.h): prompts are sent one at a time, once the session is
// ready; a prompt's answer ends its turn; a bridge death sends it again (`retries` times at most);
// a cancel sends session/cancel and, when the agent ignores it past the grace period, ends the
// turn anyway and recycles the bridge; turn timeouts are checked here too. Every turn ends with
// exactly one terminal event (finish), and its pending permission requests are answered then.
#include "acp/session_core.h"

#include "rpc/json_write.h"
#include "supervisor/bridge.h"

namespace tether::acp {

void SessionCore::cancel(TurnState& t, CancelCause cause) {
  if (t.phase == TurnState::Phase::done) return;
  if (t.cancel_cause == CancelCause::none) t.cancel_cause = cause;
  switch (t.phase) {
    case TurnState::Phase::waiting:
      // Nothing reached the agent for this turn yet (or its bridge died): end it now.
      finish(t, failed_event(cancel_error(t.cancel_cause), false));
      for (auto it = queue_.begin(); it != queue_.end(); ++it)
        if (it->get() == &t) {
          queue_.erase(it);
          break;
        }
      advance();
      break;
    case TurnState::Phase::prompting:
      send_cancel();
      answer_pending_cancelled(&t);
      t.phase = TurnState::Phase::cancelling;
      t.cancel_by = Deadline::after(opt_.cancel_grace);
      break;
    case TurnState::Phase::cancelling:
    case TurnState::Phase::done:
      break;
  }
}

void SessionCore::abandon(const std::shared_ptr<TurnState>& t) {
  if (t->phase == TurnState::Phase::done) return;
  t->abandoned = true;
  t->out.clear();
  cancel(*t, CancelCause::caller_gone);
}

void SessionCore::advance() {
  if (!active_) {
    if (queue_.empty()) return;
    active_ = queue_.front();
    queue_.pop_front();
  }
  TurnState& t = *active_;
  if (t.phase != TurnState::Phase::waiting) return;
  if (link_ == Link::ready) {
    send_prompt(t);
  } else if (link_ == Link::closed) {
    send_new_session();
  } else if (link_ == Link::idle || link_ == Link::failed) {
    begin_handshake();
  }
}

void SessionCore::send_prompt(TurnState& t) {
  if (t.build) {
    auto built = std::exchange(t.build, nullptr)(state_);
    if (auto* why = std::get_if<std::string>(&built)) {
      finish(t, failed_event(error_object("bad_input", *why), false));
      return;
    }
    t.content = rpc::dump(std::get<json>(built));
  }
  std::uint64_t gen = 0;
  t.phase = TurnState::Phase::prompting;
  t.server_started = false;  // a retry waits in the server's queue again
  // Written straight into the params (nlohmann's member order), not copied into a params object.
  rpc::RawParams params;
  params.text.reserve(32 + t.content.size() + state_.session_id.size());
  params.text = "{\"prompt\":";
  params.text += t.content;
  params.text += ",\"sessionId\":";
  rpc::append_json_string(params.text, state_.session_id);
  params.text += '}';
  t.call_id = bridge_.call_queued_raw("session/prompt", params, &gen);
  t.call_gen = gen;
  // What comes after our turn is ours until another client's prompt shows. Through a server, a
  // prompt sent while another client's turn streams leaves that turn showing until the server
  // starts ours (_tether/turn_started).
  if (!opt_.via_server) other_turn_ = false;
}

void SessionCore::send_cancel() { bridge_.notify("session/cancel", {{"sessionId", state_.session_id}}); }

void SessionCore::on_prompt_reply(TurnState& t, Reply&& r) {
  bool cancelling = t.phase == TurnState::Phase::cancelling;
  if (r.status == Reply::Status::timeout || r.status == Reply::Status::cancelled) return;
  switch (r.status) {
    case Reply::Status::timeout:
    case Reply::Status::cancelled:
      return;
    case Reply::Status::result: {
      TurnEvent e;
      e.kind = TurnEvent::Kind::completed;
      e.stop_reason = string_of(r.value, "stopReason");
      e.result = std::move(r.value);  // the whole result: usage and _meta ride along with stopReason
      if (e.stop_reason.empty()) {
        if (cancelling) e.stop_reason = "cancelled";
        else e = failed_event(error_object("protocol_error", "the agent's session/prompt result has no stopReason"), false);
      }
      finish(t, std::move(e));
      break;
    }
    case Reply::Status::error:
      if (cancelling) {
        // The spec wants stopReason cancelled, but an error after a cancel still ends the turn.
        TurnEvent e;
        e.kind = TurnEvent::Kind::completed;
        e.stop_reason = "cancelled";
        finish(t, std::move(e));
      } else if (const json* data = opt_.via_server && is_server_error(r.value) ? member(r.value, "data") : nullptr;
                 data && data->is_object() && !string_of(*data, "code").empty()) {
        // The server's own failure in tether's error object. Its bridge died mid-turn: sent
        // again, as a direct run would (the server holds it until its bridge is back).
        // Anything else (its restart budget is spent, ...) fails the turn as it is.
        if (string_of(*data, "code") == "bridge_exited" && t.retries_left > 0) {
          send_again(t, string_of(*data, "message"), "once the tether server's bridge is back");
        } else {
          finish(t, failed_event(*data, false));
        }
      } else {
        finish(t, failed_event(error_object("agent_error", "the agent failed the prompt: " + rpc_error_text(r.value),
                                            rpc_error_extra(r.value)),
                               false));
      }
      break;
    case Reply::Status::closed: {
      if (link_ == Link::ready) lose_link(t.call_gen);
      if (cancelling) {
        finish(t, failed_event(cancel_error(t.cancel_cause), false));
      } else if (t.retries_left > 0 && error_code(r.value) != "restart_limit") {
        send_again(t, string_of(r.value, "message"), "after the restart");
        if (link_ == Link::failed) finish(t, failed_event(link_error_, true));
      } else {
        finish(t, failed_event(r.value, false));
      }
      break;
    }
  }
  // The next turn is sent by pump() once this batch of events is handled: what came after the
  // response in the same read is this turn's late output, not the next turn's.
}

// A turn the bridge died under goes back to waiting, to be sent again (one retry spent), with a
// retry event that says why and when.
void SessionCore::send_again(TurnState& t, const std::string& why, const char* when) {
  --t.retries_left;
  t.phase = TurnState::Phase::waiting;
  int n = t.retries_total - t.retries_left;
  if (t.abandoned) return;
  TurnEvent e;
  e.kind = TurnEvent::Kind::retry;
  e.text = why + "; sending the prompt again " + when + " (retry " + std::to_string(n) + " of " +
           std::to_string(t.retries_total) + ")";
  t.out.push_back(std::move(e));
}

void SessionCore::check_timers() {
  auto now = Clock::now();
  if (link_call_ && link_deadline_.expired(now)) {
    bridge_.cancel(link_call_gen_, link_call_);
    link_call_ = 0;
    link_fail(error_object("timeout", "the agent did not answer " + link_method_ + " within " +
                                          duration_text(opt_.setup_timeout)));
  }
  // Turns still queued behind another one time out where they wait.
  for (auto it = queue_.begin(); it != queue_.end();) {
    if (!(*it)->deadline.expired(now)) {
      ++it;
      continue;
    }
    TurnState& q = **it;
    q.cancel_cause = CancelCause::timeout;
    q.phase = TurnState::Phase::done;
    if (!q.abandoned) {
      q.out.push_back(failed_event(cancel_error(CancelCause::timeout), false));
      q.out.back().cancelled = CancelCause::timeout;
    }
    it = queue_.erase(it);
  }
  if (!active_) return;
  TurnState& t = *active_;
  if (t.phase == TurnState::Phase::cancelling) {
    if (t.cancel_by.expired(now)) escalate(t);
  } else if (t.phase != TurnState::Phase::done && t.deadline.expired(now)) {
    cancel(t, CancelCause::timeout);
  }
}

// The agent ignored session/cancel: end the turn anyway and replace the process, which may still
// be working on it.
void SessionCore::escalate(TurnState& t) {
  bridge_.cancel(t.call_gen, t.call_id);
  std::string why = "the agent did not answer session/cancel within " + duration_text(opt_.cancel_grace);
  bridge_.recycle(t.call_gen, why);
  if (link_ == Link::ready) lose_link(t.call_gen);
  json err = cancel_error(t.cancel_cause);
  err["message"] = err["message"].get<std::string>() + "; " + why +
                   (opt_.via_server ? ", so tether reconnected to the tether server" : ", so the bridge was restarted");
  finish(t, failed_event(std::move(err), false));
  advance();
}

json SessionCore::cancel_error(CancelCause cause) const {
  switch (cause) {
    case CancelCause::timeout: return error_object("timeout", "the turn did not finish within the timeout");
    case CancelCause::caller_gone: return error_object("cancelled", "the turn was cancelled: its caller went away");
    default: return error_object("cancelled", "the turn was cancelled");
  }
}

TurnEvent SessionCore::failed_event(json error, bool during_setup) const {
  TurnEvent e;
  e.kind = TurnEvent::Kind::failed;
  e.error = std::move(error);
  e.during_setup = during_setup;
  return e;
}

void SessionCore::finish(TurnState& t, TurnEvent terminal) {
  answer_pending_cancelled(&t);  // every request answered exactly once, even unanswered asks
  t.phase = TurnState::Phase::done;
  terminal.cancelled = t.cancel_cause;
  if (!t.abandoned) t.out.push_back(std::move(terminal));
  if (active_.get() == &t) active_.reset();
}

}  // namespace tether::acp
