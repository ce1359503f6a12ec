// Unit tests for rpc::LineFramer: how a byte stream becomes lines, whatever the chunking, and how a
// line over the cap is drained and dropped without ever being buffered whole.
#include "rpc/line_framer.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "rpc/message.h"

namespace {

using tether::rpc::LineFramer;
using Lines = std::vector<std::string>;

// Takes every complete line the framer has; copies them, as next()'s view dies on the next call.
void take(LineFramer& f, Lines& out) {
  while (auto line = f.next()) out.emplace_back(*line);
}

// Feeds `input` in chunks of `chunk` bytes (0: all at once), then finish(); returns all lines.
Lines frame(std::string_view input, std::size_t chunk, std::size_t cap = std::size_t{64} << 20,
            std::uint64_t* dropped = nullptr) {
  LineFramer f(cap);
  Lines out;
  if (chunk == 0) chunk = input.size() == 0 ? 1 : input.size();
  for (std::size_t i = 0; i < input.size(); i += chunk) {
    f.push(input.substr(i, chunk));
    take(f, out);
  }
  if (auto last = f.finish()) out.push_back(*last);
  if (dropped) *dropped = f.oversize_dropped();
  return out;
}

// A small deterministic generator, so "random" chunkings are the same on every run.
struct Lcg {
  std::uint64_t state;
  std::size_t below(std::size_t n) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::size_t>((state >> 33) % n);
  }
};

}  // namespace

namespace doctest {
template <>
struct StringMaker<Lines> {
  static String convert(const Lines& lines) {
    std::string s = "[";
    for (const auto& l : lines) s += (s.size() > 1 ? ", \"" : "\"") + l + "\"";
    return (s + "]").c_str();
  }
};
}  // namespace doctest

TEST_SUITE("rpc::LineFramer") {

TEST_CASE("lines arriving byte by byte are delivered whole, in order") {
  const std::string input = "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n{\"a\":[1,2,3]}\nlast\n";
  LineFramer f;
  Lines got;
  for (char c : input) {
    f.push(std::string_view(&c, 1));
    take(f, got);
  }
  CHECK(got == Lines{"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}", "{\"a\":[1,2,3]}", "last"});
  CHECK(f.buffered() == 0);
  CHECK_FALSE(f.finish().has_value());
}

TEST_CASE("a line is not delivered before its newline arrives") {
  LineFramer f;
  f.push("{\"partial\":");
  CHECK_FALSE(f.next().has_value());
  CHECK(f.buffered() == 11);
  f.push("true}");
  CHECK_FALSE(f.next().has_value());
  f.push("\n");
  auto line = f.next();
  REQUIRE(line.has_value());
  CHECK(*line == "{\"partial\":true}");
  CHECK_FALSE(f.next().has_value());
}

TEST_CASE("every split point of a stream gives the same lines") {
  const std::string input = "alpha\r\nbeta\n\n  \ngamma delta\r\n\t\nepsilon";
  const Lines expected{"alpha", "beta", "gamma delta", "epsilon"};
  CHECK(frame(input, 0) == expected);
  for (std::size_t cut = 0; cut <= input.size(); ++cut) {
    CAPTURE(cut);
    LineFramer f;
    Lines got;
    f.push(std::string_view(input).substr(0, cut));
    take(f, got);
    f.push(std::string_view(input).substr(cut));
    take(f, got);
    if (auto last = f.finish()) got.push_back(*last);
    CHECK(got == expected);
  }
}

TEST_CASE("many lines across many pushes of random sizes") {
  std::string input;
  Lines expected;
  for (int i = 0; i < 2000; ++i) {
    std::string line = "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(i) + ",\"result\":\"" +
                       std::string(static_cast<std::size_t>(i % 97), 'x') + "\"}";
    expected.push_back(line);
    input += line;
    input += (i % 3 == 0) ? "\r\n" : "\n";
  }
  Lcg rng{42};
  LineFramer f;
  Lines got;
  for (std::size_t i = 0; i < input.size();) {
    std::size_t n = 1 + rng.below(700);
    f.push(std::string_view(input).substr(i, n));
    take(f, got);
    i += n;
  }
  CHECK_FALSE(f.finish().has_value());
  CHECK(got == expected);
  CHECK(f.oversize_dropped() == 0);
}

TEST_CASE("CRLF: exactly one trailing carriage return is stripped") {
  CHECK(frame("a\r\n", 0) == Lines{"a"});
  CHECK(frame("b\r\r\n", 0) == Lines{"b\r"});       // only one \r goes
  CHECK(frame("c\rd\n", 0) == Lines{"c\rd"});       // an inner \r stays
  CHECK(frame("a\r\nb\r\n", 1) == Lines{"a", "b"});  // \r and \n in separate pushes
  CHECK(frame("b\r\r\n", 1) == Lines{"b\r"});
}

TEST_CASE("blank and whitespace-only lines are skipped") {
  CHECK(frame("\n\n\r\n  \n\t\n \t \r\nx\n\n", 0) == Lines{"x"});
  CHECK(frame("\n\n\r\n  \n\t\n \t \r\nx\n\n", 1) == Lines{"x"});
  CHECK(frame("   \n", 0).empty());
  CHECK(frame(" x \n", 0) == Lines{" x "});  // a line with content keeps its spaces
}

TEST_CASE("a line exactly at the cap is delivered; one byte more is dropped") {
  std::uint64_t dropped = 0;
  CHECK(frame("12345678\nok\n", 0, 8, &dropped) == Lines{"12345678", "ok"});
  CHECK(dropped == 0);
  CHECK(frame("12345678\nok\n", 1, 8, &dropped) == Lines{"12345678", "ok"});
  CHECK(dropped == 0);
  CHECK(frame("123456789\nok\n", 0, 8, &dropped) == Lines{"ok"});
  CHECK(dropped == 1);
  CHECK(frame("123456789\nok\n", 1, 8, &dropped) == Lines{"ok"});
  CHECK(dropped == 1);
}

TEST_CASE("the cap applies to the line without its CR, whatever the chunking") {
  // Eight bytes of content then CRLF: the line is 8 bytes, within a cap of 8. In one push it is
  // delivered; the result must not change when the bytes arrive one at a time.
  std::uint64_t dropped = 0;
  CHECK(frame("12345678\r\nok\n", 0, 8, &dropped) == Lines{"12345678", "ok"});
  CHECK(dropped == 0);
  CHECK(frame("12345678\r\nok\n", 1, 8, &dropped) == Lines{"12345678", "ok"});
  CHECK(dropped == 0);
}

TEST_CASE("an oversize line is drained and dropped; the next line is delivered") {
  const std::size_t cap = 16;
  const std::size_t chunk = 7;
  std::string input = "short1\n" + std::string(100, 'x') + "\nnext\n";
  LineFramer f(cap);
  Lines got;
  for (std::size_t i = 0; i < input.size(); i += chunk) {
    std::string_view piece = std::string_view(input).substr(i, chunk);
    f.push(piece);
    // Never more than the cap plus what one push brought, even mid-way through a 100-byte line.
    CHECK(f.buffered() <= cap + piece.size());
    take(f, got);
    CHECK(f.buffered() <= cap);
  }
  CHECK_FALSE(f.finish().has_value());
  CHECK(got == Lines{"short1", "next"});
  CHECK(f.oversize_dropped() == 1);
}

TEST_CASE("random lines, caps and chunkings agree with a reference model") {
  // The model: split on '\n', drop lines over the cap (counted), skip blank ones. The final
  // unterminated piece is what finish() returns. (CRLF at the cap is covered above.)
  Lcg rng{2024};
  for (int round = 0; round < 300; ++round) {
    CAPTURE(round);
    const std::size_t cap = 4 + rng.below(20);
    std::string input;
    Lines expected;
    std::uint64_t expected_dropped = 0;
    const std::size_t count = 1 + rng.below(30);
    for (std::size_t i = 0; i < count; ++i) {
      std::string line;
      std::size_t len = rng.below(cap * 2 + 2);
      for (std::size_t k = 0; k < len; ++k) line.push_back(rng.below(6) == 0 ? ' ' : static_cast<char>('a' + rng.below(26)));
      bool last_unterminated = (i + 1 == count) && rng.below(2) == 0;
      input += line;
      if (!last_unterminated) input += '\n';
      if (line.size() > cap) ++expected_dropped;
      else if (line.find_first_not_of(' ') != std::string::npos) expected.push_back(line);
    }
    const std::size_t chunk = 1 + rng.below(3 * cap);
    CAPTURE(cap);
    CAPTURE(chunk);
    std::uint64_t dropped = 0;
    CHECK(frame(input, chunk, cap, &dropped) == expected);
    CHECK(dropped == expected_dropped);
  }
}

TEST_CASE("an oversize line inside one push is dropped and counted") {
  LineFramer f(16);
  f.push("a\n" + std::string(40, 'y') + "\nb\n");
  Lines got;
  take(f, got);
  CHECK(got == Lines{"a", "b"});
  CHECK(f.oversize_dropped() == 1);
}

TEST_CASE("a huge line fed in big chunks is never buffered whole") {
  const std::size_t cap = 1024;
  LineFramer f(cap);
  const std::string chunk(4096, 'z');
  for (int i = 0; i < 1000; ++i) {  // a 4 MiB line
    f.push(chunk);
    CHECK(f.buffered() <= cap + chunk.size());
    CHECK_FALSE(f.next().has_value());
  }
  f.push("\n{\"after\":1}\n");
  auto line = f.next();
  REQUIRE(line.has_value());
  CHECK(*line == "{\"after\":1}");
  CHECK(f.oversize_dropped() == 1);
  CHECK(f.buffered() == 0);
}

TEST_CASE("each oversize line is counted once") {
  std::uint64_t dropped = 0;
  std::string big(50, 'q');
  std::string input = big + "\nok1\n" + big + "\n" + big + "\nok2\n";
  CHECK(frame(input, 0, 10, &dropped) == Lines{"ok1", "ok2"});
  CHECK(dropped == 3);
  CHECK(frame(input, 1, 10, &dropped) == Lines{"ok1", "ok2"});
  CHECK(dropped == 3);
  CHECK(frame(input, 13, 10, &dropped) == Lines{"ok1", "ok2"});
  CHECK(dropped == 3);
}

TEST_CASE("finish() returns the last line when the stream ends without a newline") {
  LineFramer f;
  f.push("{\"id\":1}\n{\"id\":");
  Lines got;
  take(f, got);
  CHECK(got == Lines{"{\"id\":1}"});
  f.push("2}");
  CHECK_FALSE(f.next().has_value());
  auto last = f.finish();
  REQUIRE(last.has_value());
  CHECK(*last == "{\"id\":2}");
}

TEST_CASE("finish() strips one CR and ignores a blank or empty tail") {
  {
    LineFramer f;
    f.push("tail\r");
    auto last = f.finish();
    REQUIRE(last.has_value());
    CHECK(*last == "tail");
  }
  {
    LineFramer f;
    f.push(" \t ");
    CHECK_FALSE(f.finish().has_value());
  }
  {
    LineFramer f;
    CHECK_FALSE(f.finish().has_value());
  }
  {
    LineFramer f;
    f.push("x\n");
    Lines got;
    take(f, got);
    CHECK_FALSE(f.finish().has_value());  // nothing after the last newline
  }
}

TEST_CASE("finish() drops an oversize unterminated tail") {
  LineFramer f(8);
  f.push("ok\n" + std::string(30, 'w'));
  Lines got;
  take(f, got);
  CHECK(got == Lines{"ok"});
  CHECK_FALSE(f.finish().has_value());
  CHECK(f.oversize_dropped() == 1);
}

TEST_CASE("finish() leaves complete lines not yet taken for next()") {
  {
    LineFramer f;
    f.push("a\nb\ntail");
    auto last = f.finish();
    REQUIRE(last.has_value());
    CHECK(*last == "tail");
    Lines got;
    take(f, got);
    CHECK(got == Lines{"a", "b"});
  }
  {
    LineFramer f(8);
    f.push("a\nb\n" + std::string(30, 'w'));  // an oversize tail being discarded at EOF
    CHECK_FALSE(f.finish().has_value());
    Lines got;
    take(f, got);
    CHECK(got == Lines{"a", "b"});
    CHECK(f.oversize_dropped() == 1);
  }
}

// next_line(), for a reader that numbers lines (tether batch): "#" stands for an oversize line.
Lines numbered(std::string_view input, std::size_t chunk, std::size_t cap, bool cap_counts_cr = false) {
  LineFramer f(cap, cap_counts_cr);
  Lines out;
  auto take_all = [&] {
    while (auto line = f.next_line()) out.push_back(line->oversize ? "#" : std::string(line->text));
  };
  if (chunk == 0) chunk = input.size() == 0 ? 1 : input.size();
  for (std::size_t i = 0; i < input.size(); i += chunk) {
    f.push(input.substr(i, chunk));
    take_all();
  }
  if (auto last = f.finish()) out.push_back(*last);
  take_all();
  return out;
}

TEST_CASE("next_line() keeps blank and oversize lines in their place, whatever the chunking") {
  const std::string input = "a\n\n  \n" + std::string(20, 'x') + "\nb\r\n" + std::string(30, 'y') + "\nc\n" +
                            std::string(25, 'z');
  const Lines want{"a", "", "  ", "#", "b", "#", "c", "#"};
  for (std::size_t chunk : {0, 1, 2, 3, 7, 11, 64}) {
    CAPTURE(chunk);
    CHECK(numbered(input, chunk, 10) == want);
  }
  CHECK(numbered("a\nlast", 1, 10) == Lines{"a", "last"});
}

TEST_CASE("next_line() reports an oversize line once its newline came, not before") {
  LineFramer f(10);
  f.push(std::string(50, 'y'));
  CHECK_FALSE(f.next_line().has_value());
  CHECK(f.buffered() == 0);
  f.push("yy\nok\n");
  auto over = f.next_line();
  REQUIRE(over.has_value());
  CHECK(over->oversize);
  auto ok = f.next_line();
  REQUIRE(ok.has_value());
  CHECK(ok->text == "ok");
  CHECK(f.oversize_dropped() == 1);
}

TEST_CASE("cap_counts_cr: the CR of a CRLF line counts toward the cap") {
  for (std::size_t chunk : {0, 1, 2, 5}) {
    CAPTURE(chunk);
    CHECK(numbered("abcd\r\nabc\r\nabcde\n", chunk, 4, true) == Lines{"#", "abc", "#"});
    CHECK(numbered("abcd\r\nabc\r\nabcde\n", chunk, 4) == Lines{"abcd", "abc", "#"});
  }
}

TEST_CASE("take_tail(): the unterminated last line verbatim, once; nothing after a final newline") {
  LineFramer f;
  f.push("one\r\n\n  \r");
  auto a = f.next_line();
  REQUIRE(a.has_value());
  CHECK(a->text == "one");
  auto b = f.next_line();
  REQUIRE(b.has_value());
  CHECK(b->text.empty());             // a blank line keeps its place
  CHECK_FALSE(f.next_line().has_value());
  CHECK(f.take_tail() == "  \r");     // blanks and the CR kept, unlike finish()
  CHECK(f.take_tail().empty());        // taken once
  LineFramer g;
  g.push("x\n");
  CHECK(g.take_tail().empty());
  REQUIRE(g.next_line().has_value());  // complete lines stay to be taken
}

TEST_CASE("invalid UTF-8 passes through the framer and is rejected by parse_line") {
  const std::string bad = "{\"jsonrpc\":\"2.0\",\"method\":\"m\",\"params\":{\"t\":\"\xff\xfe\xc3\"}}";
  const std::string good = "{\"jsonrpc\":\"2.0\",\"method\":\"m\"}";
  LineFramer f;
  f.push(bad + "\n" + good + "\n");
  Lines got;
  take(f, got);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == bad);  // byte for byte: the framer does not judge content
  CHECK_FALSE(tether::rpc::parse_line(got[0]).has_value());
  CHECK(tether::rpc::parse_line(got[1]).has_value());  // the bad line cost one line only
}

}  // TEST_SUITE
