// Fuzz target: the pure decisions of ACP session setup (acp/setup.h) over agent-sent JSON: the
// initialize answer, an error object, auth methods, modes and config options. The input is one
// JSON value, parsed with rpc::parse_line as on the wire; each function gets the value itself and
// the member it would be handed in real use (result.authMethods, result.modes, ...). An optional
// "want" member ({"mode":…, "model":…, "set":[[k,v],…]}) stands for the user's --mode, --model
// and --set, next to a few fixed settings. The oracle, besides not crashing: the error texts are
// one line where they promise it, the reason is cut to its limit, a planned request names its
// method, and an auth choice is either a method or an error object.
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <variant>

#include "acp/setup.h"
#include "fuzz_support.h"
#include "rpc/message.h"

using namespace tether;
using nlohmann::json;

namespace {

const json& at(const json& v, std::string_view key) {
  static const json null;
  const json* m = rpc::member(v, key);
  return m ? *m : null;
}

// A fixed environment: two of the usual API key variables are set.
const char* fake_env(const char* name) {
  if (std::strcmp(name, "OPENAI_API_KEY") == 0 || std::strcmp(name, "GEMINI_API_KEY") == 0) return "sk-test";
  return nullptr;
}

void settings(const acp::SessionSettings& want, const json& session) {
  auto r = acp::plan_settings(want, "sess-1", at(session, "modes"), at(session, "configOptions"));
  if (auto* reqs = std::get_if<std::vector<acp::SettingRequest>>(&r)) {
    for (const auto& req : *reqs) {
      FUZZ_CHECK(req.method == "session/set_mode" || req.method == "session/set_config_option");
      (void)rpc::dump(req.params);
    }
  } else {
    FUZZ_CHECK(std::get<json>(r).is_object());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = rpc::parse_line(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!parsed) return 0;
  const json& v = *parsed;
  // A whole JSON-RPC answer, or the result/error alone.
  const json& result = rpc::member(v, "result") ? at(v, "result") : v;
  const json& error = rpc::member(v, "error") ? at(v, "error") : v;

  auto init = acp::read_initialize(result);
  if (auto* p = std::get_if<acp::AgentProfile>(&init)) {
    FUZZ_CHECK(p->auth_methods.is_array() && p->capabilities.is_object());
    (void)acp::describe_auth_methods(p->auth_methods);
  } else {
    FUZZ_CHECK(std::get<json>(init).is_object());
  }

  std::string text = acp::rpc_error_text(error);
  std::string reason = acp::rpc_error_reason(error);
  FUZZ_CHECK(reason.find('\n') == std::string::npos && reason.find('\r') == std::string::npos);
  FUZZ_CHECK(reason.size() <= 504);  // 500 bytes and an ellipsis at most
  FUZZ_CHECK(text.rfind("error", 0) == 0);
  FUZZ_CHECK(acp::rpc_error_extra(error).is_object());
  (void)acp::is_auth_required(error);

  const json& methods = rpc::member(result, "authMethods") ? at(result, "authMethods") : v;
  std::string listing = acp::describe_auth_methods(methods);
  FUZZ_CHECK(listing.find('\r') == std::string::npos);
  if (methods.is_array()) {
    for (const auto& m : methods) (void)acp::auth_method_vars(m);
  }
  for (const std::string& requested : {std::string(), rpc::string_of(v, "requested"), std::string("agent")}) {
    auto choice = acp::choose_auth(methods, requested, fake_env, error);
    FUZZ_CHECK(choice.method_id.empty() == choice.error.is_object());
    if (!requested.empty() && !choice.method_id.empty()) FUZZ_CHECK(choice.method_id == requested);
  }

  (void)acp::describe_settings(at(result, "modes"), at(result, "configOptions"));
  (void)acp::describe_settings(v, v);
  if (const json* opt = acp::model_option(at(result, "configOptions"))) (void)acp::config_option_values(*opt);
  (void)acp::config_option_values(v);

  settings({"plan", "", {}}, result);
  settings({"", "gpt-5", {}}, result);
  settings({"", "", {{"thought_level", "high"}, {"thought_level", "low"}}}, result);
  if (const json* want = rpc::member(v, "want")) {
    acp::SessionSettings w{rpc::string_of(*want, "mode"), rpc::string_of(*want, "model"), {}};
    if (const json* set = rpc::member(*want, "set"); set && set->is_array()) {
      for (const auto& kv : *set)
        if (kv.is_array() && kv.size() == 2 && kv[0].is_string() && kv[1].is_string())
          w.set.emplace_back(kv[0].get<std::string>(), kv[1].get<std::string>());
    }
    settings(w, result);
  }
  return 0;
}
