// The one clock tether uses for timeouts and policies, and a deadline value built on it.
// Policy objects never read the clock themselves: callers pass `Clock::now()` in.
#pragma once

#include <chrono>
#include <optional>

namespace tether::base {

using Clock = std::chrono::steady_clock;
using Duration = Clock::duration;
using TimePoint = Clock::time_point;

// A point in time after which a wait gives up; `never()` waits forever.
class Deadline {
 public:
  static Deadline never() { return Deadline{}; }
  static Deadline after(Duration d) { return Deadline{Clock::now() + d}; }
  static Deadline at(TimePoint t) { return Deadline{t}; }

  bool is_never() const { return !at_.has_value(); }
  bool expired(TimePoint now = Clock::now()) const { return at_ && now >= *at_; }
  TimePoint when() const { return at_.value_or(TimePoint::max()); }
  // Milliseconds left, rounded up, for poll(2); -1 for never.
  int poll_timeout_ms(TimePoint now = Clock::now()) const;
  // The earlier of two deadlines.
  static Deadline earliest(Deadline a, Deadline b);

 private:
  Deadline() = default;
  explicit Deadline(TimePoint t) : at_(t) {}
  std::optional<TimePoint> at_;
};

// The longest duration a command-line value can ask for: 10^9 s, about 31.7 years, which means
// "never" in practice. A Duration counts nanoseconds in 64 bits (about 292 years), so a larger value
// would overflow it (and `now() + d` with it); larger values, infinity and NaN are clamped to this.
inline constexpr double kMaxSeconds = 1e9;

// Seconds as a double (command-line values) to a Duration; negative values are zero, values over
// kMaxSeconds are kMaxSeconds.
Duration seconds(double s);

}  // namespace tether::base
