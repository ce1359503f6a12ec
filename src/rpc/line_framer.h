// Splits a byte stream into lines: on '\n', one trailing '\r' stripped, blank lines skipped. A line
// longer than the cap is drained to its newline and dropped, never buffered whole. A plain value,
// thread-bound to the reader that feeds it.
//
// Every line split in tether goes through it: a bridge's stdout (rpc::Connection), a tether
// server's clients, `tether call`'s input, the demo agent's input, `tether batch`'s numbered
// input lines (next_line(): blank and oversized lines kept in their place, so they can be counted)
// and `tether talk`'s script lines (next_line() and take_tail()). The one exception is the batch
// journal's index, which needs each record's byte offset in the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>

namespace tether::rpc {

class LineFramer {
 public:
  // `cap_counts_cr`: the closing '\r' of a CRLF line counts toward max_line (tether batch's rule);
  // otherwise a line may have max_line bytes before its CRLF.
  explicit LineFramer(std::size_t max_line = std::size_t{64} << 20, bool cap_counts_cr = false)
      : max_line_(max_line), cap_counts_cr_(cap_counts_cr) {}

  // Appends bytes read from the stream.
  void push(std::string_view bytes);
  // The next complete, non-blank line, or nothing until more bytes arrive. The view stays valid
  // until the next call to push() or next().
  std::optional<std::string_view> next();
  // At EOF: the final line that had no newline (if non-blank and not oversized).
  std::optional<std::string> finish();
  // At EOF, for a reader that keeps an unterminated last line exactly as written (talk's script
  // mode: inside /multi a last line of blanks, or one ending in '\r', is text): the bytes after the
  // last newline, verbatim, or "" when the input ended with a newline or inside an oversized line.
  std::string take_tail();

  // For a reader that numbers lines: every complete line, blank ones included, and in the place of
  // an oversized one a Line with `oversize` set and no text (reported once its newline came, or
  // after finish() when the input ended inside it). Same view lifetime as next().
  struct Line {
    std::string_view text;
    bool oversize = false;
  };
  std::optional<Line> next_line();

  std::uint64_t oversize_dropped() const { return oversize_; }
  // Bytes held: complete lines not yet taken plus the partial last line (<= max_line, or max_line + 1 ending in CR).
  std::size_t buffered() const { return buf_.size() - start_; }

 private:
  void compact();

  std::size_t max_line_;
  bool cap_counts_cr_;
  std::string buf_;
  std::size_t start_ = 0;         // first byte not yet returned by next()
  std::size_t tail_start_ = 0;    // first byte after the last '\n' in buf_
  bool discarding_ = false;       // inside an oversized line: drop up to its newline
  std::uint64_t oversize_ = 0;
  // Offsets in buf_ where a dropped oversized line was (its bytes are gone): next_line() reports
  // it when it gets there. Ascending; next() skips them as it passes.
  std::deque<std::size_t> dropped_at_;
};

}  // namespace tether::rpc
