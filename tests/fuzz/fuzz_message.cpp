// Fuzz target: rpc::parse_line and rpc::classify, what tether does first with every line a bridge
// or a socket client sends. The input is one line. Besides not crashing: a value that parses has
// a kind and only an invalid one has a reason; what the fast path (RapidJSON) accepts, nlohmann
// accepts with the same value; its compact dump parses again to the same dump
// (what tether forwards is what it read); the helpers that pick members apart and the builders
// that wrap a peer's id and data into our own messages accept any value.
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_support.h"
#include "rpc/json_read.h"
#include "rpc/message.h"

using namespace tether::rpc;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  // parse_line's fast path (RapidJSON) accepts nothing nlohmann refuses, and reads the same value.
  if (auto fast = fast_parse(line)) {
    json slow = json::parse(line, nullptr, false);
    FUZZ_CHECK(!slow.is_discarded());
    FUZZ_CHECK(dump(*fast) == dump(slow));
  }
  auto msg = parse_line(line);
  if (!msg) return 0;

  Classified c = classify(*msg);
  FUZZ_CHECK((c.kind == MessageKind::invalid) == !c.why.empty());

  std::string text = dump(*msg);
  auto again = parse_line(text);
  FUZZ_CHECK(again.has_value());
  FUZZ_CHECK(dump(*again) == text);

  const json null;
  const json* id = member(*msg, "id");
  (void)our_id(id ? *id : null);
  (void)string_of(*msg, "method");
  const json* error = member(*msg, "error");
  (void)string_of(error ? *error : null, "message");

  if (c.kind == MessageKind::request) {
    // The answers tether sends back to a request it cannot serve, and a forwarded copy.
    // (It nests the request two deeper, so parse_line's own depth limit may refuse it.)
    std::string answer = dump(make_error(*id, kMethodNotFound, string_of(*msg, "method"), *msg));
    FUZZ_CHECK(!json::parse(answer, nullptr, false).is_discarded());
    (void)dump(make_result(*id, *msg));
  }
  const json* params = member(*msg, "params");
  (void)dump(make_request(1, "x", params ? *params : null));
  (void)dump(make_notification("x", params ? *params : null));
  return 0;
}
