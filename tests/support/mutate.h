// Edited inputs for the tests that hold a fast reader to its general one (issue 17's byte-exact
// matchers): random edits of seed lines, and every single-byte edit of a line.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace tether::test {

// Random edits of seed lines (a byte replaced, inserted or removed), reproducible from `seed`.
class Mutator {
 public:
  Mutator(std::vector<std::string> seeds, std::string alphabet, std::uint64_t seed)
      : seeds_(std::move(seeds)), alphabet_(std::move(alphabet)), state_(seed) {}
  // A seed line with `min_edits` to min_edits + 2 edits.
  std::string next_line(int min_edits) {
    std::string s = seeds_[next() % seeds_.size()];
    int edits = min_edits + static_cast<int>(next() % 3);
    for (int e = 0; e < edits && !s.empty(); ++e) {
      std::size_t at = next() % s.size();
      char c = alphabet_[next() % alphabet_.size()];
      switch (next() % 3) {
        case 0: s[at] = c; break;
        case 1: s.insert(at, 1, c); break;
        default: s.erase(at, 1); break;
      }
    }
    return s;
  }

 private:
  std::uint64_t next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  std::vector<std::string> seeds_;
  std::string alphabet_;
  std::uint64_t state_;
};

// `line` with one edit, every way: each byte value (all 256) put in place of each byte and
// inserted before each byte and at the end, each byte removed, and each of `sequences` inserted
// at each position.
inline std::vector<std::string> byte_edits(const std::string& line, const std::vector<std::string>& sequences = {}) {
  std::vector<std::string> out;
  for (std::size_t at = 0; at <= line.size(); ++at) {
    for (int b = 0; b < 256; ++b) {
      std::string s = line;
      s.insert(at, 1, static_cast<char>(b));
      out.push_back(std::move(s));
      if (at < line.size()) {
        s = line;
        s[at] = static_cast<char>(b);
        out.push_back(std::move(s));
      }
    }
    if (at < line.size()) out.push_back(std::string(line).erase(at, 1));
    for (const auto& q : sequences) out.push_back(std::string(line).insert(at, q));
  }
  return out;
}

}  // namespace tether::test
