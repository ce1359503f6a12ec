// The output order of `tether batch`: results arrive in completion order and leave in input order
// (or at once with --unordered). Items are numbered 0, 1, 2, ... as they are admitted; a result
// waits here until every earlier one has left. The front-end bounds memory by admitting a new item
// only while window() is below its limit.
//
// Thread contract: thread-bound (a plain value).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace tether::cli::batch {

class OrderBuffer {
 public:
  explicit OrderBuffer(bool unordered = false) : unordered_(unordered) {}

  // Numbers the next admitted item.
  std::uint64_t admit() { return admitted_++; }
  // The result line of item `seq` (admitted, not yet put).
  void put(std::uint64_t seq, std::string line);
  // The lines that may be written now, in the order to write them.
  std::vector<std::string> take();

  // Items admitted whose lines have not been taken yet: the read-ahead the front-end bounds.
  std::uint64_t window() const { return admitted_ - taken_; }
  std::uint64_t admitted() const { return admitted_; }
  std::uint64_t taken() const { return taken_; }
  std::size_t held() const { return held_.size(); }  // results waiting for an earlier one

 private:
  bool unordered_;
  std::uint64_t admitted_ = 0;
  std::uint64_t taken_ = 0;
  std::uint64_t next_ = 0;                    // ordered: the next seq to leave
  std::map<std::uint64_t, std::string> held_;  // results not taken yet, by seq
};

}  // namespace tether::cli::batch
