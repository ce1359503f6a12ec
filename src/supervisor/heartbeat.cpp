#include "supervisor/heartbeat.h"

namespace tether::supervisor {

using base::Clock;

void Heartbeat::reset() {
  last_rx_ = Clock::now();
  ping_out_ = false;
  armed_ = false;
  misses_ = 0;
  answered_ = std::make_shared<std::atomic<int>>(0);
}

bool Heartbeat::tick(rpc::Connection& conn) {
  const auto now = Clock::now();
  auto rx = conn.last_received();
  if (rx > last_rx_) {  // any traffic proves liveness
    last_rx_ = rx;
    misses_ = 0;
  }
  if (conn.backpressured()) {
    // We stopped reading (our consumer is slow): the bridge's answers wait in the pipe, unread.
    // Its silence is ours, so nothing counts as a miss until we read again.
    last_rx_ = now;
    misses_ = 0;
    if (ping_out_) ping_sent_ = now;
  }
  if (answered_->exchange(0) > 0) {
    armed_ = true;
    misses_ = 0;
    ping_out_ = false;
  }
  if (ping_out_ && now - ping_sent_ >= interval_) {
    conn.cancel(ping_id_);
    ping_out_ = false;
    // Before the first answer the heartbeat is not armed: a bridge that never answers pings is
    // never disturbed.
    if (armed_ && now - last_rx_ >= interval_ && ++misses_ >= kHeartbeatMisses) return true;
  }
  if (!ping_out_ && now - last_rx_ >= interval_) {
    auto answered = answered_;
    ping_id_ = conn.call_async("$/ping", rpc::json::object(), [answered](rpc::Reply r) {
      // Any response, an error (-32601) included, proves the bridge reads and answers.
      if (r.status == rpc::Reply::Status::result || r.status == rpc::Reply::Status::error) answered->store(1);
    });
    ping_sent_ = now;
    ping_out_ = true;
  }
  return false;
}

}  // namespace tether::supervisor
