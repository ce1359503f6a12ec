// Talk (talk_private.h) with stdin not a terminal: each input line is one prompt or command,
// run to its end before the next is read; at the end of input tether exits with the worst status
// seen (acp::worse_exit()). Through a tether server, the questions it routes to us are answered meanwhile.
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "cli/talk_private.h"

namespace tether::cli {

using namespace talk_detail;

bool Talk::read_script_line(std::string& line) {
  for (;;) {
    if (auto next = script_lines_.next_line()) {  // blank lines too: inside /multi they are text
      line.assign(next->text);
      return true;
    }
    if (script_eof_) {
      line = script_lines_.take_tail();  // once; "" after it, or after a final newline
      return !line.empty();
    }
    // Through a server, requests routed to us (another client's turn) are answered meanwhile.
    pollfd p[3] = {{sig_.get(), POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}, {session_->fd(), POLLIN, 0}};
    int r = ::poll(p, connected_mode() ? 3 : 2, connected_mode() ? session_->next_deadline().poll_timeout_ms() : -1);
    if (r < 0) continue;
    if (connected_mode()) poll_session();
    if (p[0].revents & POLLIN) on_signals();
    if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char buf[65536];
      ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n < 0) {  // stdin closed at start-up (EBADF) or broken: the end of the script, and an I/O error
        error_line(std::string("cannot read stdin: ") + strerror(errno));
        last_status_ = acp::worse_exit(last_status_, kExitIoErr);
      }
      if (n <= 0) script_eof_ = true;
      else script_lines_.push(std::string_view(buf, static_cast<std::size_t>(n)));
    }
  }
}

void Talk::wait_turn() {
  while (turn_) {
    pollfd p[2] = {{sig_.get(), POLLIN, 0}, {turn_->fd(), POLLIN, 0}};
    base::Deadline d = base::Deadline::earliest(turn_->next_deadline(), wait_.next_tick());
    if (connected_mode()) d = base::Deadline::earliest(d, session_->next_deadline());
    int r = ::poll(p, 2, d.poll_timeout_ms());
    wait_.tick();
    if (r > 0 && (p[0].revents & POLLIN)) on_signals();
    handle_turn_events();
    if (connected_mode()) on_session_events(session_->take_notices());
  }
}

int Talk::run_script() {
  std::string line;
  greet_continued();
  while (!quit_ && !stop_script_) {
    if (!read_script_line(line)) {
      on_eof();
      if (turn_) wait_turn();
      break;
    }
    on_line(line, false);
    if (turn_) wait_turn();
  }
  if (stop_script_ && !quit_) {
    std::string rest;
    std::size_t left = 0;
    while (read_script_line(rest)) ++left;
    if (left) renderer_.note(talk::number_text(static_cast<std::int64_t>(left)) + " more input line" + (left == 1 ? " was" : "s were") + " not sent");
    flush();
  }
  return last_status_;
}
}  // namespace tether::cli
