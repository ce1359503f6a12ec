// Unit tests for base::ByteRing: the stderr tail keeps the most recent bytes and answers "what
// were the last lines" for error messages.
#include "base/byte_ring.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <string>

using tether::base::ByteRing;

TEST_SUITE("base::ByteRing") {

TEST_CASE("an empty ring has no contents and no lines") {
  ByteRing ring(8);
  CHECK(ring.size() == 0);
  CHECK(ring.capacity() == 8);
  CHECK(ring.contents().empty());
  CHECK(ring.tail_lines(3).empty());
  CHECK(ring.last_line().empty());
}

TEST_CASE("appends below capacity are kept in order") {
  ByteRing ring(8);
  ring.append("abc");
  ring.append("");
  ring.append("de");
  CHECK(ring.size() == 5);
  CHECK(ring.contents() == "abcde");
}

TEST_CASE("wraparound keeps the most recent bytes, oldest first") {
  ByteRing ring(8);
  ring.append("abcdef");
  ring.append("ghij");  // wraps: the write is split across the end of the buffer
  CHECK(ring.size() == 8);
  CHECK(ring.contents() == "cdefghij");
  ring.append("k");
  CHECK(ring.contents() == "defghijk");
  ring.append("12345");
  CHECK(ring.contents() == "ijk12345");
}

TEST_CASE("an append of exactly the capacity, or more, keeps its last bytes") {
  ByteRing ring(8);
  ring.append("xy");
  ring.append("12345678");
  CHECK(ring.contents() == "12345678");
  ring.append("0123456789abcdef");
  CHECK(ring.size() == 8);
  CHECK(ring.contents() == "89abcdef");
  ring.append("!");  // still a working ring afterwards
  CHECK(ring.contents() == "9abcdef!");
}

TEST_CASE("the ring matches a reference model over many appends") {
  const std::size_t cap = 37;
  ByteRing ring(cap);
  std::string all;
  std::uint64_t state = 7;
  for (int i = 0; i < 3000; ++i) {
    state = state * 6364136223846793005ULL + 1442695040888963407ULL;
    std::size_t n = static_cast<std::size_t>((state >> 33) % 90);  // some appends exceed cap
    std::string piece;
    for (std::size_t k = 0; k < n; ++k) piece.push_back(static_cast<char>('a' + (i + k) % 26));
    ring.append(piece);
    all += piece;
    std::string expect = all.size() > cap ? all.substr(all.size() - cap) : all;
    REQUIRE(ring.contents() == expect);
    REQUIRE(ring.size() == expect.size());
  }
}

TEST_CASE("clear() empties the ring") {
  ByteRing ring(4);
  ring.append("abcdef");
  ring.clear();
  CHECK(ring.size() == 0);
  CHECK(ring.contents().empty());
  ring.append("xy");
  CHECK(ring.contents() == "xy");
}

TEST_CASE("tail_lines(n) gives the last n lines without the final newline") {
  ByteRing ring(64);
  ring.append("one\ntwo\nthree\n");
  CHECK(ring.tail_lines(1) == "three");
  CHECK(ring.tail_lines(2) == "two\nthree");
  CHECK(ring.tail_lines(3) == "one\ntwo\nthree");
  CHECK(ring.tail_lines(10) == "one\ntwo\nthree");  // fewer lines than asked: all of them
  CHECK(ring.tail_lines(0).empty());
}

TEST_CASE("tail_lines counts a line without a newline and skips trailing blank lines") {
  ByteRing ring(64);
  ring.append("one\ntwo\npartial");
  CHECK(ring.tail_lines(1) == "partial");
  CHECK(ring.tail_lines(2) == "two\npartial");
  ByteRing blanks(64);
  blanks.append("first\nsecond\n\n\n");
  CHECK(blanks.tail_lines(1) == "second");
  CHECK(blanks.tail_lines(2) == "first\nsecond");
}

TEST_CASE("a first line cut by the ring counts as a line") {
  ByteRing ring(8);
  ring.append("first line\nxy\n");  // keeps "line\nxy\n"
  CHECK(ring.contents() == "line\nxy\n");
  CHECK(ring.tail_lines(2) == "line\nxy");
  CHECK(ring.tail_lines(5) == "line\nxy");
}

TEST_CASE("tail_lines after wraparound") {
  ByteRing ring(16);
  for (int i = 1; i <= 9; ++i) ring.append("line" + std::to_string(i) + "\n");
  // 54 bytes written; the last 16 are "ne7\nline8\nline9\n".
  CHECK(ring.contents() == "ne7\nline8\nline9\n");
  CHECK(ring.tail_lines(2) == "line8\nline9");
  CHECK(ring.tail_lines(3) == "ne7\nline8\nline9");
}

TEST_CASE("last_line") {
  ByteRing ring(64);
  ring.append("Traceback (most recent call last):\nValueError: boom\n");
  CHECK(ring.last_line() == "ValueError: boom");
  ring.append("\n\n");
  CHECK(ring.last_line() == "ValueError: boom");  // blank lines are not a last line
  ring.append("Killed\r\n");
  CHECK(ring.last_line() == "Killed");  // CRLF output
  ring.append("no newline yet");
  CHECK(ring.last_line() == "no newline yet");

  ByteRing only_newlines(8);
  only_newlines.append("\n\n\n");
  CHECK(only_newlines.last_line().empty());
  CHECK(only_newlines.tail_lines(2).empty());
}

}  // TEST_SUITE
