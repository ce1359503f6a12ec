// Fake bridge: on each request, leaves behind a "stray": a helper that is re-parented to the
// supervisor (its parent exits at once) and moves to a session of its own (setsid), then exits.
// The bridge itself stays up and answers {"stray":PID} once the stray has exited. Such a stray is
// the supervisor's zombie (a subreaper's), outside the bridge's process group.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    int report[2];
    if (::pipe(report) != 0) return 1;
    pid_t middle = ::fork();
    if (middle < 0) return 1;
    if (middle == 0) {
      pid_t stray = ::fork();
      if (stray == 0) {
        ::setsid();
        const pid_t mid = ::getppid();
        ::kill(mid, SIGKILL);                   // re-parent us now
        while (::getppid() == mid) ::usleep(1000);
        ::_exit(0);
      }
      [[maybe_unused]] auto n = ::write(report[1], &stray, sizeof stray);
      for (;;) ::pause();  // killed by the stray
    }
    ::close(report[1]);
    pid_t stray = -1;
    [[maybe_unused]] auto n = ::read(report[0], &stray, sizeof stray);
    ::close(report[0]);
    ::waitpid(middle, nullptr, 0);
    auto id = fake::field(line, "id");
    fake::write_line(1, fake::result_line(*id, "{\"stray\":" + std::to_string(stray) + "}"));
  }
  return 0;
}
