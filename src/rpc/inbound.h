// What the dispatcher makes of a line from the bridge before it builds any value (connection.cpp's
// hot path, issue 17), and how its events reach a queue: one push per read, not per line.
// Private to the rpc layer.
#pragma once

#include <string_view>
#include <vector>

#include "rpc/connection.h"

namespace tether::rpc {

// A line that needs no value built to be routed: a well-formed request or notification (an integer
// or string id, if any) goes to the consumer as its line. `other`: anything else (responses, odd
// shapes, lines that are not JSON), which the dispatcher reads the long way (parse_line, then
// classify). `plain`: ConnectionOptions::plain_notification (may be null).
enum class LineRoute { notification, request, other };
LineRoute route_line(std::string_view line, bool (*plain)(std::string_view));

// While one is alive on a thread, deliver() to `q` on that thread appends to `batch` instead of
// pushing: the dispatcher hands a whole read's events over with one push_all (one lock, one
// wake-up). A completion run on another thread (a dead connection's, by the caller) pushes
// directly.
class BatchScope {
 public:
  BatchScope(const EventQueue* q, std::vector<Event>& batch);
  ~BatchScope();
  BatchScope(const BatchScope&) = delete;
  BatchScope& operator=(const BatchScope&) = delete;
};

// Into the batch being filled for `q` on this thread, else straight into `q`.
void deliver(EventQueue* q, Event ev);

}  // namespace tether::rpc
