#include "rpc/line_framer.h"

#include <cstring>

namespace tether::rpc {

void LineFramer::compact() {
  if (start_ == 0) return;
  if (start_ == buf_.size()) {
    buf_.clear();
  } else if (start_ >= 64 * 1024 && start_ * 2 >= buf_.size()) {
    buf_.erase(0, start_);
  } else {
    return;
  }
  tail_start_ -= start_;
  for (auto& at : dropped_at_) at -= start_;  // never before start_: next_line() takes them there
  start_ = 0;
}

void LineFramer::push(std::string_view bytes) {
  compact();
  if (discarding_) {
    auto nl = bytes.find('\n');
    if (nl == std::string_view::npos) return;
    bytes.remove_prefix(nl + 1);
    discarding_ = false;
    dropped_at_.push_back(buf_.size());  // right after the lines that came before it
  }
  const std::size_t old = buf_.size();
  buf_.append(bytes);
  const void* last = ::memrchr(buf_.data() + old, '\n', bytes.size());
  if (last) tail_start_ = static_cast<std::size_t>(static_cast<const char*>(last) - buf_.data()) + 1;
  // The partial line after the last newline is the only thing that can grow without bound.
  // Unless the CR counts, a tail of exactly max_line_ + 1 bytes ending in '\r' may still be a line
  // at the cap followed by CRLF, so it waits for the next byte; the cap must not depend on how the
  // bytes were chunked.
  const std::size_t tail = buf_.size() - tail_start_;
  if (tail > max_line_ && (cap_counts_cr_ || !(tail == max_line_ + 1 && buf_.back() == '\r'))) {
    buf_.resize(tail_start_);
    ++oversize_;
    discarding_ = true;
  }
}

std::optional<LineFramer::Line> LineFramer::next_line() {
  if (!dropped_at_.empty() && dropped_at_.front() == start_) {
    dropped_at_.pop_front();
    return Line{{}, true};  // counted when it was cut
  }
  if (start_ >= tail_start_) return std::nullopt;
  const char* begin = buf_.data() + start_;
  const char* nl = static_cast<const char*>(std::memchr(begin, '\n', tail_start_ - start_));
  const std::size_t raw = static_cast<std::size_t>(nl - begin);
  start_ += raw + 1;
  std::size_t len = raw;
  if (len > 0 && begin[len - 1] == '\r') --len;
  if ((cap_counts_cr_ ? raw : len) > max_line_) {  // a complete line that arrived in one piece, too long
    ++oversize_;
    return Line{{}, true};
  }
  return Line{std::string_view(begin, len), false};
}

std::optional<std::string_view> LineFramer::next() {
  while (auto line = next_line()) {
    if (line->oversize || line->text.find_first_not_of(" \t") == std::string_view::npos) continue;
    return line->text;
  }
  return std::nullopt;
}

std::optional<std::string> LineFramer::finish() {
  if (discarding_) {
    // push() already cut the oversized tail; complete lines before it are still to be taken.
    discarding_ = false;
    dropped_at_.push_back(buf_.size());
    return std::nullopt;
  }
  std::string rest = buf_.substr(tail_start_);
  buf_.resize(tail_start_);
  if (!rest.empty() && rest.back() == '\r') rest.pop_back();
  if (rest.find_first_not_of(" \t") == std::string::npos) return std::nullopt;
  return rest;
}

std::string LineFramer::take_tail() {
  if (discarding_) {
    discarding_ = false;
    dropped_at_.push_back(buf_.size());
    return {};
  }
  std::string rest = buf_.substr(tail_start_);
  buf_.resize(tail_start_);
  return rest;
}

}  // namespace tether::rpc
