// JSON-RPC 2.0 messages: parsing one line, classifying it, and building the lines we send.
// Decoding exceptions are caught here and nowhere else in rpc/.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tether::rpc {

using json = nlohmann::json;

enum class MessageKind {
  request,       // method + id: the peer asks us; must be answered exactly once
  notification,  // method, no id
  response,      // result or error + id: an answer to one of our requests
  invalid,       // JSON, but not a JSON-RPC message (counted, skipped)
};

struct Classified {
  MessageKind kind = MessageKind::invalid;
  std::string_view why;  // for invalid: what is wrong, for --trace and counters
};

// How deep JSON from outside may nest, from any source (bridge lines, socket clients, batch input,
// the batch journal). nlohmann's parser keeps its own stack, but copying, comparing and dumping a
// value recurse: a line nested a hundred thousand deep would overflow ours. No message needs more.
inline constexpr int kMaxJsonDepth = 512;

// True when `text` opens more than `max_depth` arrays or objects at once (brackets inside strings
// do not count). A scan of the raw text, cheap enough for every line: it runs before parsing, so a
// deep value is never built.
bool nested_deeper_than(std::string_view text, int max_depth = kMaxJsonDepth);

// Parses one line; nothing when it is not valid JSON (invalid UTF-8 included) or is nested deeper
// than kMaxJsonDepth.
std::optional<json> parse_line(std::string_view line);
Classified classify(const json& msg);

// The text of the number that is the value of top-level key `key` in the JSON object `text`, as
// written, when nlohmann reads it as a double (an integer beyond 64 bits, `1.50`, `1e2`: printed
// back, it would change); empty otherwise. A second pass over the text: call it only when the
// parsed value is a float. Works for any nlohmann json type (the SAX events are the same).
std::string raw_float_text(std::string_view text, std::string_view key);

// The member `key` of an object, or null (not an object, or no such member).
const json* member(const json& obj, std::string_view key);
// The string member `key`, or "" (absent, or not a string).
std::string string_of(const json& obj, std::string_view key);

// Our request ids are integers we hand out; a response id that is not one (a string, a float,
// null) cannot match a request of ours.
std::optional<std::int64_t> our_id(const json& id);

// One compact line, without the newline; invalid UTF-8 from a bridge is replaced, never thrown.
std::string dump(const json& value);

json make_request(std::int64_t id, std::string_view method, json params);
// Params already written as one compact JSON value (an object or an array; empty: none), for a
// caller on the hot path that would otherwise build a json value only to have it written out
// (a turn's session/prompt: its content is not copied into a params object per send).
struct RawParams {
  std::string text;
};
RawParams raw_params(const json& params);  // empty for null
// dump(make_request(id, method, params)), byte for byte, without building the message: the
// request line of every call (a turn's prompt is one).
std::string request_line(std::int64_t id, std::string_view method, const RawParams& params);
json make_notification(std::string_view method, json params);
json make_result(const json& id, json result);
json make_error(const json& id, int code, std::string_view message, json data = nullptr);

// JSON-RPC error codes tether uses.
inline constexpr int kParseError = -32700;
inline constexpr int kInvalidRequest = -32600;
inline constexpr int kMethodNotFound = -32601;
inline constexpr int kInvalidParams = -32602;
inline constexpr int kInternalError = -32603;
inline constexpr int kRequestCancelled = -32800;
// A tether server's own failure (its bridge died, its restart budget is spent), tether's error
// object in `data`; an agent's errors pass through a server unchanged and never carry it. In the
// range JSON-RPC leaves to implementations, away from ACP's -32000 (auth required) and -32002.
inline constexpr int kTetherServerError = -32090;

}  // namespace tether::rpc
