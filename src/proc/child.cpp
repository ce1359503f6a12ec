#include "proc/child.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <set>
#include <thread>

#include "base/signals.h"

extern char** environ;
// glibc's clone() under its own name (exported since glibc 2.2.5; <sched.h> declares only clone).
extern "C" int __clone(int (*fn)(void*), void* stack, int flags, void* arg, ...);

namespace tether::proc {
namespace {

using base::UniqueFd;

struct Pipe {
  UniqueFd r, w;
};

std::optional<Pipe> make_pipe() {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) return std::nullopt;
  return Pipe{UniqueFd(p[0]), UniqueFd(p[1])};
}

// PATH lookup done in the parent: between clone and exec the child makes raw system calls only.
std::string resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    std::string dir = dirs.substr(start, end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    start = end + 1;
  }
  return {};
}

std::vector<std::string> build_env(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string_view entry(*e);
    auto name = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& x : extra)
      if (std::string_view(x).substr(0, x.find('=')) == name) overridden = true;
    if (!overridden) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// What spawn() hands the child, which shares its memory (CLONE_VM): inputs prepared in the
// parent, and the step and errno of a failure, written by the child before it exits.
struct ChildPlan {
  const char* path;
  char* const* argv;
  char* const* envp;
  const char* cwd;  // nullptr: inherit
  int in, out, err;  // err < 0: stderr is stdout
  bool new_session;
  pid_t parent;
  int max_fd;
  int failed_step = 0;
  int failed_errno = 0;
};

// The kernel's struct sigaction (not libc's): the child sets dispositions with the raw system
// call, since libc's sigaction() is what a sanitizer intercepts. The kernel's signal sets are 64
// bits (8 bytes, also where a long has 4: it refuses any other size), as on every architecture
// Debian builds tether for (MIPS, with 128 signals, is not one).
static_assert(NSIG == 65, "the child's raw signal calls assume 64 signals");
#if defined(__x86_64__) && defined(__ILP32__)
#error "x32: the child's raw struct sigaction is not laid out for it"
#endif
constexpr std::size_t kKernelSigsetSize = 8;
struct KernelSigaction {
  void (*handler)(int);
  unsigned long flags;
#if !defined(__riscv) && !defined(__loongarch__)
  void (*restorer)();
#endif
  unsigned long mask[kKernelSigsetSize / sizeof(unsigned long)];  // signals 1 to 64
};

// The child, from clone() to exec. It runs on its own stack in our memory while the spawning
// thread waits (CLONE_VFORK), so it makes raw system calls and nothing else: no libc function
// that takes a lock or that a sanitizer intercepts, and no sanitizer instrumentation (which would
// record its steps as the spawning thread's). syscall() writes only the spawning thread's errno
// (EINVAL, for SIGKILL's and SIGSTOP's dispositions), which spawn() restores. All signals are
// blocked from clone() until the dispositions are reset, so none of tether's handlers ever runs
// here.
// Each function the child calls carries the same attributes (a lambda would not). clang adds
// ThreadSanitizer's function entry and exit calls even under no_sanitize("thread"); only
// disable_sanitizer_instrumentation leaves them out (they would push onto the spawning thread's
// shadow stack, and never pop). clang 14 honours that one for ThreadSanitizer only, so the
// no_sanitize list stays too (AddressSanitizer would poison the child's frame on a stack that
// is unmapped, and later mapped again, without being unpoisoned).
#if defined(__clang__)
#define TETHER_CHILD_SIDE \
  __attribute__((disable_sanitizer_instrumentation, no_sanitize("address", "thread", "undefined", "coverage"), noinline))
#else
#define TETHER_CHILD_SIDE __attribute__((no_sanitize("address", "thread", "undefined"), noinline))
#endif

TETHER_CHILD_SIDE int fail(ChildPlan& plan, int step) {
  plan.failed_step = step;
  plan.failed_errno = errno;
  ::syscall(SYS_exit_group, 127);
  return 127;
}

// Places `fd` at `target`, clearing close-on-exec (dup3 with no flags leaves it off the copy).
TETHER_CHILD_SIDE bool place(int fd, int target) {
  if (fd == target) return ::syscall(SYS_fcntl, fd, F_SETFD, 0) == 0;
  return ::syscall(SYS_dup3, fd, target, 0) == target;
}

TETHER_CHILD_SIDE int child_main(void* arg) {
  auto& plan = *static_cast<ChildPlan*>(arg);
  if (::syscall(plan.new_session ? SYS_setsid : SYS_setpgid, 0, 0) < 0) return fail(plan, 1);
  // Die with the spawning thread (PR_SET_PDEATHSIG is per thread); re-check the parent in case it
  // already died.
  ::syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::syscall(SYS_getppid) != plan.parent) ::syscall(SYS_exit_group, 127);
  // Every signal to its default. One pending (a Ctrl-Z or Ctrl-C sent to our process group while
  // the child was still in it) is discarded first by ignoring it: it must not stop or kill the
  // child once unblocked (a child stopped before its exec would hang this spawn for good).
  std::uint64_t pending = 0;
  ::syscall(SYS_rt_sigpending, &pending, kKernelSigsetSize);
  KernelSigaction ign{}, dfl{};
  ign.handler = SIG_IGN;
  dfl.handler = SIG_DFL;
  for (int sig = 1; sig <= 64; ++sig) {  // fails harmlessly for KILL and STOP
    if (pending & (std::uint64_t{1} << (sig - 1))) ::syscall(SYS_rt_sigaction, sig, &ign, nullptr, kKernelSigsetSize);
    ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, kKernelSigsetSize);
  }
  const std::uint64_t none = 0;
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, kKernelSigsetSize);
  if (!place(plan.in, 0) || !place(plan.out, 1) ||
      (plan.err < 0 ? ::syscall(SYS_dup3, 1, 2, 0) != 2 : !place(plan.err, 2)))
    return fail(plan, 2);
  // Nothing but 0, 1 and 2 crosses exec, whatever tether inherited without close-on-exec.
  if (::syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) != 0)  // kernels before 5.11
    for (int fd = 3; fd < plan.max_fd; ++fd) ::syscall(SYS_fcntl, fd, F_SETFD, FD_CLOEXEC);
  if (plan.cwd && ::syscall(SYS_chdir, plan.cwd) != 0) return fail(plan, 3);
  ::syscall(SYS_execve, plan.path, plan.argv, plan.envp);
  return fail(plan, 4);
}

const char* step_name(int step) {
  switch (step) {
    case 1: return "set up the process group of";
    case 2: return "set up stdio for";
    case 3: return "change directory to the cwd of";
    default: return "exec";
  }
}

// Bridge leaders not reaped yet: the stray reaper must leave their exit status to their Child.
std::mutex g_leaders_mu;
// Spawns between clone() and the registration of their leader in g_leaders (changed under
// g_leaders_mu). While one is under way, the stray reapers reap nothing: the new child may
// already have exited and be a zombie outside our process group that g_leaders does not know
// yet. They run again at the next chance, so a stray waits a little longer, and no lock is
// held across clone() (which returns only once the child has exec'd).
int g_spawning = 0;
// A multiset: a pid reused by a new leader between another thread's waitpid() and its
// remove_leader() must stay registered.
std::multiset<pid_t> g_leaders;

void remove_leader(pid_t pid) {
  std::lock_guard lock(g_leaders_mu);
  if (auto it = g_leaders.find(pid); it != g_leaders.end()) g_leaders.erase(it);
}

// One process as /proc/PID/stat tells it.
struct ProcEntry {
  pid_t pid;
  char state;  // 'Z' for a zombie
  pid_t ppid;
  pid_t pgrp;
};

// Calls `fn` for each process in /proc (those that vanish while it reads are skipped). Polling
// /proc is the only way to see processes that are not our children.
void scan_proc(const std::function<void(const ProcEntry&)>& fn) {
  DIR* proc = ::opendir("/proc");
  if (!proc) return;
  while (auto* e = ::readdir(proc)) {
    char* end;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end != '\0' || pid <= 0) continue;
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE* f = std::fopen(path, "re");
    if (!f) continue;
    char buf[512];
    std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    const char* close = std::strrchr(buf, ')');  // the command name may hold anything, ')' too
    char state;
    int ppid, pgrp;
    if (!close || std::sscanf(close + 2, "%c %d %d", &state, &ppid, &pgrp) != 3) continue;
    fn({static_cast<pid_t>(pid), state, static_cast<pid_t>(ppid), static_cast<pid_t>(pgrp)});
  }
  ::closedir(proc);
}

// Whether one of our children has exited and not been waited for (it stays so: WNOWAIT). When
// none has, reap_strays() has nothing to reap, and skips its walk through /proc: one open, read
// and close per process on the machine (~0.4 ms with 150 of them), which every bridge's end paid
// twice, on the way out of a one-shot `tether prompt` too.
bool have_exited_child() {
  siginfo_t info{};
  int r;
  do r = ::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL); while (r < 0 && errno == EINTR);
  return r == 0 && info.si_pid != 0;
}

}  // namespace

void reap_strays() {
  // Orphans re-parented to us (we are a subreaper) that left their bridge's process group (setsid,
  // setpgid) are not reached by waitpid(-pgid). Reap those that have exited: zombies that are our
  // children, outside our own process group (children tether spawns for the user, such as an
  // editor, share our group and are reaped by whoever spawned them), and not a bridge leader.
  if (!have_exited_child()) return;
  const pid_t self = ::getpid(), own_group = ::getpgrp();
  std::vector<pid_t> zombies;
  scan_proc([&](const ProcEntry& e) {
    if (e.state == 'Z' && e.ppid == self && e.pgrp != own_group) zombies.push_back(e.pid);
  });
  std::lock_guard lock(g_leaders_mu);
  if (g_spawning > 0) return;
  for (pid_t z : zombies)
    if (!g_leaders.count(z)) ::waitpid(z, nullptr, WNOHANG);
}

ExitStatus ExitStatus::from_wait_status(int status) {
  ExitStatus s;
  if (WIFSIGNALED(status)) {
    s.signaled = true;
    s.signal = WTERMSIG(status);
    s.core_dumped = WCOREDUMP(status);
  } else {
    s.code = WEXITSTATUS(status);
  }
  return s;
}

std::string ExitStatus::describe() const {
  if (!signaled) return "status " + std::to_string(code);
  std::string s = "killed by " + base::signal_name(signal);
  if (core_dumped) s += " (core dumped)";
  return s;
}

namespace {

// Runs child_main(plan) in a new process that shares our memory until it has exec'd or failed,
// and registers it as a leader. Its pid, or -1 with errno set.
pid_t start_child(ChildPlan& plan) {
  // The child's stack: it must not run on ours, which this thread still owns.
  constexpr std::size_t kStack = 64 * 1024;
  void* stack = ::mmap(nullptr, kStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return -1;

  // clone(CLONE_VM | CLONE_VFORK), as posix_spawn does, rather than fork(): no copy of our page
  // tables and no copy-on-write fault afterwards for every page either side writes. Where page
  // faults are dear (some VMs: ~13 µs each) fork() cost milliseconds per spawn; this costs one
  // system call. This thread resumes once the child has exec'd or failed, with every signal
  // blocked meanwhile: the child must not run a handler of ours in our memory.
  // glibc's __clone, not clone: ThreadSanitizer intercepts clone() as a fork, which breaks when
  // the child shares our memory.
  // Bound here, in the parent: the child must not enter the dynamic linker to resolve a lazily
  // bound syscall() or errno location (a build that is not static).
  const int saved_errno = errno;
  plan.parent = static_cast<pid_t>(::syscall(SYS_getpid));
  sigset_t all, old;
  sigfillset(&all);
  // Counted from before clone() until after the leader is in g_leaders (so there is no moment
  // when it is neither), and uncounted whatever happens.
  struct SpawnUnderWay {
    SpawnUnderWay() {
      std::lock_guard lock(g_leaders_mu);
      ++g_spawning;
    }
    ~SpawnUnderWay() {
      std::lock_guard lock(g_leaders_mu);
      --g_spawning;
    }
  };
  std::optional<SpawnUnderWay> under_way(std::in_place);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  const pid_t pid = ::__clone(child_main, static_cast<char*>(stack) + kStack, CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  const int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::munmap(stack, kStack);
  if (pid > 0) {
    std::lock_guard lock(g_leaders_mu);
    g_leaders.insert(pid);
  }
  under_way.reset();
  errno = pid < 0 ? clone_errno : saved_errno;
  return pid;
}

}  // namespace

std::variant<Child, SpawnError> Child::spawn(const SpawnOptions& options, ChildFds& fds) {
  if (options.argv.empty()) return SpawnError{EINVAL, "no bridge command given"};
  std::string path = resolve(options.argv[0]);
  if (path.empty()) return SpawnError{ENOENT, options.argv[0] + ": command not found"};

  std::vector<std::string> env = build_env(options.extra_env);
  std::vector<char*> argv, envp;
  for (const auto& a : options.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const char* cwd = options.cwd.empty() ? nullptr : options.cwd.c_str();

  auto in = options.stdin_null ? std::optional<Pipe>(Pipe{UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC)), {}})
                               : make_pipe();
  auto out = make_pipe();
  auto err = options.merge_stderr ? std::optional<Pipe>(Pipe{}) : make_pipe();
  if (!in || !in->r || !out || !err) return SpawnError{errno, std::string("pipe: ") + strerror(errno)};

  ChildPlan plan{path.c_str(), argv.data(), envp.data(), cwd, in->r.get(), out->w.get(),
                 options.merge_stderr ? -1 : err->w.get(), options.new_session, 0, 0};
  const long open_max = ::sysconf(_SC_OPEN_MAX);
  plan.max_fd = open_max > 0 && open_max < 65536 ? static_cast<int>(open_max) : 65536;
  const pid_t pid = start_child(plan);
  if (pid < 0) return SpawnError{errno, std::string("cannot start a process: ") + strerror(errno)};
  // The child has set its group (or session) itself, before exec: a parent's setpgid() after the
  // exec would fail, and is not needed, since this thread waited for it.
  Child child(pid);  // its destructor takes the lock
  in->r.reset();
  out->w.reset();
  err->w.reset();
  if (plan.failed_step != 0) {
    child.reap();
    std::string what = std::string(step_name(plan.failed_step)) + " " + options.argv[0] + ": " + strerror(plan.failed_errno);
    if (plan.failed_step == 3) what = "cannot change directory to " + options.cwd + ": " + strerror(plan.failed_errno);
    return SpawnError{plan.failed_errno, what};
  }

  // The raw syscall: glibc 2.36's <sys/pidfd.h> lacks C linkage for C++ callers.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) {
    int e = errno;
    child.signal_group(SIGKILL);
    child.reap();
    return SpawnError{e, std::string("pidfd_open: ") + strerror(e) + " (tether needs Linux 5.3 or later)"};
  }
  ::fcntl(pidfd.get(), F_SETFD, FD_CLOEXEC);
  for (auto* fd : {&in->w, &out->r, &err->r})
    if (*fd) base::set_nonblocking(fd->get());
  fds.stdin_w = std::move(in->w);
  fds.stdout_r = std::move(out->r);
  fds.stderr_r = std::move(err->r);
  fds.pidfd = std::move(pidfd);
  return child;
}

Child::Child(Child&& o) noexcept
    : pid_(std::exchange(o.pid_, -1)), pgid_(std::exchange(o.pgid_, -1)), status_(o.status_) {}

Child::~Child() {
  if (pid_ < 0) return;
  if (!status_) {
    signal_group(SIGKILL);
    reap();
  }
  reap_group_members();
  reap_strays();
}

void Child::signal_group(int sig) const {
  if (pgid_ > 0) ::kill(-pgid_, sig);
  // A leader that moved itself to another group is not reached by the group signal; until it is
  // reaped its pid is still ours, so signal it directly (only then: not twice).
  if (pid_ > 0 && !status_ && ::getpgid(pid_) != pgid_) ::kill(pid_, sig);
}

std::optional<ExitStatus> Child::try_reap() {
  if (status_ || pid_ < 0) return status_;
  int st = 0;
  pid_t r;
  do r = ::waitpid(pid_, &st, WNOHANG); while (r < 0 && errno == EINTR);
  if (r == pid_) {
    status_ = ExitStatus::from_wait_status(st);
    remove_leader(pid_);
  }
  return status_;
}

ExitStatus Child::reap() {
  if (status_) return *status_;
  int st = 0;
  pid_t r;
  do r = ::waitpid(pid_, &st, 0); while (r < 0 && errno == EINTR);
  status_ = r == pid_ ? ExitStatus::from_wait_status(st) : ExitStatus{};
  remove_leader(pid_);
  return *status_;
}

std::optional<ExitStatus> Child::peek_exit() const {
  if (status_ || pid_ < 0) return status_;
  siginfo_t info{};
  int r;
  do r = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT); while (r < 0 && errno == EINTR);
  if (r != 0 || info.si_pid != pid_) return std::nullopt;  // still running
  ExitStatus s;
  if (info.si_code == CLD_EXITED) {
    s.code = info.si_status;
  } else {
    s.signaled = true;
    s.signal = info.si_status;
    s.core_dumped = info.si_code == CLD_DUMPED;
  }
  return s;
}

bool Child::group_alive() const { return pgid_ > 0 && ::kill(-pgid_, 0) == 0; }

void Child::reap_group_members() {
  // Grandchildren re-parented to us (we are a subreaper) keep the bridge's group id: reap them.
  if (pgid_ <= 0) return;
  int st;
  while (::waitpid(-pgid_, &st, WNOHANG) > 0) {
  }
}

void Child::clean_up_group(base::Duration term_wait) {
  reap_group_members();
  reap_strays();
  if (!group_alive()) return;
  signal_group(SIGTERM);
  signal_group(SIGCONT);  // a stopped process would otherwise never see the SIGTERM
  auto deadline = base::Deadline::after(term_wait);
  // Polling is the only way to watch processes that are not our children; the group is normally
  // empty after the first round.
  while (!deadline.expired()) {
    reap_group_members();
    if (!group_alive()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  signal_group(SIGKILL);
  auto kill_deadline = base::Deadline::after(std::chrono::milliseconds(500));
  while (!kill_deadline.expired()) {
    reap_group_members();
    if (!group_alive()) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

LadderStep stop_ladder(Child& child, base::Duration grace, base::Duration term_wait,
                       const LadderHooks& hooks) {
  LadderStep step = LadderStep::exited_on_eof;
  hooks.close_stdin();
  if (!hooks.wait_exit(base::Deadline::after(grace))) {
    step = LadderStep::terminated;
    child.signal_group(SIGTERM);
    child.signal_group(SIGCONT);
    if (!hooks.wait_exit(base::Deadline::after(term_wait))) {
      step = LadderStep::killed;
      child.signal_group(SIGKILL);
    }
  }
  child.reap();
  return step;
}

void become_subreaper() { ::prctl(PR_SET_CHILD_SUBREAPER, 1); }

std::size_t sweep_group(pid_t pgid, pid_t keep) {
  if (pgid <= 0) return 0;
  const pid_t self = ::getpid();
  std::size_t running = 0;
  std::vector<pid_t> zombies;
  scan_proc([&](const ProcEntry& e) {
    if (e.pgrp != pgid) return;
    if (e.state != 'Z' && e.state != 'X') ++running;
    else if (e.ppid == self && e.pid != keep) zombies.push_back(e.pid);
  });
  // As reap_strays: a bridge leader's exit status is its Child's, even if its pid was reused
  // into this group's scan; the lock keeps a leader being spawned from looking like a stray.
  std::lock_guard lock(g_leaders_mu);
  if (g_spawning == 0)
    for (pid_t z : zombies)
      if (!g_leaders.count(z)) ::waitpid(z, nullptr, WNOHANG);
  return running;
}

namespace {
std::mutex g_groups_mu;
std::multiset<pid_t> g_groups;  // see register_group
}  // namespace

void register_group(pid_t pgid) {
  std::lock_guard lock(g_groups_mu);
  g_groups.insert(pgid);
}

void unregister_group(pid_t pgid) {
  std::lock_guard lock(g_groups_mu);
  if (auto it = g_groups.find(pgid); it != g_groups.end()) g_groups.erase(it);
}

void kill_registered_groups(std::chrono::milliseconds grace) {
  std::lock_guard lock(g_groups_mu);
  // A registered group's leader is not reaped before it is unregistered (TerminalProcess keeps
  // it), so its id still names that group.
  if (grace.count() > 0) {
    for (pid_t g : g_groups) {
      ::kill(-g, SIGTERM);
      ::kill(-g, SIGCONT);  // a stopped member sees its SIGTERM only once continued
    }
    auto until = base::Deadline::after(grace);
    auto running = [&] {
      for (pid_t g : g_groups)
        if (sweep_group(g, g) > 0) return true;
      return false;
    };
    while (running() && !until.expired()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  for (pid_t g : g_groups) ::kill(-g, SIGKILL);
}

}  // namespace tether::proc
