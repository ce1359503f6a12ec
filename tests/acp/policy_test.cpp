// Permission selection for each policy and option set, and the mapping of outcomes to exit
// statuses, error messages and the durations in them.
#include <doctest/doctest.h>

#include "acp/outcome.h"
#include "acp/permission.h"
#include "acp/session.h"

using namespace tether::acp;
using nlohmann::json;

namespace {

std::vector<PermissionOption> offer(std::initializer_list<const char*> kinds) {
  std::vector<PermissionOption> out;
  for (const char* k : kinds) out.push_back({std::string("id-") + k, k, k});
  return out;
}

std::optional<std::string> pick(PermissionPolicy p, std::initializer_list<const char*> kinds) {
  auto o = choose_option(p, offer(kinds));
  if (!o) return std::nullopt;
  return o->id;
}

}  // namespace

TEST_CASE("allow picks allow_once only: never a persistent option, else cancelled") {
  auto allow = PermissionPolicy::allow;
  CHECK(pick(allow, {"allow_always", "allow_once", "reject_once"}) == "id-allow_once");
  CHECK(pick(allow, {"reject_once", "allow_once"}) == "id-allow_once");
  CHECK_FALSE(pick(allow, {"allow_always"}));  // Codex turns it into a lasting rule
  CHECK_FALSE(pick(allow, {"reject_once", "reject_always"}));
  CHECK_FALSE(pick(allow, {}));
  CHECK_FALSE(pick(allow, {"frobnicate"}));  // an unknown kind is not an allow
}

TEST_CASE("allow-always (asked for explicitly) prefers allow_always, then allow_once") {
  auto always = PermissionPolicy::allow_always;
  CHECK(pick(always, {"allow_once", "allow_always", "reject_once"}) == "id-allow_always");
  CHECK(pick(always, {"reject_once", "allow_once"}) == "id-allow_once");
  CHECK_FALSE(pick(always, {"reject_once"}));
  CHECK(parse_policy("allow-always") == PermissionPolicy::allow_always);
  CHECK(std::string(to_string(PermissionPolicy::allow_always)) == "allow-always");
}

TEST_CASE("deny prefers reject_once, else cancelled; never options[0]") {
  auto deny = PermissionPolicy::deny;
  CHECK(pick(deny, {"allow_once", "reject_always", "reject_once"}) == "id-reject_once");
  CHECK_FALSE(pick(deny, {"reject_always"}));  // a one-shot run does not persist a rule
  CHECK_FALSE(pick(deny, {"allow_once", "allow_always"}));
  CHECK_FALSE(pick(deny, {}));
}

TEST_CASE("ask never picks by itself") {
  CHECK_FALSE(pick(PermissionPolicy::ask, {"allow_once", "reject_once"}));
}

TEST_CASE("options are read as offered; malformed entries skipped; ids echoed verbatim") {
  auto opts = parse_options(json::parse(R"({"options":[
      {"optionId":"a 1","name":"Allow","kind":"allow_once"},
      {"name":"no id","kind":"allow_always"},
      {"optionId":7,"kind":"allow_always"},
      "junk",
      {"optionId":"r","kind":"reject_once","_meta":{}}]})"));
  REQUIRE(opts.size() == 2);
  CHECK(opts[0].id == "a 1");
  CHECK(opts[1].id == "r");
  CHECK(choose_option(PermissionPolicy::allow, opts)->id == "a 1");
  CHECK(parse_options(json::parse(R"({"options":"x"})")).empty());
  CHECK(parse_options(json::parse(R"([])")).empty());
}

TEST_CASE("permission results are well-formed") {
  CHECK(permission_result(std::string("x")) == json::parse(R"({"outcome":{"outcome":"selected","optionId":"x"}})"));
  CHECK(permission_result(std::nullopt) == json::parse(R"({"outcome":{"outcome":"cancelled"}})"));
}

TEST_CASE("policies parse from their words") {
  CHECK(parse_policy("allow") == PermissionPolicy::allow);
  CHECK(parse_policy("deny") == PermissionPolicy::deny);
  CHECK(parse_policy("ask") == PermissionPolicy::ask);
  CHECK_FALSE(parse_policy("yes"));
}

TEST_CASE("stop reasons map to exit statuses") {
  CHECK(exit_status_for_stop_reason("end_turn") == 0);
  for (const char* r : {"refusal", "max_tokens", "max_turn_requests", "cancelled", "something_new"})
    CHECK(exit_status_for_stop_reason(r) == 1);
}

TEST_CASE("error codes map to exit statuses") {
  auto status = [](const char* code, bool setup = false) { return exit_status_for_error(error_object(code, "m"), setup); };
  CHECK(status("bridge_exited") == 69);
  CHECK(status("bridge_hung") == 69);
  CHECK(status("restart_limit") == 69);
  CHECK(status("timeout") == 75);
  CHECK(status("protocol_error") == 76);
  CHECK(status("cancelled") == 130);
  CHECK(status("bad_input") == 65);
  CHECK(status("agent_error") == 1);
  CHECK(status("agent_error", true) == 69);  // the session could not be set up at all
  CHECK(status("???") == 70);
  CHECK(exit_status_for_error(json(), false) == 70);
}

TEST_CASE("terminal events map to exit statuses; a cancel's cause wins") {
  TurnEvent done;
  done.kind = TurnEvent::Kind::completed;
  done.stop_reason = "end_turn";
  CHECK(exit_status(done) == 0);
  done.stop_reason = "refusal";
  CHECK(exit_status(done) == 1);
  done.stop_reason = "end_turn";
  done.cancelled = CancelCause::timeout;  // the agent answered end_turn after our timeout's cancel
  CHECK(exit_status(done) == 75);
  done.cancelled = CancelCause::interrupt;
  CHECK(exit_status(done) == 130);

  TurnEvent failed;
  failed.kind = TurnEvent::Kind::failed;
  failed.error = error_object("protocol_error", "v2");
  CHECK(exit_status(failed) == 76);
}

TEST_CASE("messages end with the bridge's last stderr lines") {
  json e = error_object("bridge_exited", "the bridge exited with exit status 3",
                        {{"stderrTail", "one\ntwo\nthree\nfour\nfive\nsix\n"}});
  CHECK(message_with_tail(e) ==
        "the bridge exited with exit status 3\nLast lines of the bridge's stderr:\ntwo\nthree\nfour\nfive\nsix");
  // A message that already ends with the tail is left alone.
  json once = error_object("bridge_exited", "boom; its last stderr line: six", {{"stderrTail", "six\n"}});
  CHECK(message_with_tail(once) == "boom; its last stderr line: six");
  // The supervisor's give-up text: its own quote of the tail and advice go; the tail comes last.
  json limit = error_object("restart_limit",
                            "tether gave up after 3 restarts.\nLast lines of the bridge's stderr:\nx\ny\nFix the bridge.",
                            {{"stderrTail", "x\ny\n"}});
  CHECK(message_with_tail(limit) == "tether gave up after 3 restarts.\nLast lines of the bridge's stderr:\nx\ny");
  CHECK(message_with_tail(error_object("timeout", "slow")) == "slow");
}

TEST_CASE("durations read as a person writes them") {
  using namespace std::chrono_literals;
  using tether::acp::duration_text;
  CHECK(duration_text(1s) == "1 s");
  CHECK(duration_text(1500ms) == "1.5 s");
  CHECK(duration_text(250ms) == "250 ms");
  CHECK(duration_text(2250ms) == "2.25 s");
  CHECK(duration_text(90s) == "90 s");
  CHECK(duration_text(0ms) == "0 ms");
  CHECK(duration_text(999999us) == "1 s");  // rounds up to a whole second, not "1000 ms"
  CHECK(duration_text(tether::base::seconds(0.1)) == "100 ms");
  CHECK(duration_text(tether::base::seconds(30)) == "30 s");
}
