#include "cli/tool_calls.h"

#include <algorithm>

namespace tether::cli {

const ToolCalls::Entry* ToolCalls::update(const acp::Update& u) {
  using K = acp::Update::Kind;
  if (u.kind != K::tool_call && u.kind != K::tool_call_update) return nullptr;
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.id == u.tool.id; });
  if (it == entries_.end()) {
    if (entries_.size() >= kMaxToolCalls) {
      ++dropped_;
      return nullptr;
    }
    entries_.push_back({u.tool.id, "", "", "pending"});
    it = entries_.end() - 1;
  }
  const std::string old_status = it->status;
  if (u.tool.title) it->title = *u.tool.title;
  if (u.tool.kind) it->kind = *u.tool.kind;
  if (u.tool.status) it->status = *u.tool.status;
  return u.kind == K::tool_call || it->status != old_status ? &*it : nullptr;
}

nlohmann::ordered_json ToolCalls::to_json() const {
  auto out = nlohmann::ordered_json::array();
  for (const auto& e : entries_) {
    nlohmann::ordered_json one = {{"id", e.id}, {"title", e.title}};
    if (!e.kind.empty()) one["kind"] = e.kind;
    one["status"] = e.status;
    out.push_back(std::move(one));
  }
  return out;
}

}  // namespace tether::cli
