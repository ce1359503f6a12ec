// The single copies of what used to be written more than once (issue 13): the exit-status table
// of DESIGN §7, tether's error-object builder, and the ACP protocol version. Every front-end, the
// batch records and a tether server's answers use these; a change here is a change of contract.
#include <doctest/doctest.h>

#include <set>
#include <variant>

#include "acp/outcome.h"
#include "acp/protocol.h"
#include "acp/setup.h"

using namespace tether::acp;
using nlohmann::json;

TEST_CASE("the exit-status table is DESIGN §7's") {
  CHECK(kExitOk == 0);
  CHECK(kExitNotClean == 1);
  CHECK(kExitUsage == 64);
  CHECK(kExitDataErr == 65);
  CHECK(kExitUnavailable == 69);
  CHECK(kExitSoftware == 70);
  CHECK(kExitIoErr == 74);
  CHECK(kExitTimeout == 75);
  CHECK(kExitProtocol == 76);
  CHECK(kExitConfig == 78);
  CHECK(kExitInterrupted == 130);
}

TEST_CASE("every error code of DESIGN §7 maps to a status of the table, never 255") {
  const std::set<int> table = {kExitOk,      kExitNotClean, kExitUsage,    kExitDataErr, kExitUnavailable, kExitSoftware,
                               kExitIoErr,   kExitTimeout,  kExitProtocol, kExitConfig,  kExitInterrupted};
  for (const char* code : {"bridge_exited", "bridge_hung", "restart_limit", "timeout", "agent_error", "protocol_error",
                           "bad_input", "cancelled", "usage", "auth_required", "something_new"}) {
    for (bool setup : {false, true}) {
      int status = exit_status_for_error(error_object(code, "m"), setup);
      CAPTURE(code);
      CHECK(table.count(status) == 1);
    }
  }
  CHECK(exit_status_for_error(error_object("usage", "no such mode"), true) == kExitUsage);
  CHECK(exit_status_for_error(error_object("auth_required", "no usable sign-in"), true) == kExitUnavailable);
}

TEST_CASE("worse_exit: the more serious status wins, the earlier one on a tie") {
  using namespace tether::acp;
  // The order, least serious first; each must beat all before it, from either side.
  const int order[] = {kExitOk, kExitNotClean, kExitDataErr, kExitSoftware,
                       kExitIoErr, kExitTimeout, kExitProtocol, kExitUnavailable};
  for (std::size_t i = 0; i < std::size(order); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      CHECK(worse_exit(order[i], order[j]) == order[i]);
      CHECK(worse_exit(order[j], order[i]) == order[i]);
    }
  }
  // Codes of the same rank (internal error, usage, any other status): the first one stays.
  CHECK(worse_exit(kExitUsage, kExitSoftware) == kExitUsage);
  CHECK(worse_exit(kExitSoftware, kExitUsage) == kExitSoftware);
  CHECK(worse_exit(kExitConfig, kExitUsage) == kExitConfig);
  CHECK(worse_exit(kExitUsage, kExitDataErr) == kExitUsage);
  CHECK(worse_exit(kExitOk, kExitOk) == kExitOk);
}

TEST_CASE("error_object: code and message, the extras after them; a non-object extra is ignored") {
  json e = error_object("timeout", "the turn did not finish within the timeout");
  CHECK(e.size() == 2);
  CHECK(e["code"] == "timeout");
  CHECK(e["message"] == "the turn did not finish within the timeout");
  // What --json, batch records and a tether server's answers print.
  CHECK(e.dump() == R"({"code":"timeout","message":"the turn did not finish within the timeout"})");

  json x = error_object("bridge_exited", "gone", {{"exitStatus", 3}, {"signal", "SIGSEGV"}, {"stderrTail", "boom\n"}});
  CHECK(x.size() == 5);
  CHECK(x["code"] == "bridge_exited");
  CHECK(x["exitStatus"] == 3);
  CHECK(x["signal"] == "SIGSEGV");

  CHECK(error_object("bad_input", "line 3: not JSON", json::array({1, 2})).size() == 2);
  CHECK(error_object("bad_input", "line 3: not JSON", nullptr).size() == 2);
}

TEST_CASE("the protocol version: initialize sends it, an answer with it is accepted, another is refused") {
  CHECK(kProtocolVersion == 1);  // ACP v1; a new version is a deliberate change of every end
  CHECK(initialize_params("tether", "0", false)["protocolVersion"] == kProtocolVersion);
  CHECK(std::holds_alternative<AgentProfile>(read_initialize({{"protocolVersion", kProtocolVersion}})));
  auto other = read_initialize({{"protocolVersion", kProtocolVersion + 1}});
  REQUIRE(std::holds_alternative<json>(other));
  const json& err = std::get<json>(other);
  CHECK(err["code"] == "protocol_error");
  CHECK(err["message"] == "the agent speaks ACP protocol version 2; tether speaks version 1");
}
