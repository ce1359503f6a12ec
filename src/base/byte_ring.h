// A fixed-capacity byte ring that keeps the most recent bytes written to it: tether keeps the last
// 4 KiB of a bridge's stderr in one. A plain value: not thread-safe, callers guard it.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace tether::base {

class ByteRing {
 public:
  explicit ByteRing(std::size_t capacity = 4096);

  void append(std::string_view bytes);
  void clear();
  std::size_t size() const { return size_; }
  std::size_t capacity() const { return buf_.size(); }
  // Everything kept, oldest first.
  std::string contents() const;
  // The last n non-empty lines kept (a partial first line, cut by the ring, counts as a line).
  std::string tail_lines(std::size_t n) const;
  // The last non-empty line, without its newline; empty if there is none.
  std::string last_line() const;

 private:
  std::vector<char> buf_;
  std::size_t head_ = 0;  // next write position
  std::size_t size_ = 0;  // bytes kept, <= capacity
};

// The last n non-empty lines of `text`, as ByteRing::tail_lines gives them (a stderr tail that
// arrived as a string, say).
std::string last_lines(std::string_view text, std::size_t n);

// The last line of `text` that says something: one with a letter or a digit in it. Agents end
// their multi-line dumps with "}" or "]", which, quoted alone, tells a person nothing. Empty when
// there is no such line; a trailing "\r" is dropped.
std::string last_telling_line(std::string_view text);

}  // namespace tether::base
