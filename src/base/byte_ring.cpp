#include "base/byte_ring.h"

#include <algorithm>

namespace tether::base {

ByteRing::ByteRing(std::size_t capacity) : buf_(capacity == 0 ? 1 : capacity) {}

void ByteRing::append(std::string_view bytes) {
  const std::size_t cap = buf_.size();
  if (bytes.size() >= cap) {  // only the last `cap` bytes can survive
    bytes.remove_prefix(bytes.size() - cap);
    std::copy(bytes.begin(), bytes.end(), buf_.begin());
    head_ = 0;
    size_ = cap;
    return;
  }
  std::size_t first = std::min(bytes.size(), cap - head_);
  std::copy_n(bytes.begin(), first, buf_.begin() + static_cast<std::ptrdiff_t>(head_));
  std::copy(bytes.begin() + static_cast<std::ptrdiff_t>(first), bytes.end(), buf_.begin());
  head_ = (head_ + bytes.size()) % cap;
  size_ = std::min(cap, size_ + bytes.size());
}

void ByteRing::clear() {
  head_ = 0;
  size_ = 0;
}

std::string ByteRing::contents() const {
  std::string out;
  out.reserve(size_);
  const std::size_t cap = buf_.size();
  std::size_t start = (head_ + cap - size_) % cap;
  for (std::size_t i = 0; i < size_; ++i) out.push_back(buf_[(start + i) % cap]);
  return out;
}

std::string ByteRing::tail_lines(std::size_t n) const {
  std::string all = contents();
  while (!all.empty() && (all.back() == '\n' || all.back() == '\r')) all.pop_back();
  if (n == 0 || all.empty()) return {};
  std::size_t pos = all.size();
  std::size_t found = 0;
  while (pos > 0) {
    std::size_t nl = all.rfind('\n', pos - 1);
    if (nl == std::string::npos) return all;
    // Skip empty lines so that "a\n\n\n" still yields "a".
    if (nl + 1 < pos && ++found == n) return all.substr(nl + 1);
    pos = nl;
  }
  return all;
}

std::string last_lines(std::string_view text, std::size_t n) {
  ByteRing ring(text.size() + 1);
  ring.append(text);
  return ring.tail_lines(n);
}

std::string last_telling_line(std::string_view text) {
  std::size_t end = text.size();
  while (end > 0) {
    std::size_t nl = text.rfind('\n', end - 1);
    std::size_t begin = nl == std::string_view::npos ? 0 : nl + 1;
    std::string_view line = text.substr(begin, end - begin);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    bool telling = std::any_of(line.begin(), line.end(), [](char c) {
      return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
             static_cast<unsigned char>(c) >= 0x80;
    });
    if (telling) return std::string(line);
    if (nl == std::string_view::npos) break;
    end = nl;
  }
  return {};
}

std::string ByteRing::last_line() const {
  std::string line = tail_lines(1);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  return line;
}

}  // namespace tether::base
