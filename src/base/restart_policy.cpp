#include "base/restart_policy.h"

#include <algorithm>

namespace tether::base {

void RestartPolicy::forget_before(TimePoint now) {
  // An entry older than the window no longer counts. The window is half-open: (now - window, now].
  while (!history_.empty() && now - history_.front() >= config_.window) history_.pop_front();
}

std::size_t RestartPolicy::in_window(TimePoint now) {
  forget_before(now);
  return history_.size();
}

std::optional<Duration> RestartPolicy::request(TimePoint now) {
  forget_before(now);
  if (history_.size() >= config_.max_restarts) return std::nullopt;
  Duration delay = config_.base_delay;
  for (std::size_t i = 0; i < history_.size() && delay < config_.max_delay; ++i) delay *= 2;
  delay = std::min(delay, config_.max_delay);
  history_.push_back(now);
  return delay;
}

}  // namespace tether::base
