// The decisions of session setup (acp/setup.h) as pure functions: which sign-in method is used and
// what is said when none is, how --mode/--model/--set become requests, how an agent's error reads;
// and where a new agent message starts a paragraph (acp::MessageBreaks).
#include <doctest/doctest.h>

#include "acp/setup.h"
#include "acp/update.h"
#include "base/byte_ring.h"

using namespace tether;
using nlohmann::json;

namespace {

const json kMethods = json::parse(R"([
  {"id":"chatgpt","name":"Login with ChatGPT","description":"Opens a browser"},
  {"id":"openai-api-key","name":"Use OPENAI_API_KEY","type":"env_var","vars":[{"name":"OPENAI_API_KEY"}]},
  {"id":"tui","name":"Sign in","type":"terminal","args":["--login"]}
])");

acp::EnvLookup env_of(std::map<std::string, std::string> vars) {
  auto shared = std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [shared](const char* n) -> const char* {
    auto it = shared->find(n);
    return it == shared->end() ? nullptr : it->second.c_str();
  };
}

const json kAuthError = json::parse(R"({"code":-32000,"message":"Authentication required","data":{"details":"no key"}})");

}  // namespace

TEST_CASE("choose_auth: an env_var method whose variables are set; never an agent (browser) method by itself") {
  CHECK(acp::choose_auth(kMethods, "", env_of({{"OPENAI_API_KEY", "k"}}), kAuthError).method_id == "openai-api-key");
  auto none = acp::choose_auth(kMethods, "", env_of({{"OPENAI_API_KEY", ""}}), kAuthError);  // set but empty
  CHECK(none.method_id.empty());
  CHECK(none.error["code"] == "auth_required");
  std::string m = none.error["message"];
  for (const char* s : {"chatgpt", "Login with ChatGPT", "openai-api-key", "needs OPENAI_API_KEY", "tui", "runs in a terminal",
                        "possibly a browser", "--auth", "Authentication required: no key"})
    CHECK_MESSAGE(m.find(s) != std::string::npos, s);
  CHECK(none.error["rpcCode"] == -32000);
}

TEST_CASE("choose_auth: --auth picks any offered method but a terminal one; varName is read too") {
  auto nothing = env_of({});
  CHECK(acp::choose_auth(kMethods, "chatgpt", nothing, kAuthError).method_id == "chatgpt");
  auto term = acp::choose_auth(kMethods, "tui", nothing, kAuthError);
  CHECK(term.method_id.empty());
  CHECK(term.error["message"].get<std::string>().find("[\"--login\"]") != std::string::npos);
  CHECK(acp::choose_auth(kMethods, "nope", nothing, kAuthError).method_id.empty());
  json legacy = json::parse(R"([{"id":"k","name":"Key","type":"env_var","varName":"MY_KEY"}])");
  CHECK(acp::choose_auth(legacy, "", env_of({{"MY_KEY", "1"}}), kAuthError).method_id == "k");
  CHECK(acp::choose_auth(json::array(), "", nothing, kAuthError).error["message"].get<std::string>().find("offers no authentication method") !=
        std::string::npos);
}

TEST_CASE("rpc_error_text: the message and the agent's own reason from data") {
  CHECK(acp::rpc_error_text(json::parse(R"({"code":-32603,"message":"Internal error","data":{"details":"fetch failed"}})")) ==
        "error -32603: Internal error (fetch failed)");
  CHECK(acp::rpc_error_text(json::parse(R"({"code":1,"message":"x","data":"line one\nline two"})")) == "error 1: x (line one line two)");
  CHECK(acp::rpc_error_text(json::parse(R"({"code":1,"message":"same","data":{"message":"same"}})")) == "error 1: same");
  CHECK(acp::rpc_error_text(json::parse(R"({"code":1,"message":"x","data":{"error":{"message":"inner"}}})")) == "error 1: x (inner)");
  std::string longer(2000, 'a');
  CHECK(acp::rpc_error_reason({{"code", 1}, {"message", "x"}, {"data", longer}}).size() < 600);
  auto extra = acp::rpc_error_extra(json::parse(R"({"code":5,"message":"x","data":{"a":1}})"));
  CHECK(extra["rpcCode"] == 5);
  CHECK(extra["data"]["a"] == 1);
}

TEST_CASE("read_initialize: capabilities, and a version other than 1 is a protocol error") {
  auto p = acp::read_initialize(json::parse(
      R"({"protocolVersion":1,"agentCapabilities":{"loadSession":true,"sessionCapabilities":{"close":{},"resume":{}}},"authMethods":[]})"));
  REQUIRE(std::holds_alternative<acp::AgentProfile>(p));
  const auto& prof = std::get<acp::AgentProfile>(p);
  CHECK(prof.load);
  CHECK(prof.close);
  CHECK(prof.resume);
  CHECK_FALSE(prof.list);
  auto bad = acp::read_initialize(json::parse(R"({"protocolVersion":2})"));
  REQUIRE(std::holds_alternative<json>(bad));
  CHECK(std::get<json>(bad)["code"] == "protocol_error");
}

TEST_CASE("plan_settings: modes, a mode as a config option, the model option, booleans, groups") {
  json modes = json::parse(R"({"currentModeId":"default","availableModes":[{"id":"default","name":"D"},{"id":"plan","name":"P"}]})");
  json opts = json::parse(R"([
    {"id":"model","name":"Model","category":"model","type":"select","currentValue":"a",
     "options":[{"group":"g","name":"G","options":[{"value":"a","name":"A"},{"value":"b","name":"B"}]}]},
    {"id":"think","name":"Think","type":"boolean","currentValue":false}
  ])");
  acp::SessionSettings want;
  want.mode = "plan";
  want.model = "b";
  want.set = {{"think", "true"}};
  auto plan = acp::plan_settings(want, "s1", modes, opts);
  REQUIRE(std::holds_alternative<std::vector<acp::SettingRequest>>(plan));
  const auto& reqs = std::get<std::vector<acp::SettingRequest>>(plan);
  REQUIRE(reqs.size() == 3);
  CHECK(reqs[0].method == "session/set_mode");
  CHECK(reqs[0].params == json{{"sessionId", "s1"}, {"modeId", "plan"}});
  CHECK(reqs[1].params == json{{"sessionId", "s1"}, {"configId", "model"}, {"value", "b"}});
  CHECK(reqs[2].params == json{{"sessionId", "s1"}, {"configId", "think"}, {"type", "boolean"}, {"value", true}});

  // A mode offered only as a config option of category mode.
  json mode_opt = json::parse(R"([{"id":"approval","name":"A","category":"mode","type":"select","currentValue":"auto",
                                   "options":[{"value":"auto","name":"Auto"},{"value":"ask","name":"Ask"}]}])");
  acp::SessionSettings ask;
  ask.mode = "ask";
  auto p2 = acp::plan_settings(ask, "s", nullptr, mode_opt);
  REQUIRE(std::holds_alternative<std::vector<acp::SettingRequest>>(p2));
  CHECK(std::get<std::vector<acp::SettingRequest>>(p2).at(0).params["configId"] == "approval");

  // The same key twice: the last one wins.
  acp::SessionSettings twice;
  twice.set = {{"think", "true"}, {"think", "false"}};
  CHECK(std::get<std::vector<acp::SettingRequest>>(acp::plan_settings(twice, "s", modes, opts)).empty());

  // Already so: nothing to send.
  acp::SessionSettings same;
  same.mode = "default";
  same.model = "a";
  CHECK(std::get<std::vector<acp::SettingRequest>>(acp::plan_settings(same, "s", modes, opts)).empty());

  // Not offered: a usage error that lists the offer.
  acp::SessionSettings bad;
  bad.model = "zzz";
  auto err = acp::plan_settings(bad, "s", modes, opts);
  REQUIRE(std::holds_alternative<json>(err));
  CHECK(std::get<json>(err)["code"] == "usage");
  CHECK(std::get<json>(err)["message"].get<std::string>().find("a, b") != std::string::npos);
  acp::SessionSettings nomodel;
  nomodel.model = "x";
  CHECK(std::holds_alternative<json>(acp::plan_settings(nomodel, "s", modes, json::array())));
}

TEST_CASE("MessageBreaks: text after a tool call or plan, or with a new messageId, starts a new paragraph") {
  using acp::Update;
  auto text = [](std::string t, std::string id = "") {
    Update u;
    u.kind = Update::Kind::agent_message;
    u.text = std::move(t);
    u.message_id = std::move(id);
    return u;
  };
  Update tool;
  tool.kind = Update::Kind::tool_call;
  acp::MessageBreaks b;
  CHECK(b.separator(text("I will use a tool.")) == "");
  CHECK(b.separator(text(" More.")) == "");
  CHECK(b.separator(tool) == "");
  CHECK(b.separator(text("Tool result seen")) == "\n\n");
  CHECK(b.separator(text(" and done.\n")) == "");
  CHECK(b.separator(tool) == "");
  CHECK(b.separator(text("After one newline")) == "\n");

  acp::MessageBreaks ids;
  CHECK(ids.separator(text("a", "m1")) == "");
  CHECK(ids.separator(text("b", "m1")) == "");
  CHECK(ids.separator(text("c", "m2")) == "\n\n");

  acp::MessageBreaks first;  // a tool call before any text: nothing to separate
  CHECK(first.separator(tool) == "");
  CHECK(first.separator(text("x")) == "");
}

TEST_CASE("last_telling_line: skips lines without a letter or digit (the } that ends a dump)") {
  CHECK(base::last_telling_line("Error: fetch failed\n  at x\n}\n") == "  at x");
  CHECK(base::last_telling_line("only\r\n]\n}") == "only");
  CHECK(base::last_telling_line("}\n]\n") == "");
  CHECK(base::last_telling_line("") == "");
}
