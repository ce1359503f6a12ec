// Helpers shared by the tests: waiting on a condition with a deadline (tests never sleep to
// synchronize), and checks that a test left no zombie children and no leaked fds behind.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <set>
#include <string>
#include <vector>

namespace tether::test {

// Polls `cond` until it holds or `limit` passes; true if it held. Use for conditions that have no
// event to wait on (another process's state); fail loudly with CHECK/REQUIRE at expiry.
bool eventually(const std::function<bool()>& cond,
                std::chrono::milliseconds limit = std::chrono::milliseconds(5000));

// The fds this process has open right now.
std::set<int> open_fds();
// Children of this process that are zombies (exited, not reaped).
std::vector<pid_t> zombie_children();
// Direct children of this process (any state).
std::vector<pid_t> children();
bool process_exists(pid_t pid);  // false also for a zombie

// This process's environment with `changes` applied: NAME=value adds or replaces NAME, NAME=
// (nothing after '=') removes it. For a child started with execve.
std::vector<std::string> environment_with(const std::vector<std::string>& changes);
// The same, except that NAME= sets NAME to the empty string (some variables mean something when
// empty: TETHER_HISTORY= turns the history off). Each change replaces every entry of its name:
// glibc's getenv answers with the first one, so an entry appended after an inherited one (meson
// sets XDG_STATE_HOME for every test) would not be seen at all.
std::vector<std::string> environment_overriding(const std::vector<std::string>& changes);

// argv or envp for execve: pointers into `strings` (which must outlive them), null-terminated.
std::vector<char*> exec_vector(const std::vector<std::string>& strings);
// In a child after fork: the empty signal mask and the default SIGINT, SIGTERM, SIGHUP, SIGPIPE
// and SIGQUIT dispositions (what a shell gives a command), then execve; exit 127 if it fails.
[[noreturn]] void exec_as_command(char* const argv[], char* const envp[]);

// Absolute path of a built fake bridge (tests/fakes), from TETHER_FAKES_DIR set by meson.
std::string fake(const std::string& name);
// Absolute path of the built tether binary, from TETHER_BIN set by meson.
std::string tether_bin();

// Records the fds open at construction; check_clean() says whether the fd set is back to that
// (fds opened meanwhile and still open are listed in `leaked`) and no zombie children remain.
class LeakGuard {
 public:
  LeakGuard();
  bool check_clean(std::string& report) const;

 private:
  std::set<int> fds_;
};

}  // namespace tether::test
