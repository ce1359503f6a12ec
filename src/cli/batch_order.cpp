#include "cli/batch_order.h"

namespace tether::cli::batch {

void OrderBuffer::put(std::uint64_t seq, std::string line) { held_.emplace(seq, std::move(line)); }

std::vector<std::string> OrderBuffer::take() {
  std::vector<std::string> out;
  if (unordered_) {
    // Completion order, as finely as the front-end sees it: results put since the last take() (one
    // loop turn) leave together, by seq among themselves.
    for (auto& [seq, line] : held_) out.push_back(std::move(line));
    held_.clear();
  } else {
    for (auto it = held_.begin(); it != held_.end() && it->first == next_; it = held_.erase(it), ++next_)
      out.push_back(std::move(it->second));
  }
  taken_ += out.size();
  return out;
}

}  // namespace tether::cli::batch
