#include "cli/talk_input.h"

#include <algorithm>
#include <utility>

namespace tether::cli::talk {
namespace {

constexpr std::string_view kPasteStart = "\x1b[200~";
constexpr std::string_view kPasteEnd = "\x1b[201~";

// Length of the longest suffix of `s` that is a proper prefix of `marker`.
std::size_t partial_suffix(std::string_view s, std::string_view marker) {
  std::size_t max = std::min(s.size(), marker.size() - 1);
  for (std::size_t n = max; n > 0; --n)
    if (s.substr(s.size() - n) == marker.substr(0, n)) return n;
  return 0;
}

}  // namespace

std::optional<InputDecoder::Item> InputDecoder::next() {
  for (;;) {
    if (in_paste_) {
      auto end = buffer_.find(kPasteEnd);
      if (end == std::string::npos) {
        std::size_t keep = partial_suffix(buffer_, kPasteEnd);
        paste_.append(buffer_, 0, buffer_.size() - keep);
        buffer_.erase(0, buffer_.size() - keep);
        return std::nullopt;
      }
      paste_.append(buffer_, 0, end);
      buffer_.erase(0, end + kPasteEnd.size());
      in_paste_ = false;
      return Item{true, std::exchange(paste_, {})};
    }
    if (buffer_.empty()) {
      release_ = false;
      return std::nullopt;
    }
    auto start = buffer_.find(kPasteStart);
    if (start == 0) {
      buffer_.erase(0, kPasteStart.size());
      in_paste_ = true;
      continue;
    }
    std::size_t keys = start;
    if (start == std::string::npos) {
      keys = buffer_.size();
      if (!release_) keys -= partial_suffix(buffer_, kPasteStart);
    }
    if (keys == 0) return std::nullopt;  // only a possible marker start: wait for more
    Item item{false, buffer_.substr(0, keys)};
    buffer_.erase(0, keys);
    if (buffer_.empty()) release_ = false;
    return item;
  }
}

bool InputDecoder::holding_partial() const {
  return !in_paste_ && !buffer_.empty() && partial_suffix(buffer_, kPasteStart) == buffer_.size();
}

void InputDecoder::clear() {
  buffer_.clear();
  paste_.clear();
  in_paste_ = false;
  release_ = false;
}

std::string clean_paste(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\r') {
      out += '\n';
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else if (c == '\n' || c == '\t' || (c >= 0x20 && c != 0x7f)) {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace tether::cli::talk
