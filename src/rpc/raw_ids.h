// The bridge's request ids that a double would print back changed (12345678901234567890123,
// 1.50): their text as written, by the value's bits. Added by the dispatcher as it reads such a
// request, taken by its answer (each request is answered once), which then carries the id exactly
// as the bridge wrote it. Thread-safe.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "base/mutex.h"
#include "rpc/message.h"

namespace tether::rpc {

class RawIds {
 public:
  // At most this many are kept; past that, ids are echoed by value.
  static constexpr std::size_t kMax = 4096;

  void remember(const json& id, std::string raw) {
    if (raw.empty()) return;
    base::MutexLock lock(mu_);
    if (ids_.size() < kMax) ids_.emplace(key(id), std::move(raw));
  }

  // The text of float id `id` as the bridge wrote it, once; nothing for any other id.
  std::optional<std::string> take(const json& id) {
    if (!id.is_number_float()) return std::nullopt;
    base::MutexLock lock(mu_);
    auto it = ids_.find(key(id));
    if (it == ids_.end()) return std::nullopt;
    std::string raw = std::move(it->second);
    ids_.erase(it);
    return raw;
  }

 private:
  static std::uint64_t key(const json& id) { return std::bit_cast<std::uint64_t>(id.get<double>()); }

  base::Mutex mu_;
  std::unordered_multimap<std::uint64_t, std::string> ids_ GUARDED_BY(mu_);
};

}  // namespace tether::rpc
