// Fuzz target: acp::parse_update and what the front-ends do with an update (content_text, the
// describe_* lines, MessageBreaks). The input is one turn: newline-separated lines, each a
// session/update notification, or its `update` member alone, as an agent sends them. Lines go
// through rpc::parse_line first, as on the wire. The oracle, besides not crashing: an update keeps
// the kind name it was sent with, a known kind never comes back as unknown, a tool call has its
// id, and a message break is only ever line breaks.
#include <cstdint>
#include <string>
#include <string_view>

#include "acp/update.h"
#include "fuzz_support.h"
#include "rpc/message.h"

using namespace tether;

namespace {

void one(const acp::json& msg, acp::MessageBreaks& breaks) {
  const acp::json* params = rpc::member(msg, "params");
  const acp::json* update = params ? rpc::member(*params, "update") : nullptr;
  const acp::json& value = update ? *update : msg;

  (void)acp::content_text(value);
  if (const acp::json* content = rpc::member(value, "content")) (void)acp::content_text(*content);
  if (auto tool = acp::parse_tool_call(value, true)) (void)acp::describe_tool_call(*tool);
  if (auto tool = acp::parse_tool_call(value, false)) (void)acp::describe_tool_call(*tool);
  if (const acp::json* tool = rpc::member(value, "toolCall")) {  // a permission request's
    if (auto t = acp::parse_tool_call(*tool, false)) (void)acp::describe_tool_call(*t);
  }

  auto u = acp::parse_update(value);
  if (!u) return;
  FUZZ_CHECK(u->kind_name == rpc::string_of(value, "sessionUpdate"));
  FUZZ_CHECK(u->raw == value);
  using K = acp::Update::Kind;
  if (u->kind == K::tool_call || u->kind == K::tool_call_update) {
    FUZZ_CHECK(!u->tool.id.empty() || rpc::string_of(value, "toolCallId").empty());
    (void)acp::describe_tool_call(u->tool);
  }
  if (u->kind == K::tool_call) FUZZ_CHECK(u->tool.title.has_value() && u->tool.status.has_value());
  if (u->kind == K::plan) (void)acp::describe_plan(u->plan);
  if (u->kind == K::unknown) {
    for (std::string_view known : {"agent_message_chunk", "tool_call", "plan", "usage_update"})
      FUZZ_CHECK(u->kind_name != known);
  }
  std::string sep = breaks.separator(*u);
  FUZZ_CHECK(sep.size() <= 2 && sep.find_first_not_of('\n') == std::string::npos);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view rest(reinterpret_cast<const char*>(data), size);
  acp::MessageBreaks breaks;
  while (!rest.empty()) {
    auto nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    if (auto msg = rpc::parse_line(line)) one(*msg, breaks);
  }
  return 0;
}
