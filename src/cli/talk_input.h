// Raw terminal input split into what was typed and what was pasted. With bracketed paste on
// (ESC [ ? 2004 h), the terminal wraps a paste in ESC [ 200 ~ ... ESC [ 201 ~; the decoder takes
// the markers out so a pasted newline can be told from a typed Enter. A trailing prefix of the
// start marker is held back until more bytes come or the caller releases it (a lone Escape key).
// Pure value: no I/O.
//
// Thread contract: thread-bound.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace tether::cli::talk {

class InputDecoder {
 public:
  struct Item {
    bool paste = false;  // a whole bracketed paste (markers removed); otherwise typed keys
    std::string text;
  };

  void push(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete item, in input order; nothing while only a partial marker or an unfinished
  // paste is buffered.
  std::optional<Item> next();
  // True when the buffered bytes are only a possible start of a paste marker.
  bool holding_partial() const;
  // The held bytes become typed keys (no more input came in time).
  void release_partial() { release_ = true; }
  bool in_paste() const { return in_paste_; }
  bool empty() const { return buffer_.empty() && !in_paste_; }
  void clear();

 private:
  std::string buffer_;
  std::string paste_;
  bool in_paste_ = false;
  bool release_ = false;
};

// A pasted text made safe to feed to the line editor as keystrokes: CR LF and CR become LF,
// other control characters (escape sequences included) are dropped, tabs are kept.
std::string clean_paste(std::string_view text);

}  // namespace tether::cli::talk
