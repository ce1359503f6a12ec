// The heartbeat of one generation: a `$/ping` whenever the bridge has been silent for an interval,
// and "hung" after kHeartbeatMisses unanswered ones in a row. It never disturbs a bridge that has
// not answered a ping yet (it is armed by the first answer), and it counts nothing while tether
// itself is not reading the bridge's output (backpressure). A plain object the supervisor thread
// ticks; it owns no clock of its own beyond what it reads at each tick.
//
// Thread contract: thread-bound to the supervisor thread, except that a ping's completion (on the
// dispatcher thread) sets a shared atomic flag.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include "base/clock.h"
#include "rpc/connection.h"

namespace tether::supervisor {

inline constexpr int kHeartbeatMisses = 3;

class Heartbeat {
 public:
  explicit Heartbeat(base::Duration interval) : interval_(interval) {}

  // Starts over for a new generation: silent since now, nothing sent, not armed.
  void reset();
  // Pings `conn` when it has been silent for an interval; true when it is hung.
  bool tick(rpc::Connection& conn);

 private:
  const base::Duration interval_;
  base::TimePoint last_rx_{};
  base::TimePoint ping_sent_{};
  std::int64_t ping_id_ = 0;
  bool ping_out_ = false;
  bool armed_ = false;
  int misses_ = 0;
  // Set by the ping's completion. A fresh one per generation: a late answer to the previous
  // generation's ping must not arm this one.
  std::shared_ptr<std::atomic<int>> answered_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace tether::supervisor
