#include "pty_session.h"

#include "support/support.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace tether::test {

namespace {

// Length of a complete escape sequence at the start of `s`; 0 if it is unfinished.
std::size_t escape_length(std::string_view s) {
  if (s.size() < 2) return 0;
  if (s[1] == '[') {
    for (std::size_t i = 2; i < s.size(); ++i)
      if (s[i] >= 0x40 && s[i] <= 0x7e) return i + 1;
    return 0;
  }
  if (s[1] == ']') {
    for (std::size_t i = 2; i < s.size(); ++i) {
      if (s[i] == '\a') return i + 1;
      if (s[i] == 0x1b && i + 1 < s.size() && s[i + 1] == '\\') return i + 2;
    }
    return 0;
  }
  if (s[1] == '(' || s[1] == ')') return s.size() >= 3 ? 3 : 0;
  return 2;
}

}  // namespace

std::string strip_terminal(std::string_view raw) {
  std::string out;
  for (std::size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == 0x1b) {
      std::size_t n = escape_length(raw.substr(i));
      if (n == 0) break;
      i += n - 1;
    } else if (c == '\r' || c == '\b' || c == '\a' || c == 0x07) {
      continue;
    } else {
      out += c;
    }
  }
  return out;
}

Pty::Pty(const std::vector<std::string>& argv, const std::vector<std::string>& env, int rows, int cols) {
  std::vector<std::string> envs = environment_with(env);
  std::vector<char*> av = exec_vector(argv), ev = exec_vector(envs);

  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  pid_ = ::forkpty(&master_, nullptr, nullptr, &ws);
  if (pid_ == 0) exec_as_command(av.data(), ev.data());
  if (master_ >= 0) ::fcntl(master_, F_SETFD, FD_CLOEXEC);
}

Pty::~Pty() {
  if (pid_ > 0 && !reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (master_ >= 0) ::close(master_);
}

void Pty::resize(int rows, int cols) {
  winsize ws{};
  ws.ws_row = static_cast<unsigned short>(rows);
  ws.ws_col = static_cast<unsigned short>(cols);
  if (::ioctl(master_, TIOCSWINSZ, &ws) != 0) throw std::runtime_error(std::string("TIOCSWINSZ: ") + strerror(errno));
}

bool Pty::wait_keys_read(std::chrono::milliseconds limit) {
  // The slave side's input queue, seen through a second descriptor of our own.
  const char* name = ::ptsname(master_);
  if (!name) return false;
  int fd = ::open(name, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return false;
  auto deadline = std::chrono::steady_clock::now() + limit;
  bool read = false;
  for (;;) {
    int queued = 0;
    if (::ioctl(fd, FIONREAD, &queued) != 0) break;
    if (queued == 0) {
      read = true;
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    pump(5);
  }
  ::close(fd);
  return read;
}

bool Pty::wait_signal_taken(int sig, std::chrono::milliseconds limit) {
  // /proc/PID/status: SigPnd (the thread's pending signals) and ShdPnd (the process's), in hex.
  const unsigned long long bit = 1ULL << (sig - 1);
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    if (!in) return false;
    bool pending = false;
    for (std::string line; std::getline(in, line);)
      if (line.rfind("SigPnd:", 0) == 0 || line.rfind("ShdPnd:", 0) == 0)
        if (std::stoull(line.substr(7), nullptr, 16) & bit) pending = true;
    if (!pending) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    pump(5);
  }
}

void Pty::send(std::string_view keys) {
  while (!keys.empty()) {
    ssize_t n = ::write(master_, keys.data(), keys.size());
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return;
    }
    keys.remove_prefix(static_cast<std::size_t>(n));
  }
}

void Pty::append(std::string_view raw) {
  raw_.append(raw);
  pending_.append(raw);
  // Keep an unfinished escape sequence for the next read.
  std::size_t cut = pending_.size();
  auto esc = pending_.rfind('\x1b');
  if (esc != std::string::npos && escape_length(std::string_view(pending_).substr(esc)) == 0) cut = esc;
  text_ += strip_terminal(std::string_view(pending_).substr(0, cut));
  pending_.erase(0, cut);
}

bool Pty::pump(int timeout_ms) {
  pollfd p{master_, POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  char buf[65536];
  ssize_t n = ::read(master_, buf, sizeof buf);
  if (n <= 0) return false;  // EIO once the slave side is closed
  append(std::string_view(buf, static_cast<std::size_t>(n)));
  return true;
}

bool Pty::wait_for(std::string_view needle, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (text_.find(needle, mark_) != std::string::npos) return true;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) return false;
    pump(static_cast<int>(std::min<long long>(left, 200)));
  }
}

std::size_t Pty::count(std::string_view needle) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  while (pump(0) && std::chrono::steady_clock::now() < deadline) {
  }
  std::size_t n = 0;
  for (auto pos = text_.find(needle, mark_); pos != std::string::npos; pos = text_.find(needle, pos + needle.size())) ++n;
  return n;
}

std::optional<int> Pty::wait_exit(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!reaped_) {
    int st = 0;
    pid_t r = ::waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      status_ = WIFSIGNALED(st) ? 128 + WTERMSIG(st) : WEXITSTATUS(st);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    if (!pump(20)) {
      // Nothing to read: wait a little for the exit, without busy looping.
      pollfd p{master_, POLLIN, 0};
      ::poll(&p, 1, 20);
    }
  }
  while (pump(0)) {
  }
  return status_;
}

std::vector<pid_t> Pty::grandchildren() const {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (!end || *end || pid <= 0) continue;
    std::ifstream in("/proc/" + std::string(e->d_name) + "/stat");
    std::string stat;
    std::getline(in, stat);
    auto rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::istringstream rest(stat.substr(rp + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == pid_ && state != 'Z') out.push_back(static_cast<pid_t>(pid));
  }
  ::closedir(d);
  return out;
}

}  // namespace tether::test
