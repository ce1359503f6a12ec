#include "support/support.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <sstream>
#include <thread>

namespace tether::test {

bool eventually(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  auto until = std::chrono::steady_clock::now() + limit;
  auto step = std::chrono::milliseconds(1);
  while (!cond()) {
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(step);  // polling a condition, not synchronizing on time
    if (step < std::chrono::milliseconds(20)) step *= 2;
  }
  return true;
}

std::set<int> open_fds() {
  std::set<int> fds;
  DIR* d = ::opendir("/proc/self/fd");
  if (!d) return fds;
  int self = ::dirfd(d);
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    int fd = std::atoi(e->d_name);
    if (fd != self) fds.insert(fd);
  }
  ::closedir(d);
  return fds;
}

namespace {
// Fields of /proc/PID/stat after the command name: state, ppid, ...
// Read with read(2), not a stream: a process that exits while its file is read makes the read fail
// (ESRCH), and libstdc++'s filebuf throws on that, whatever the stream's exception mask (a
// LeakGuard scanning /proc threw at the end of a test, and leaked the open /proc directory).
bool read_stat(pid_t pid, char& state, pid_t& ppid) {
  std::string all;
  {
    int fd = ::open(("/proc/" + std::to_string(pid) + "/stat").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char buf[1024];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    if (n < 0) return false;
  }
  auto close = all.rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(all.substr(close + 2));
  rest >> state >> ppid;
  return static_cast<bool>(rest);
}

template <typename F>
std::vector<pid_t> scan(F keep) {
  std::vector<pid_t> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  pid_t self = ::getpid();
  while (auto* e = ::readdir(d)) {
    pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    char state;
    pid_t ppid;
    if (read_stat(pid, state, ppid) && ppid == self && keep(state)) out.push_back(pid);
  }
  ::closedir(d);
  return out;
}
}  // namespace

std::vector<pid_t> zombie_children() {
  return scan([](char state) { return state == 'Z'; });
}

std::vector<pid_t> children() {
  return scan([](char) { return true; });
}

bool process_exists(pid_t pid) {
  char state;
  pid_t ppid;
  if (!read_stat(pid, state, ppid)) return false;
  return state != 'Z' && state != 'X';
}

std::string fake(const std::string& name) {
  const char* dir = std::getenv("TETHER_FAKES_DIR");
  return std::string(dir ? dir : "tests/fakes") + "/" + name;
}

std::string tether_bin() {
  const char* bin = std::getenv("TETHER_BIN");
  return bin ? bin : "tether";
}

LeakGuard::LeakGuard() : fds_(open_fds()) {}

bool LeakGuard::check_clean(std::string& report) const {
  report.clear();
  // Closing happens on other threads' way out; give it a moment to settle.
  bool clean = eventually([&] { return open_fds() == fds_ && zombie_children().empty(); },
                          std::chrono::milliseconds(3000));
  if (clean) return true;
  for (int fd : open_fds())
    if (!fds_.count(fd)) {
      char target[256] = {};
      std::string link = "/proc/self/fd/" + std::to_string(fd);
      ssize_t n = ::readlink(link.c_str(), target, sizeof target - 1);
      report += "leaked fd " + std::to_string(fd) + " -> " + (n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?") + "\n";
    }
  for (pid_t z : zombie_children()) report += "zombie child " + std::to_string(z) + "\n";
  return false;
}

namespace {

std::vector<std::string> changed_environment(const std::vector<std::string>& changes, bool empty_unsets) {
  std::vector<std::string> envs;
  for (char** e = environ; *e; ++e) envs.emplace_back(*e);
  for (const auto& change : changes) {
    std::string name = change.substr(0, change.find('=')) + "=";
    std::erase_if(envs, [&](const std::string& e) { return e.compare(0, name.size(), name) == 0; });
    if (change.size() > name.size() || !empty_unsets) envs.push_back(change);
  }
  return envs;
}

}  // namespace

std::vector<std::string> environment_with(const std::vector<std::string>& changes) {
  return changed_environment(changes, true);
}

std::vector<std::string> environment_overriding(const std::vector<std::string>& changes) {
  return changed_environment(changes, false);
}

std::vector<char*> exec_vector(const std::vector<std::string>& strings) {
  std::vector<char*> v;
  for (auto& s : strings) v.push_back(const_cast<char*>(s.c_str()));
  v.push_back(nullptr);
  return v;
}

void exec_as_command(char* const argv[], char* const envp[]) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGQUIT}) ::signal(s, SIG_DFL);
  ::execve(argv[0], argv, envp);
  ::_exit(127);
}

}  // namespace tether::test
