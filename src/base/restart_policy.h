// The restart budget as a plain value: at most `max_restarts` restarts in any sliding `window`,
// each delayed by `base_delay` doubled for every restart already in the window, capped at
// `max_delay`. It owns no clock and no lock; callers pass the time in and guard it themselves.
#pragma once

#include <cstddef>
#include <deque>
#include <optional>

#include "base/clock.h"

namespace tether::base {

struct RestartPolicyConfig {
  std::size_t max_restarts = 3;
  Duration window = std::chrono::seconds(60);
  Duration base_delay = std::chrono::milliseconds(500);
  Duration max_delay = std::chrono::seconds(30);
};

class RestartPolicy {
 public:
  explicit RestartPolicy(RestartPolicyConfig config = {}) : config_(config) {}

  // Asks for a restart at `now`. Returns the delay to wait before it, and counts it; or nothing when
  // the budget is spent (max_restarts already happened in the window ending at `now`).
  std::optional<Duration> request(TimePoint now);
  // Restarts counted in the window ending at `now`.
  std::size_t in_window(TimePoint now);
  // A manual restart forgets the history: the full budget is available again.
  void reset() { history_.clear(); }
  const RestartPolicyConfig& config() const { return config_; }

 private:
  void forget_before(TimePoint now);

  RestartPolicyConfig config_;
  std::deque<TimePoint> history_;  // times of granted restarts, oldest first
};

}  // namespace tether::base
