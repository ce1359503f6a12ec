// The line that says tether is still waiting for a silent agent (issue: Claude waited 185 s and
// Gemini 5 min with no output while their stderr said "fetch failed"). Once the agent has sent
// nothing on stdout for 10 s during session setup or a turn, one line on stderr says how long and
// what the agent last wrote on its stderr; on a terminal it is rewritten in place each second and
// erased when the agent speaks again, elsewhere it is written once, then once a minute. Not with
// -q.
//
// Thread contract: thread-bound (the front-end's loop calls tick()).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "base/clock.h"

namespace tether::supervisor {
class Bridge;
}

namespace tether::cli {

class WaitNotice {
 public:
  static constexpr auto kAfter = std::chrono::seconds(10);

  WaitNotice(const supervisor::Bridge& bridge, bool quiet, bool terminal)
      : bridge_(bridge), quiet_(quiet), terminal_(terminal) {}
  ~WaitNotice() { clear(); }

  // Starts watching (a turn or the setup begins): the silence is counted from now.
  void start();
  // Stops watching and erases the line on a terminal.
  void stop();
  // Call at least once a second while watching (next_tick() says when).
  void tick();
  base::Deadline next_tick() const;
  // Before other output to stderr on a terminal: the line is erased (it comes back at the next tick).
  void clear();
  // True while the answer's line on the same terminal is half written: the notice then goes on a
  // line of its own, once, instead of being rewritten in place (which would erase that line).
  void set_line_open(std::function<bool()> line_open) { line_open_ = std::move(line_open); }

 private:
  const supervisor::Bridge& bridge_;
  const bool quiet_;
  const bool terminal_;
  bool watching_ = false;
  bool shown_ = false;  // terminal: the line is on the screen
  std::function<bool()> line_open_;
  std::uint64_t frames_seen_ = 0;
  base::TimePoint quiet_since_{};
  base::TimePoint last_written_{};
};

}  // namespace tether::cli
