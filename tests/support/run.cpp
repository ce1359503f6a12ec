#include "support/run.h"

#include "support/support.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <sstream>

namespace tether::test {

std::vector<std::string> RunResult::out_lines() const {
  std::vector<std::string> lines;
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

RunResult run(const std::vector<std::string>& argv, const RunOptions& o) {
  RunResult res;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) return res;
  std::vector<std::string> env = environment_overriding(o.env);
  std::vector<char*> av = exec_vector(argv), ev = exec_vector(env);

  auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    exec_as_command(av.data(), ev.data());
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  ::signal(SIGPIPE, SIG_IGN);

  std::string to_write = o.stdin_text;
  std::size_t written = 0;
  int in_fd = in[1], out_fd = out[0], err_fd = err[0];
  ::fcntl(in_fd, F_SETFL, O_NONBLOCK);
  if (to_write.empty() && o.close_stdin) {
    ::close(in_fd);
    in_fd = -1;
  }
  auto deadline = start + o.limit;
  bool out_closed_early = false;
  while (out_fd >= 0 || err_fd >= 0) {
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      res.timed_out = true;
      ::kill(pid, SIGKILL);
      break;
    }
    pollfd p[3];
    nfds_t n = 0;
    int io = -1, oo = -1, eo = -1;
    if (in_fd >= 0 && written < to_write.size()) p[io = static_cast<int>(n++)] = {in_fd, POLLOUT, 0};
    if (out_fd >= 0) p[oo = static_cast<int>(n++)] = {out_fd, POLLIN, 0};
    if (err_fd >= 0) p[eo = static_cast<int>(n++)] = {err_fd, POLLIN, 0};
    int ms = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count()) + 1;
    if (::poll(p, n, ms) < 0) continue;
    char buf[65536];
    if (io >= 0 && p[io].revents) {
      ssize_t w = ::write(in_fd, to_write.data() + written, to_write.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN) written = to_write.size();
      if (written == to_write.size() && o.close_stdin) {
        ::close(in_fd);
        in_fd = -1;
      }
    }
    bool more = false;
    for (int idx : {oo, eo}) {
      if (idx < 0 || !p[idx].revents) continue;
      int& fd = idx == oo ? out_fd : err_fd;
      ssize_t r = ::read(fd, buf, sizeof buf);
      if (r > 0) {
        (idx == oo ? res.out : res.err).append(buf, static_cast<std::size_t>(r));
        more = true;
      } else if (r == 0 || errno != EINTR) {
        ::close(fd);
        fd = -1;
      }
    }
    if (o.close_stdout_after_first_line && !out_closed_early && out_fd >= 0 &&
        res.out.find('\n') != std::string::npos) {
      ::close(out_fd);  // the reader goes away, like `head -n 1`
      out_fd = -1;
      out_closed_early = true;
    }
    if (more && o.on_output) o.on_output(pid, res.out, res.err);
  }
  for (int fd : {in_fd, out_fd, err_fd})
    if (fd >= 0) ::close(fd);
  int st = 0;
  ::waitpid(pid, &st, 0);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFSIGNALED(st)) res.signal = WTERMSIG(st);
  else res.exit_code = WEXITSTATUS(st);
  return res;
}

}  // namespace tether::test
