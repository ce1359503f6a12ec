// Fake bridge: a slow reader of its stdin, for the tests of how tether writes to a bridge. It
// shrinks its stdin pipe to one page, so that a writer meets a full pipe at once (EAGAIN, and a
// line longer than a page is always written in part), says so on stdout ({"method":"ready",
// "params":{"pipe":SIZE}}), then reads its stdin 1 KiB at a time, pausing argv[2] microseconds
// (default 20; 0: none) after each read, and copies the bytes as they came to the file argv[1].
// Each request is answered with an empty result once its line is read (so a caller can wait for a
// round trip); nothing else in what it reads is looked at: a line torn, lost, doubled or out of
// order shows in the file as it came. At stdin EOF it exits 0.
#include <fcntl.h>
#include <time.h>

#include <cstdlib>
#include <string>

#include "fake_util.h"

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  const long pause_us = argc > 2 ? std::atol(argv[2]) : 20;
  fake::count_spawn();
  int out = ::open(argv[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0) return 2;
  // Nothing was written to the pipe yet (the test waits for "ready"), so the shrink cannot fail
  // for lack of room.
  const int pipe_size = ::fcntl(0, F_SETPIPE_SZ, 4096);
  if (!fake::write_line(1, "{\"jsonrpc\":\"2.0\",\"method\":\"ready\",\"params\":{\"pipe\":" +
                               std::to_string(pipe_size) + "}}"))
    return 2;
  const timespec pause{0, pause_us * 1000};
  std::string pending;  // the start of a line not read to its end yet
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    std::string_view bytes(buf, static_cast<std::size_t>(n));
    if (!fake::write_all(out, bytes)) return 3;
    pending.append(bytes);
    std::size_t start = 0;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(pending.data() + start, nl - start);
      if (fake::is_request(line)) fake::write_line(1, fake::result_line(*fake::field(line, "id"), "{}"));
    }
    pending.erase(0, start);
    if (pause_us > 0) ::nanosleep(&pause, nullptr);
  }
  ::close(out);
  return 0;
}
