// parse_line()'s fast path (json_read.cpp): one line of JSON read by RapidJSON into the project's
// nlohmann value, several times faster than nlohmann's own parser. Call parse_line(), which falls
// back to nlohmann whenever this path declines; use this directly only to test it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "rpc/message.h"

namespace tether::rpc {

// The value nlohmann's parser would give for `line`, or nothing: either the line is not JSON, or
// it is one of the inputs where the two parsers could disagree (see json_read.cpp), which this
// path leaves to nlohmann. Refuses values nested deeper than kMaxJsonDepth.
std::optional<json> fast_parse(std::string_view line);
// The same for batch's ordered_json (members in the order written; a repeated key keeps its first
// place and its last value, as nlohmann's parser does).
std::optional<nlohmann::ordered_json> fast_parse_ordered(std::string_view line);

// A response to one of our requests, read by read_response().
struct FastResponse {
  std::int64_t id = 0;
  bool is_error = false;
  json value;  // the "result" or "error" member
};

// The dispatcher's hot path for a response: a line that is exactly a JSON-RPC response with an
// integer id ("jsonrpc" at most once and "2.0", "id", one "result" or a well-formed "error", in
// any order, nothing else at the top) gives its id and value, and only the value is built.
// Nothing for anything else, which parse_line() and classify() then read the long way; what
// this path gives is what they would give.
std::optional<FastResponse> read_response(std::string_view line);

// One member that scan_fields() looks for: a path of object keys from the top ("method",
// "params.update.sessionUpdate"; never inside an array), and what it found there.
struct Field {
  enum class Type : std::uint8_t { absent, null, boolean, number, string, object, array };
  explicit Field(std::string_view p) : path(p) {}
  std::string_view path;
  Type type = Type::absent;
  std::string text;  // a string: its decoded text; a number: its token as written
  int seen = 0;      // occurrences: more than 1 when a key is repeated
};

// Reads `line` without building any value, filling in `fields`. True only when the line is a JSON
// object that parse_line() reads with fast_parse() (so nlohmann reads it the same way): false for
// anything else, which the caller then hands to parse_line(). The hot path of the dispatcher
// (what routing needs of a line) and of a session's message chunks.
bool scan_fields(std::string_view line, std::span<Field> fields);

// An integer id as nlohmann reads the token (int64 or uint64); nothing for anything else.
bool is_integer_token(std::string_view token);

}  // namespace tether::rpc
