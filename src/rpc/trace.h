// --trace FILE: every frame both ways, timestamped, with direction and bridge generation, plus
// lifecycle notes and skipped lines. Thread-safe: the dispatcher of each generation and the
// supervisor write to one Trace.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "base/mutex.h"

namespace tether::rpc {

enum class Direction { to_bridge, from_bridge };

class Trace {
 public:
  // Opens (truncating) `path`; nothing and an error sentence when it cannot be opened.
  static std::shared_ptr<Trace> open(const std::string& path, std::string& error);
  ~Trace();

  void frame(std::uint64_t generation, Direction dir, std::string_view line);
  void note(std::uint64_t generation, std::string_view text);

 private:
  explicit Trace(std::FILE* f) : file_(f) {}
  void write(std::uint64_t generation, std::string_view tag, std::string_view text);

  base::Mutex mu_;
  std::FILE* file_ GUARDED_BY(mu_);
};

}  // namespace tether::rpc
