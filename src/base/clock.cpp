#include "base/clock.h"

#include <climits>

namespace tether::base {

int Deadline::poll_timeout_ms(TimePoint now) const {
  if (!at_) return -1;
  if (now >= *at_) return 0;
  auto left = std::chrono::ceil<std::chrono::milliseconds>(*at_ - now).count();
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

Deadline Deadline::earliest(Deadline a, Deadline b) {
  if (a.is_never()) return b;
  if (b.is_never()) return a;
  return a.when() <= b.when() ? a : b;
}

Duration seconds(double s) {
  if (!(s <= kMaxSeconds)) s = kMaxSeconds;  // NaN too
  if (s < 0) s = 0;
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

}  // namespace tether::base
