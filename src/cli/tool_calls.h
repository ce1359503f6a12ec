// The tool calls of one turn, as `prompt --json` and batch records report them (`toolCalls`):
// one entry per toolCallId in the order they first appeared, each with the latest title, kind
// and status the agent sent (a tool_call_update carries only what changed). Bounded: an agent
// that invents ids without end stops being recorded after kMaxToolCalls (the count goes on).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/update.h"

namespace tether::cli {

class ToolCalls {
 public:
  static constexpr std::size_t kMaxToolCalls = 1000;

  struct Entry {
    std::string id, title, kind, status;
  };

  // Takes a tool_call or tool_call_update (other kinds are ignored). Returns the entry when the
  // update is worth a line on stderr (a new call, or a status change), else null.
  const Entry* update(const acp::Update& u);
  void clear() {
    entries_.clear();
    dropped_ = 0;
  }
  const std::vector<Entry>& entries() const { return entries_; }
  // [{id, title, kind?, status}, ...]
  nlohmann::ordered_json to_json() const;

 private:
  std::vector<Entry> entries_;
  std::size_t dropped_ = 0;
};

}  // namespace tether::cli
