// Unit tests for rpc message handling: parsing a line, classifying it as request, notification,
// response or invalid, our_id(), dump() and the message builders.
#include "rpc/message.h"

#include <doctest/doctest.h>

#include <string>

using tether::rpc::classify;
using tether::rpc::dump;
using tether::rpc::json;
using tether::rpc::MessageKind;
using tether::rpc::our_id;
using tether::rpc::parse_line;

namespace {

// Parses `text` (which must be JSON) and classifies it.
MessageKind kind_of(const std::string& text) {
  auto msg = parse_line(text);
  REQUIRE_MESSAGE(msg.has_value(), "not JSON: " << text);
  return classify(*msg).kind;
}

const char* name(MessageKind k) {
  switch (k) {
    case MessageKind::request: return "request";
    case MessageKind::notification: return "notification";
    case MessageKind::response: return "response";
    case MessageKind::invalid: return "invalid";
  }
  return "?";
}

}  // namespace

namespace doctest {
template <>
struct StringMaker<MessageKind> {
  static String convert(MessageKind k) { return name(k); }
};
}  // namespace doctest

TEST_SUITE("rpc::message") {

TEST_CASE("parse_line accepts one JSON value and rejects anything else") {
  CHECK(parse_line("{\"a\":1}").has_value());
  CHECK(parse_line("  [1,2] ").has_value());
  CHECK_FALSE(parse_line("").has_value());
  CHECK_FALSE(parse_line("{").has_value());
  CHECK_FALSE(parse_line("{\"a\":1} trailing").has_value());
  CHECK_FALSE(parse_line("Traceback (most recent call last):").has_value());
  CHECK_FALSE(parse_line("{\"a\":\"\xff\"}").has_value());      // invalid UTF-8
  CHECK_FALSE(parse_line("{\"a\":\"\xc3\x28\"}").has_value());  // bad continuation byte
  auto ok = parse_line("{\"t\":\"caf\xc3\xa9\"}");               // valid UTF-8
  REQUIRE(ok.has_value());
  CHECK((*ok)["t"] == "caf\xc3\xa9");
}

TEST_CASE("parse_line refuses values nested deeper than 512, whatever brackets hide in strings") {
  auto nest = [](int n) { return "{\"p\":" + std::string(n, '[') + std::string(n, ']') + "}"; };
  CHECK(parse_line(nest(511)).has_value());        // 512 with the object
  CHECK_FALSE(parse_line(nest(512)).has_value());  // 513
  CHECK_FALSE(parse_line(nest(100000)).has_value());  // would overflow the stack when copied
  // Brackets inside strings (escaped quotes included) are text, not nesting.
  std::string text = "{\"t\":\"\\\"" + std::string(2000, '[') + "\"}";
  auto ok = parse_line(text);
  REQUIRE(ok.has_value());
  CHECK((*ok)["t"].get<std::string>().size() == 2001);
}

TEST_CASE("requests: method and id (string or integer)") {
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{}})") == MessageKind::request);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":"abc","method":"fs/read_text_file","params":{"path":"/x"}})") ==
        MessageKind::request);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":0,"method":"m"})") == MessageKind::request);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":-5,"method":"m","params":[1,2]})") == MessageKind::request);
  // "jsonrpc" may be missing (common in the wild); it is still a request.
  CHECK(kind_of(R"({"id":7,"method":"m"})") == MessageKind::request);
}

TEST_CASE("notifications: method without id") {
  CHECK(kind_of(R"({"jsonrpc":"2.0","method":"session/update","params":{"x":1}})") ==
        MessageKind::notification);
  CHECK(kind_of(R"({"jsonrpc":"2.0","method":"initialized"})") == MessageKind::notification);
}

TEST_CASE("responses: result or error with an id") {
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":1,"result":{"ok":true}})") == MessageKind::response);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":1,"result":null})") == MessageKind::response);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":"s-1","result":[]})") == MessageKind::response);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"nope"}})") ==
        MessageKind::response);
  // A parse error answered with a null id is a response (it matches none of ours).
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}})") ==
        MessageKind::response);
  CHECK(kind_of(R"({"jsonrpc":"2.0","id":null,"result":1})") == MessageKind::response);
}

TEST_CASE("invalid shapes") {
  struct Case {
    const char* text;
    const char* what;
  };
  const Case cases[] = {
      {R"([{"jsonrpc":"2.0","id":1,"method":"m"}])", "array: a batch"},
      {R"([])", "empty batch"},
      {R"(42)", "a number"},
      {R"("hello")", "a string"},
      {R"(null)", "null"},
      {R"({"jsonrpc":"2.0","result":1})", "response without id"},
      {R"({"jsonrpc":"2.0","error":{"code":1,"message":"m"}})", "error response without id"},
      {R"({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1,"message":"m"}})", "both result and error"},
      {R"({"jsonrpc":"2.0","id":1})", "neither method, result nor error"},
      {R"({})", "empty object"},
      {R"({"jsonrpc":"2.0","id":1,"method":5})", "non-string method"},
      {R"({"jsonrpc":"2.0","method":null})", "null method"},
      {R"({"jsonrpc":"1.0","id":1,"method":"m"})", "jsonrpc 1.0"},
      {R"({"jsonrpc":2.0,"id":1,"method":"m"})", "jsonrpc as a number"},
      {R"({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}})", "error without code"},
      {R"({"jsonrpc":"2.0","id":1,"error":{"code":"-32600","message":"m"}})", "string code"},
      {R"({"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}})", "fractional code"},
      {R"({"jsonrpc":"2.0","id":1,"error":"boom"})", "error not an object"},
      {R"({"jsonrpc":"2.0","id":1,"error":null})", "null error"},
      {R"({"jsonrpc":"2.0","id":{"a":1},"method":"m"})", "object id"},
      {R"({"jsonrpc":"2.0","id":[1],"result":1})", "array id"},
      {R"({"jsonrpc":"2.0","id":true,"result":1})", "boolean id"},
      {R"({"jsonrpc":"2.0","id":1,"method":"m","params":"str"})", "string params"},
      {R"({"jsonrpc":"2.0","method":"m","params":3})", "number params"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    auto msg = parse_line(c.text);
    REQUIRE(msg.has_value());
    auto cl = classify(*msg);
    CHECK(cl.kind == MessageKind::invalid);
    CHECK_FALSE(cl.why.empty());  // the reason goes to --trace and the counters
  }
}

TEST_CASE("a valid message has no reason attached") {
  auto msg = parse_line(R"({"jsonrpc":"2.0","id":1,"result":1})");
  REQUIRE(msg);
  CHECK(classify(*msg).why.empty());
}

TEST_CASE("our_id() only for integer ids") {
  CHECK(our_id(json(7)) == 7);
  CHECK(our_id(json(-3)) == -3);
  CHECK(our_id(json(0)) == 0);
  CHECK(our_id(*parse_line("9007199254740993")) == 9007199254740993LL);  // above 2^53: exact
  CHECK_FALSE(our_id(json("7")).has_value());
  CHECK_FALSE(our_id(*parse_line("7.0")).has_value());  // a float is not one of ours
  CHECK_FALSE(our_id(json(1.5)).has_value());
  CHECK_FALSE(our_id(json(nullptr)).has_value());
  CHECK_FALSE(our_id(json(true)).has_value());
  CHECK_FALSE(our_id(json::object()).has_value());
  // An unsigned id beyond int64 cannot be one we handed out (ours count up from 1).
  auto huge = our_id(*parse_line("18446744073709551615"));
  CHECK_FALSE((huge.has_value() && *huge >= 1));
  auto resp = parse_line(R"({"jsonrpc":"2.0","id":42,"result":{}})");
  REQUIRE(resp);
  CHECK(our_id((*resp)["id"]) == 42);
}

TEST_CASE("dump() of invalid UTF-8 does not throw and replaces the bad bytes") {
  json bad = {{"text", std::string("ok \xff\xfe end")}};
  CHECK_THROWS(bad.dump());  // what dump() protects against
  std::string out;
  CHECK_NOTHROW(out = dump(bad));
  CHECK(out.find("ok ") != std::string::npos);
  CHECK(out.find(" end") != std::string::npos);
  CHECK(out.find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
  CHECK(out.find('\n') == std::string::npos);
  CHECK(parse_line(out).has_value());  // what we write is valid JSON
}

TEST_CASE("dump() is one compact line") {
  json msg = tether::rpc::make_request(3, "session/prompt", {{"text", "a\nb"}});
  std::string line = dump(msg);
  CHECK(line == R"({"id":3,"jsonrpc":"2.0","method":"session/prompt","params":{"text":"a\nb"}})");
  CHECK(line.find('\n') == std::string::npos);
}

TEST_CASE("request_line() writes what dump(make_request()) writes") {
  using namespace tether::rpc;
  const json cases[] = {nullptr, json::object(), json::array({1, "x"}), {{"sessionId", "s-1"}, {"prompt", json::array({{{"type", "text"}, {"text", "a\"\n\u00e9"}}})}}};
  for (const char* method : {"session/prompt", "we\"ird\\method\n", ""}) {
    for (std::int64_t id : {std::int64_t{0}, std::int64_t{-7}, std::int64_t{9007199254740993}}) {
      for (const json& params : cases) {
        CAPTURE(method);
        CAPTURE(id);
        CHECK(request_line(id, method, raw_params(params)) == dump(make_request(id, method, params)));
      }
    }
  }
  CHECK(request_line(3, "m", raw_params(json{{"a", 1}})) == R"({"id":3,"jsonrpc":"2.0","method":"m","params":{"a":1}})");
  CHECK(request_line(3, "m", RawParams{R"([1,"x"])"}) == R"({"id":3,"jsonrpc":"2.0","method":"m","params":[1,"x"]})");
  CHECK(request_line(3, "m", RawParams{}) == R"({"id":3,"jsonrpc":"2.0","method":"m"})");
}

TEST_CASE("builders make messages that classify as what they are") {
  using namespace tether::rpc;
  json req = make_request(5, "m", {{"a", 1}});
  CHECK(req["jsonrpc"] == "2.0");
  CHECK(req["id"] == 5);
  CHECK(req["params"] == json{{"a", 1}});
  CHECK(classify(*parse_line(dump(req))).kind == MessageKind::request);

  json bare = make_request(6, "m", nullptr);
  CHECK_FALSE(bare.contains("params"));

  json note = make_notification("n", json::array({1}));
  CHECK_FALSE(note.contains("id"));
  CHECK(classify(*parse_line(dump(note))).kind == MessageKind::notification);

  json res = make_result("peer-1", {{"ok", true}});
  CHECK(res["id"] == "peer-1");
  CHECK(res["result"] == json{{"ok", true}});
  CHECK(classify(*parse_line(dump(res))).kind == MessageKind::response);

  json err = make_error(9, kMethodNotFound, "no such method");
  CHECK(err["error"]["code"] == -32601);
  CHECK(err["error"]["message"] == "no such method");
  CHECK_FALSE(err["error"].contains("data"));
  CHECK_FALSE(err.contains("result"));
  CHECK(classify(*parse_line(dump(err))).kind == MessageKind::response);

  json err_data = make_error(nullptr, kParseError, "bad", {{"line", 3}});
  CHECK(err_data["id"].is_null());
  CHECK(err_data["error"]["data"] == json{{"line", 3}});
  CHECK(classify(err_data).kind == MessageKind::response);
}

}  // TEST_SUITE
