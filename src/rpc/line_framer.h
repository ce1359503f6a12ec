// Splits a byte stream into lines: on '\n', one trailing '\r' stripped, blank lines skipped. A line
// longer than the cap is drained to its newline and dropped, never buffered whole. A plain value,
// thread-bound to the reader that feeds it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tether::rpc {

class LineFramer {
 public:
  explicit LineFramer(std::size_t max_line = std::size_t{64} << 20) : max_line_(max_line) {}

  // Appends bytes read from the stream.
  void push(std::string_view bytes);
  // The next complete, non-blank line, or nothing until more bytes arrive. The view stays valid
  // until the next call to push() or next().
  std::optional<std::string_view> next();
  // At EOF: the final line that had no newline (if non-blank and not oversized).
  std::optional<std::string> finish();

  std::uint64_t oversize_dropped() const { return oversize_; }
  // Bytes held: complete lines not yet taken plus the partial last line (<= max_line, or max_line + 1 ending in CR).
  std::size_t buffered() const { return buf_.size() - start_; }

 private:
  void compact();

  std::size_t max_line_;
  std::string buf_;
  std::size_t start_ = 0;         // first byte not yet returned by next()
  std::size_t tail_start_ = 0;    // first byte after the last '\n' in buf_
  bool discarding_ = false;       // inside an oversized line: drop up to its newline
  std::uint64_t oversize_ = 0;
};

}  // namespace tether::rpc
