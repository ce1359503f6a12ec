// The bridge's event queue (connection.h): a PollableQueue whose events are handed out with their
// line parsed, on the consumer's thread, and handed back to be freed by the dispatcher that
// allocated them.
#include "rpc/connection.h"

#include "rpc/message.h"

namespace tether::rpc {
namespace {

// Lines longer than this are freed by the consumer, not handed back (EventQueue::recycle).
constexpr std::size_t kMaxRecycledLine = 64 * 1024;

}  // namespace

void parse_message(Event& ev) {
  if (ev.line.empty() || !ev.message.is_null()) return;
  // The dispatcher checked the line (pass_line): it parses.
  if (auto msg = parse_line(ev.line)) ev.message = std::move(*msg);
}

std::vector<Event> EventQueue::drain() {
  auto events = Base::drain();
  for (auto& ev : events) parse_message(ev);
  return events;
}

void EventQueue::recycle(std::vector<Event>&& done) {
  for (Event& ev : done) {
    // A message parsed from its line was allocated here, by the consumer: freed here too. Only
    // what the dispatcher allocated goes back to it.
    if (!ev.line.empty()) ev.message = nullptr;
    if (ev.line.capacity() > kMaxRecycledLine) std::string().swap(ev.line);
  }
  Base::recycle(std::move(done));
}

std::optional<Event> EventQueue::pop(base::Deadline deadline) {
  auto ev = Base::pop(deadline);
  if (ev) parse_message(*ev);
  return ev;
}

}  // namespace tether::rpc
