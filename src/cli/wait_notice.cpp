#include "cli/wait_notice.h"

#include <unistd.h>

#include "acp/outcome.h"
#include "base/byte_ring.h"
#include "cli/render.h"
#include "supervisor/bridge.h"

namespace tether::cli {
namespace {

constexpr auto kRepeatPlain = std::chrono::seconds(60);
constexpr std::size_t kMaxQuoted = 160;

void write_err(const std::string& s) { [[maybe_unused]] auto n = ::write(STDERR_FILENO, s.data(), s.size()); }

}  // namespace

void WaitNotice::start() {
  watching_ = !quiet_;
  frames_seen_ = bridge_.status().counters.frames_in;
  quiet_since_ = base::Clock::now();
  last_written_ = {};
}

void WaitNotice::stop() {
  watching_ = false;
  clear();
}

void WaitNotice::clear() {
  if (!shown_) return;
  write_err("\r\x1b[K");
  shown_ = false;
}

base::Deadline WaitNotice::next_tick() const {
  if (!watching_) return base::Deadline::never();
  return base::Deadline::after(std::chrono::seconds(1));
}

void WaitNotice::tick() {
  if (!watching_) return;
  auto st = bridge_.status();
  auto now = base::Clock::now();
  if (st.counters.frames_in != frames_seen_) {  // the agent spoke: the silence starts again
    frames_seen_ = st.counters.frames_in;
    quiet_since_ = now;
    clear();
    return;
  }
  auto quiet_for = now - quiet_since_;
  if (quiet_for < kAfter) return;
  const bool mid_line = !shown_ && line_open_ && line_open_();
  const bool in_place = terminal_ && !mid_line;
  if (!in_place && last_written_ != base::TimePoint{} && now - last_written_ < kRepeatPlain) return;
  std::string line = "tether: waiting for the agent: nothing from it for " +
                     acp::duration_text(std::chrono::duration_cast<std::chrono::seconds>(quiet_for));
  std::string said = talk::sanitize_text(base::last_telling_line(st.stderr_tail));
  if (said.size() > kMaxQuoted) said = said.substr(0, kMaxQuoted) + "…";
  line += said.empty() ? "; its stderr is quiet" : "; its stderr said: " + said;
  last_written_ = now;
  if (in_place) {
    write_err("\r\x1b[K" + line);
    shown_ = true;
  } else {
    write_err((mid_line ? "\n" : "") + line + "\n");
  }
}

}  // namespace tether::cli
