// Unit tests for dump()'s fast path (rpc/json_write.cpp): it writes what nlohmann's
// dump(-1, ' ', false, replace) writes, byte for byte, for both JSON types the project uses (the
// sorted json and batch's ordered_json). Checked on hand-picked strings (every escape, every kind
// of broken UTF-8) and on many random values built from them.
#include "rpc/json_write.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

using tether::rpc::append_json;

namespace {

template <typename J>
std::string reference(const J& v) {
  return v.dump(-1, ' ', false, J::error_handler_t::replace);
}

template <typename J>
std::string fast(const J& v) {
  std::string out = "prefix:";
  append_json(out, v);
  return out.substr(7);
}

// Strings that exercise every branch: escapes, control bytes, DEL, valid multi-byte UTF-8 at
// every length and boundary, and broken UTF-8 of each kind.
const std::vector<std::string>& strings() {
  static const std::vector<std::string> s = {
      "", "plain", "with \"quotes\" and \\ backslash", "\b\f\n\r\t", std::string("nul\0inside", 10),
      "\x01\x1f\x7f", "caf\xc3\xa9", "\xe2\x82\xac euro", "\xf0\x9f\x98\x80 emoji", "\xef\xbf\xbf",
      "\xf4\x8f\xbf\xbf",             // U+10FFFF, the last code point
      "\xc3", "\xc3(", "\xe2\x82", "\xe2\x28\xa1", "\xf0\x9f\x98",  // cut short or bad continuation
      "\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",              // overlong
      "\xed\xa0\x80", "\xed\xbf\xbf",                               // surrogates
      "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\x80", "a\x80" "b\xc3\xa9\xc3",
      "long ascii run long ascii run long ascii run \n then more text after the escape........",
  };
  return s;
}

std::uint64_t rng_state = 0x9e3779b97f4a7c15u;
std::uint64_t next() {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

template <typename J>
J random_value(int depth) {
  switch (next() % (depth > 3 ? 6 : 8)) {
    case 0: return nullptr;
    case 1: return next() % 2 == 0;
    case 2: return static_cast<std::int64_t>(next()) >> (next() % 64);
    case 3: return next() >> (next() % 64);
    case 4: {
      const double d[] = {0.0, -0.0, 1.5, -2.25e-300, 1e300, 0.1, 123456789.125, std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity()};
      return d[next() % (sizeof d / sizeof d[0])];
    }
    case 5: return strings()[next() % strings().size()];
    case 6: {
      J a = J::array();
      for (std::uint64_t n = next() % 4; n > 0; --n) a.push_back(random_value<J>(depth + 1));
      return a;
    }
    default: {
      J o = J::object();
      for (std::uint64_t n = next() % 4; n > 0; --n) o[strings()[next() % strings().size()]] = random_value<J>(depth + 1);
      return o;
    }
  }
}

}  // namespace

TEST_CASE("append_json writes each hand-picked string as dump() does") {
  for (const std::string& s : strings()) {
    CAPTURE(s);
    CHECK(fast(nlohmann::json(s)) == reference(nlohmann::json(s)));
    nlohmann::json obj = {{s, s}};
    CHECK(fast(obj) == reference(obj));
    std::string direct = "x";
    tether::rpc::append_json_string(direct, s);
    CHECK(direct == "x" + reference(nlohmann::json(s)));
  }
}

TEST_CASE("append_json writes scalars and containers as dump() does") {
  const nlohmann::json cases[] = {nullptr, true, false, 0, -1, std::numeric_limits<std::int64_t>::min(),
                                  std::numeric_limits<std::uint64_t>::max(), 1.0, -0.0, 3.14, 1e21,
                                  nlohmann::json::array(), nlohmann::json::object(),
                                  nlohmann::json::binary({1, 2, 3}), {{"b", 1}, {"a", {1, "x", nullptr}}}};
  for (const auto& v : cases) CHECK(fast(v) == reference(v));
}

TEST_CASE("append_json matches dump() on random values, sorted and ordered objects") {
  for (int i = 0; i < 5000; ++i) {
    auto v = random_value<nlohmann::json>(0);
    REQUIRE(fast(v) == reference(v));
    auto o = random_value<nlohmann::ordered_json>(0);
    REQUIRE(fast(o) == reference(o));
  }
}

TEST_CASE("append_json appends: what was in the string stays") {
  std::string out = "{\"id\":";
  append_json(out, nlohmann::json(7));
  CHECK(out == "{\"id\":7");
}
