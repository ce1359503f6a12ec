// Unit tests for parse_line's fast path (rpc/json_read.cpp): whatever it accepts, nlohmann's own
// parser accepts with the same value, of the same types (an integer stays an integer, unsigned
// stays unsigned, -0.0 keeps its sign); the inputs where the two parsers differ are left to
// nlohmann. Checked on hand-picked edge cases and on many mutations of real bridge lines.
#include "rpc/json_read.h"

#include "rpc/message.h"

#include <doctest/doctest.h>

#include "support/mutate.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

using tether::rpc::fast_parse;
using tether::rpc::json;
using tether::rpc::parse_line;
using tether::test::Mutator;

namespace {

// Same value and same types all the way down (nlohmann's == says 1 == 1.0); for ordered_json,
// members in the same order too.
template <typename J>
bool same(const J& a, const J& b) {
  if (a.type() != b.type()) return false;
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(), jt = b.begin(); it != a.end(); ++it, ++jt)
      if (it.key() != jt.key() || !same(*it, *jt)) return false;
    return true;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (!same(a[i], b[i])) return false;
    return true;
  }
  if (a.is_number_float()) {
    double x = a.template get<double>(), y = b.template get<double>();
    return x == y && std::signbit(x) == std::signbit(y);
  }
  return a == b;
}

// The fast path may decline anything, but what it accepts nlohmann accepts, with the same value.
void check_agrees(const std::string& text) {
  INFO("input: " << text);
  if (auto fast = fast_parse(text)) {
    json slow = json::parse(text, nullptr, false);
    REQUIRE_FALSE(slow.is_discarded());
    CHECK(same(*fast, slow));
  }
  if (auto fast = tether::rpc::fast_parse_ordered(text)) {
    auto slow = nlohmann::ordered_json::parse(text, nullptr, false);
    REQUIRE_FALSE(slow.is_discarded());
    CHECK(same(*fast, slow));
  }
}

// read_response accepts only what the long way (parse_line, then classify) reads as a response,
// and gives the same id and value.
void check_response_agrees(const std::string& text) {
  INFO("input: " << text);
  auto fast = tether::rpc::read_response(text);
  if (!fast) return;
  auto msg = parse_line(text);
  REQUIRE(msg.has_value());
  REQUIRE(tether::rpc::classify(*msg).kind == tether::rpc::MessageKind::response);
  CHECK(tether::rpc::our_id((*msg)["id"]) == fast->id);
  CHECK(fast->is_error == !msg->contains("result"));
  CHECK(same(fast->value, (*msg)[fast->is_error ? "error" : "result"]));
}

}  // namespace

TEST_SUITE("rpc::json_read") {

TEST_CASE("a bridge's usual lines take the fast path, with nlohmann's value") {
  for (const char* text : {
           R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s","update":{"sessionUpdate":"agent_message_chunk","content":{"type":"text","text":"word "}}}})",
           R"({"jsonrpc":"2.0","id":7,"result":{"stopReason":"end_turn","usage":{"inputTokens":12,"cost":0.25}}})",
           R"({"jsonrpc":"2.0","id":"a","error":{"code":-32601,"message":"no","data":[null,true,false,-1,1.5e3]}})",
           "{\"t\":\"caf\xc3\xa9 \\u00e9 \\ud83d\\ude00 \\n\\t\\\\ \\/\"}",
       }) {
    auto fast = fast_parse(text);
    REQUIRE_MESSAGE(fast.has_value(), text);
    check_agrees(text);
  }
}

TEST_CASE("numbers keep nlohmann's types") {
  auto v = fast_parse(R"([0,-0,5,-5,9223372036854775807,-9223372036854775808,18446744073709551615,18446744073709551616,-9223372036854775809,1.0,-0.0,1e2,12345678901234567890123])");
  REQUIRE(v.has_value());
  check_agrees(v->dump());
  CHECK((*v)[0].is_number_unsigned());
  CHECK((*v)[1].is_number_integer());
  CHECK_FALSE((*v)[1].is_number_unsigned());
  CHECK((*v)[6].is_number_unsigned());
  CHECK((*v)[7].is_number_float());   // beyond uint64
  CHECK((*v)[8].is_number_float());   // below int64
  CHECK((*v)[9].is_number_float());
  CHECK(std::signbit((*v)[10].get<double>()));
  // An underflow is nlohmann's call (it reads 0.0): declined here, taken by parse_line.
  CHECK_FALSE(fast_parse("[1e-400]").has_value());
  REQUIRE(parse_line("[1e-400]").has_value());
  CHECK((*parse_line("[1e-400]"))[0] == 0.0);
}

TEST_CASE("where the parsers could differ, the fast path declines and parse_line asks nlohmann") {
  // nlohmann refuses these; so must parse_line.
  std::vector<std::string> refused = {R"({"a":"\udc00"})", R"({"a":"\ud800"})", R"({"\udc00":1})", R"({"a":1e400})",
                                      "{\"a\":\"\xed\xa0\x80\"}", std::string("{\"a\":\"\0\"}", 9)};
  for (const std::string& s : refused) {
    CHECK_FALSE_MESSAGE(fast_parse(s).has_value(), s);
    CHECK_FALSE_MESSAGE(parse_line(s).has_value(), s);
  }
  // A NUL after the value: nlohmann reads up to it (RapidJSON would too, so the fast path declines
  // any line with a NUL and parse_line gives nlohmann's answer).
  std::string nul("{\"a\":1}\0x", 10);
  CHECK_FALSE(fast_parse(nul).has_value());
  CHECK(parse_line(nul).has_value() == !json::parse(nul, nullptr, false).is_discarded());
  // nlohmann takes a byte-order mark; the fast path leaves it to it.
  std::string bom = "\xEF\xBB\xBF{\"a\":1}";
  CHECK_FALSE(fast_parse(bom).has_value());
  CHECK(parse_line(bom).has_value());
  // Duplicate keys: the last wins, as in nlohmann.
  // ordered_json: the last value, in the first one's place, as nlohmann's parser does.
  auto odup = tether::rpc::fast_parse_ordered(R"({"a":1,"b":0,"a":2})");
  REQUIRE(odup.has_value());
  CHECK(odup->dump() == R"({"a":2,"b":0})");
  check_agrees(R"({"z":1,"a":[{"y":2,"b":3}],"m":null,"z":4})");
  auto dup = fast_parse(R"({"a":1,"a":2})");
  REQUIRE(dup.has_value());
  CHECK((*dup)["a"] == 2);
}

TEST_CASE("scan_fields finds members by their path, and only there") {
  using tether::rpc::Field;
  using T = Field::Type;
  Field f[] = {Field("method"), Field("id"), Field("params.update.kind"), Field("params")};
  REQUIRE(tether::rpc::scan_fields(R"({"id":7,"params":{"update":{"kind":"k\u00e9"},"x":[{"kind":1}]},"method":"m"})", f));
  CHECK((f[0].type == T::string && f[0].text == "m"));
  CHECK((f[1].type == T::number && f[1].text == "7"));
  CHECK(f[2].text == "k\xc3\xa9");
  CHECK(f[3].type == T::object);
  // Keys under a top-level "" or a key with a dot are not top-level members, nor paths.
  for (const char* text : {R"({"":{"method":"x","id":1}})", R"({"a":{"":{"method":"x"}},"b.c":{"id":2}})",
                           R"({"method.x":1,"x":{"":{"id":3}}})"}) {
    Field g[] = {Field("method"), Field("id")};
    REQUIRE_MESSAGE(tether::rpc::scan_fields(text, g), text);
    CHECK_MESSAGE(g[0].seen == 0, text);
    CHECK_MESSAGE(g[1].seen == 0, text);
  }
  Field h[] = {Field("a.b")};
  REQUIRE(tether::rpc::scan_fields(R"({"a.b":1,"a":{"b":2}})", h));
  CHECK((h[0].seen == 1 && h[0].text == "2"));
  // Not an object at the top: false (the caller's long way says why).
  Field k[] = {Field("method")};
  CHECK_FALSE(tether::rpc::scan_fields(R"([{"method":"x"}])", k));
}

TEST_CASE("depth: 512 levels pass, 513 are refused by both paths") {
  auto nest = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
  CHECK(fast_parse(nest(512)).has_value());
  CHECK_FALSE(fast_parse(nest(513)).has_value());
  CHECK_FALSE(parse_line(nest(513)).has_value());
}

TEST_CASE("mutations of real lines: whatever the fast path accepts, nlohmann reads the same") {
  Mutator lines({
      R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":"s-1","update":{"sessionUpdate":"tool_call","toolCallId":"t","title":"Edit","content":[{"type":"diff","path":"/a","oldText":null,"newText":"x\ny"}]}}})",
      R"({"jsonrpc":"2.0","id":12,"method":"session/request_permission","params":{"options":[{"optionId":"allow","kind":"allow_once"}],"n":-1.25e-3}})",
      "{\"k\":\"\\u00e9\\ud83d\\ude00\xc3\xa9\",\"n\":[1,2.5,-0,true,false,null,{}]}",
  }, "{}[]\",:\\/-+.0123456789eEtrufalsn u\xc3\xa9\xed\xa0\xff\x01\t\r", 0x9E3779B97F4A7C15ull);
  int accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = lines.next_line(1);
    if (fast_parse(s)) ++accepted;
    check_agrees(s);
  }
  CHECK(accepted > 100);  // the mutations exercise the accepting side too
}

TEST_CASE("read_response: a plain response is read with its id and value; anything else declines") {
  using tether::rpc::read_response;
  auto r = read_response(R"({"jsonrpc":"2.0","id":7,"result":{"stopReason":"end_turn","usage":[1,2.5]}})");
  REQUIRE(r.has_value());
  CHECK(r->id == 7);
  CHECK_FALSE(r->is_error);
  CHECK(same(r->value, json::parse(R"({"stopReason":"end_turn","usage":[1,2.5]})")));
  r = read_response(R"({"result":null,"id":-3})");  // no "jsonrpc", members in any order
  REQUIRE(r.has_value());
  CHECK((r->id == -3 && r->value.is_null()));
  r = read_response(R"( {"id":1,"jsonrpc":"2.0","error":{"code":-32601,"message":"no"}} )");
  REQUIRE(r.has_value());
  CHECK((r->is_error && r->value["code"] == -32601));
  for (const char* no : {
           R"({"jsonrpc":"2.0","id":"7","result":1})",                // a string id is not ours
           R"({"jsonrpc":"2.0","id":null,"result":1})",
           R"({"jsonrpc":"2.0","id":1.0,"result":1})",
           R"({"jsonrpc":"2.0","result":1})",                         // no id
           R"({"jsonrpc":"2.0","id":1,"id":2,"result":1})",           // a member twice
           R"({"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"result":1})",
           R"({"jsonrpc":"2.0","id":1,"result":1,"error":{"code":1}})",
           R"({"jsonrpc":"2.0","id":1,"result":1,"result":2})",
           R"({"jsonrpc":"1.0","id":1,"result":1})",
           R"({"jsonrpc":2,"id":1,"result":1})",
           R"({"jsonrpc":"2.0","id":1,"result":1,"extra":0})",        // anything else at the top
           R"({"jsonrpc":"2.0","id":1,"method":"m","result":1})",
           R"({"jsonrpc":"2.0","id":1,"error":{"message":"no code"}})",
           R"({"jsonrpc":"2.0","id":1,"error":{"code":1.5}})",
           R"({"jsonrpc":"2.0","id":1,"error":"text"})",
           R"({"jsonrpc":"2.0","id":1,"result":"\u00e9"})",           // escapes take the long way
           R"({"jsonrpc":"2.0","id":1})",
           R"([{"jsonrpc":"2.0","id":1,"result":1}])",
           R"({"jsonrpc":"2.0","id":1,"result":1)",
           R"({"jsonrpc":"2.0","id":1,"result":1e999})",
       }) {
    CAPTURE(no);
    CHECK_FALSE(read_response(no).has_value());
  }
  // Depth counts from the message, as parse_line counts it.
  auto nested = [](int n) { return R"({"id":1,"result":)" + std::string(n, '[') + std::string(n, ']') + "}"; };
  CHECK(read_response(nested(511)).has_value());
  CHECK(parse_line(nested(511)).has_value());
  CHECK_FALSE(read_response(nested(512)).has_value());
  CHECK_FALSE(parse_line(nested(512)).has_value());
}

TEST_CASE("read_response on mutations of responses: what it accepts, the long way reads the same") {
  Mutator lines({
      R"({"jsonrpc":"2.0","id":12,"result":{"stopReason":"end_turn","_meta":{"a":[1,-2.5e3,null,true]}}})",
      R"({"id":3,"error":{"code":-32000,"message":"boom","data":{"x":"y"}},"jsonrpc":"2.0"})",
      R"({"jsonrpc":"2.0","result":[{"k":"v"},"s",0],"id":18446744073709551615})",
  }, "{}[]\",:\\-.0123456789eEtrufalsn uidx\xc3\xa9\t", 0x2545F4914F6CDD1Dull);
  int accepted = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string s = lines.next_line(0);
    if (tether::rpc::read_response(s)) ++accepted;
    check_response_agrees(s);
  }
  CHECK(accepted > 1000);
}

}  // TEST_SUITE

// Every single-byte edit of responses (all 256 values, replaced or inserted at every
// position; each byte removed), and a set of hand-picked ones.
TEST_CASE("read_response agrees with the long way on every single-byte edit") {
  const std::vector<std::string> seeds = {
      R"({"jsonrpc":"2.0","id":12,"result":{"id":3,"result":[{}],"error":{"code":1}}})",
      R"({"id":3,"error":{"code":-32000,"message":"m","data":[-0,1e2,1.5]},"jsonrpc":"2.0"})",
      R"({"result":-0,"id":9223372036854775807})",
      R"({"result":{},"id":-0})",
      R"({"result":[],"jsonrpc":"2.0","id":1})",
  };
  int accepted = 0;
  std::size_t n = 0;
  for (const auto& seed : seeds) {
    for (const auto& s : tether::test::byte_edits(seed)) {
      if (tether::rpc::read_response(s)) ++accepted;
      check_response_agrees(s);
      ++n;
    }
  }
  for (const char* s : {
           R"({"id":18446744073709551615,"result":1})", R"({"id":18446744073709551616,"result":1})",
           R"({"id":-9223372036854775808,"result":1})", R"({"id":-9223372036854775809,"result":1})",
           R"({"id":1,"result":1e308})", R"({"id":1,"result":-1e-400})", R"({"id":1,"result":123456789012345678901234567890})",
           R"({"id":1,"error":{"code":18446744073709551615}})", R"({"id":1,"error":{"code":-0}})",
           R"({"id":1,"error":{"code":1,"code":1.5}})", R"({"id":1,"error":{"code":1.5,"code":1}})",
           R"({"id":1,"result":{"a":1,"a":{"b":[]}}})", "{\"id\":1,\"result\":\"\xed\xa0\x80\"}",
           "{\"id\":1,\"result\":\"\xc0\x80\"}", "{\"id\":1,\"result\":\"\x7f\"}", "\xef\xbb\xbf{\"id\":1,\"result\":1}",
           "{\"id\":1,\"result\":1}\r", "\t{\"id\" : 1 , \"result\" : [ ] }\n", R"({"":1,"id":1,"result":1})",
           R"({"id":1,"result":1,"":1})", R"({"id":01,"result":1})", R"({"id":1,"result":.5})",
       }) {
    if (tether::rpc::read_response(s)) ++accepted;
    check_response_agrees(s);
  }
  MESSAGE(accepted << " of " << n << " edits accepted");
  CHECK(accepted > 1000);
}
