// Process-level behaviour of a bridge: how it is spawned (its starting state, failures, dying with
// the thread that spawned it), a grandchild that keeps stdout open after the bridge died, a bridge
// that ignores SIGTERM and stdin EOF, and a bridge that answers and exits at once.
#include <doctest/doctest.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

#include "integration.h"

namespace tether::itest {
namespace {

using namespace std::chrono_literals;
using base::Deadline;
using rpc::Reply;
using supervisor::Bridge;
using supervisor::State;

// --- spawn -------------------------------------------------------------------------------------

// Everything a spawned child writes on stdout, until its end of file (or the deadline).
std::string read_to_eof(int fd, Deadline deadline) {
  std::string out;
  char buf[4096];
  while (!deadline.expired()) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n > 0) out.append(buf, static_cast<std::size_t>(n));
    else if (errno != EAGAIN && errno != EINTR) break;
  }
  return out;
}

// Spawns `argv` and returns its stdout; the child is reaped.
std::string spawn_output(proc::SpawnOptions spawn) {
  proc::ChildFds fds;
  auto spawned = proc::Child::spawn(spawn, fds);
  if (auto* e = std::get_if<proc::SpawnError>(&spawned)) FAIL("spawn failed: " << e->what);
  auto& child = std::get<proc::Child>(spawned);
  std::string out = read_to_eof(fds.stdout_r.get(), Deadline::after(10s));
  CHECK(child.reap().code == 0);
  return out;
}

// The "Name:\tvalue" lines of a /proc/PID/status.
std::map<std::string, std::string> status_fields(const std::string& text) {
  std::map<std::string, std::string> f;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    auto v = line.find_first_not_of(" \t", colon + 1);
    f[line.substr(0, colon)] = v == std::string::npos ? "" : line.substr(v);
  }
  return f;
}

// Sets a signal's disposition for the scope of a test, and restores it whatever happens.
class ScopedDisposition {
 public:
  ScopedDisposition(int sig, void (*handler)(int)) : sig_(sig) {
    struct sigaction sa {};
    sa.sa_handler = handler;
    ::sigaction(sig, &sa, &old_);
  }
  ~ScopedDisposition() { ::sigaction(sig_, &old_, nullptr); }

 private:
  int sig_;
  struct sigaction old_ {};
};

TEST_CASE("a spawned bridge starts clean: no signal ignored, blocked or pending; its own group; only fds 0-2") {
  test::LeakGuard guard;
  {
    // What tether's own state could pass on: an ignored signal, a caught one, a blocked one, and
    // a descriptor without close-on-exec.
    ScopedDisposition hup(SIGHUP, SIG_IGN);
    ScopedDisposition usr2(SIGUSR2, [](int) {});
    sigset_t usr1, before, blocked, after;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    ::pthread_sigmask(SIG_BLOCK, &usr1, &before);
    ::pthread_sigmask(SIG_SETMASK, nullptr, &blocked);
    struct MaskBack {
      sigset_t* mask;
      ~MaskBack() { ::pthread_sigmask(SIG_SETMASK, mask, nullptr); }
    } mask_back{&before};
    base::UniqueFd leaked(::fcntl(STDERR_FILENO, F_DUPFD, 60));  // no FD_CLOEXEC
    REQUIRE(leaked.get() >= 60);

    for (bool new_session : {false, true}) {
      CAPTURE(new_session);
      proc::SpawnOptions spawn;
      spawn.argv = {"cat", "/proc/self/status"};  // looked up in PATH
      spawn.new_session = new_session;
      auto f = status_fields(spawn_output(spawn));
      REQUIRE(f.count("Pid"));
      CHECK(f["SigIgn"] == "0000000000000000");
      CHECK(f["SigBlk"] == "0000000000000000");
      CHECK(f["SigPnd"] == "0000000000000000");
      CHECK(f["ShdPnd"] == "0000000000000000");
      CHECK(f["PPid"] == std::to_string(::getpid()));
      CHECK(f["NSpgid"] == f["Pid"]);  // a group of its own
      if (new_session) CHECK(f["NSsid"] == f["Pid"]);
      else CHECK(f["NSsid"] == std::to_string(::getsid(0)));

      spawn.argv = {"/bin/ls", "/proc/self/fd"};
      spawn.cwd = "/";
      CHECK(spawn_output(spawn) == "0\n1\n2\n3\n");  // 3: the directory ls reads
      spawn.argv = {"/bin/pwd"};
      spawn.cwd = "/proc";
      spawn.extra_env = {"PWD=/proc"};
      CHECK(spawn_output(spawn) == "/proc\n");
    }

    // The spawning thread's own mask is as it was.
    ::pthread_sigmask(SIG_SETMASK, nullptr, &after);
    for (int sig = 1; sig < NSIG; ++sig) CHECK(sigismember(&after, sig) == sigismember(&blocked, sig));
    CHECK(sigismember(&after, SIGUSR1) == 1);
  }
  CHECK(test::zombie_children().empty());
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("spawns in several threads while another reaps strays: every leader's exit status stays its own") {
  test::LeakGuard guard;
  {
    std::atomic<bool> done{false};
    std::thread reaper([&] {
      while (!done) proc::reap_strays();
    });
    std::atomic<int> right{0}, wrong{0};
    std::vector<std::thread> spawners;
    for (int t = 0; t < 4; ++t) {
      spawners.emplace_back([&] {
        for (int i = 0; i < 25; ++i) {
          proc::ChildFds fds;
          proc::SpawnOptions spawn;
          spawn.argv = {"/bin/sh", "-c", "exit 3"};  // gone (a zombie) as soon as it can be
          spawn.stdin_null = true;
          auto r = proc::Child::spawn(spawn, fds);
          auto* child = std::get_if<proc::Child>(&r);
          if (!child) {
            ++wrong;
            continue;
          }
          // A status stolen by reap_strays() would read as 0 here (waitpid fails: ECHILD).
          if (child->reap().code == 3) ++right;
          else ++wrong;
        }
      });
    }
    for (auto& t : spawners) t.join();
    done = true;
    reaper.join();
    CHECK(right == 100);
    CHECK(wrong == 0);
  }
  CHECK(test::zombie_children().empty());
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a spawn that fails says which step failed and why, and leaves no process and no descriptor") {
  test::LeakGuard guard;
  {
    proc::ChildFds fds;
    auto failure = [&](const proc::SpawnOptions& spawn) {
      auto r = proc::Child::spawn(spawn, fds);
      REQUIRE(std::holds_alternative<proc::SpawnError>(r));
      return std::get<proc::SpawnError>(r);
    };
    proc::SpawnOptions spawn;
    spawn.argv = {"/proc/self/status"};  // a file, not executable
    auto e = failure(spawn);  // the exec step (the others, a group and stdio, cannot be made to fail)
    CHECK(e.err == EACCES);
    CHECK(e.what == "exec /proc/self/status: Permission denied");

    spawn.argv = {"/bin/true"};
    spawn.cwd = "/nonexistent-dir";
    e = failure(spawn);
    CHECK(e.err == ENOENT);
    CHECK(e.what == "cannot change directory to /nonexistent-dir: No such file or directory");

    spawn.cwd.clear();
    spawn.argv = {"no-such-command-for-tether"};
    CHECK(failure(spawn).what == "no-such-command-for-tether: command not found");
    CHECK_FALSE(fds.stdin_w);
    CHECK_FALSE(fds.stdout_r);
  }
  CHECK(test::zombie_children().empty());
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge dies with the thread that spawned it (PR_SET_PDEATHSIG)") {
  test::LeakGuard guard;
  std::optional<proc::Child> child;
  std::thread spawner([&] {
    proc::ChildFds fds;
    proc::SpawnOptions spawn;
    spawn.argv = {"/bin/sleep", "60"};
    spawn.stdin_null = true;
    auto r = proc::Child::spawn(spawn, fds);
    if (auto* c = std::get_if<proc::Child>(&r)) child.emplace(std::move(*c));
  });
  spawner.join();
  REQUIRE(child.has_value());
  std::optional<proc::ExitStatus> status;
  REQUIRE(test::eventually([&] { return (status = child->try_reap()).has_value(); }, Ms(10000)));
  CHECK(status->signaled);
  CHECK(status->signal == SIGKILL);
  child.reset();
  CHECK(test::zombie_children().empty());
  CHECK_NO_LEAKS(guard);
}

// The bridge answers one request with its grandchild's pid and exits; the grandchild holds the
// bridge's stdout (and stderr, and stdin) open and sleeps.
void grandchild_case(bool grandchild_ignores_term) {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("grandchild_holds_stdout");
    if (grandchild_ignores_term) opt.argv.push_back("--ignore-term");
    opt.auto_restart = false;
    opt.term_wait = 300ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    const pid_t bridge_pid = bridge.status().pid;

    Reply first = bridge.call("spawn", json::object(), Deadline::after(5s));
    // The bridge exits right after this answer: from here on, the clock runs.
    auto t0 = std::chrono::steady_clock::now();
    REQUIRE(first.ok());
    const pid_t grandchild = first.value.value("grandchild", -1);
    REQUIRE(grandchild > 0);

    // A request sent now reaches a pipe the grandchild still holds: only the exit of the bridge
    // itself (pidfd), not stdout EOF or EPIPE, can end it.
    // Its death is noticed long before the call's deadline (asserted as that ordering, not as a
    // speed that a busy machine could miss): the pipe alone would hold the call to its deadline.
    constexpr auto kPatience = 10s;
    Reply second = bridge.call("after", json::object(), Deadline::after(kPatience));
    const double failed_ms = ms_since(t0);
    CHECK(second.status == Reply::Status::closed);
    CHECK(second.value.value("code", "") == "bridge_exited");
    CHECK(second.value.value("exitStatus", -1) == 0);
    CHECK(contains(second.value.value("stderrTail", ""), "grandchild " + std::to_string(grandchild)));
    CHECK(failed_ms < std::chrono::duration<double, std::milli>(kPatience).count() / 2);

    // The exited event waits for the group clean-up: SIGTERM, then SIGKILL after term_wait (so it
    // comes no sooner than that); wait_state's deadline bounds it from above.
    auto exited = wait_state(*bridge.events(), "exited", 1, Ms(5000));
    const double exited_ms = ms_since(t0);
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("exitStatus", -1) == 0);
    if (grandchild_ignores_term) CHECK(exited_ms >= 290.0);
    MESSAGE("caller failed after " << failed_ms << " ms; exited event after " << exited_ms << " ms");

    // The grandchild was killed and reaped (we are its subreaper): gone, and no zombie.
    CHECK(eventually_gone(grandchild));
    CHECK(eventually_gone(bridge_pid));
    CHECK(test::zombie_children().empty());
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a grandchild keeps stdout open after the bridge exits: death noticed at once, grandchild killed and reaped") {
  grandchild_case(false);
}

TEST_CASE("a grandchild that ignores SIGTERM keeps stdout open: it is SIGKILLed after term_wait and reaped") {
  grandchild_case(true);
}

// A helper that left the bridge's process group (setsid) and exited is our zombie while the bridge
// runs on: waitpid(-pgid) never sees it. The supervisor reaps such strays on its tick.
TEST_CASE("a stray that left the bridge's process group is reaped while the bridge runs on") {
  test::LeakGuard guard;
  {
    Bridge bridge(fake_bridge("stray_leaves_group"));
    REQUIRE_FALSE(bridge.start().has_value());
    Reply r = bridge.call("go", json::object(), Deadline::after(5s));
    REQUIRE(r.ok());
    const pid_t stray = r.value.value("stray", -1);
    REQUIRE(stray > 0);
    auto reaped = [&] { return ::kill(stray, 0) != 0 && errno == ESRCH; };
    // Exited at once; gone (reaped, not a zombie) within the supervisor's 5 s tick.
    CHECK(test::eventually(reaped, Ms(8000)));
    CHECK(bridge.status().state == State::ready);
    CHECK(bridge.status().generation == 1);
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge that ignores SIGTERM and stdin EOF: stop() takes grace + term_wait, then SIGKILL") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("ignore_sigterm");
    opt.grace = 300ms;
    opt.term_wait = 300ms;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    REQUIRE(bridge.call("hello", {{"a", 1}}, Deadline::after(5s)).ok());  // it runs and answers
    const pid_t pid = bridge.status().pid;

    auto t0 = std::chrono::steady_clock::now();
    bridge.stop();
    const double ms = ms_since(t0);
    MESSAGE("stop() took " << ms << " ms (grace 300 + term_wait 300)");
    CHECK(ms >= 590.0);  // it really waited through both steps of the ladder
    // ... the ones configured, not the default ladder (an ordering, which a busy machine keeps).
    const supervisor::BridgeOptions defaults;
    CHECK(ms < std::chrono::duration<double, std::milli>(defaults.grace + defaults.term_wait).count());
    CHECK_FALSE(test::process_exists(pid));  // gone and reaped when stop() returns

    auto stopping = wait_state(*bridge.events(), "stopping", 1, Ms(1000));
    CHECK(stopping.has_value());
    auto exited = wait_state(*bridge.events(), "exited", 1, Ms(1000));
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("signal", "") == "SIGKILL");
    CHECK(bridge.status().state == State::exited);
    bridge.stop();  // idempotent
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge that ignores SIGTERM, default ladder: stop() takes 2 s + 2 s, once") {
  test::LeakGuard guard;
  {
    supervisor::BridgeOptions opt;  // grace 2 s, term_wait 2 s
    opt.argv = {test::fake("ignore_sigterm")};
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    REQUIRE(bridge.call("hello", json::object(), Deadline::after(5s)).ok());
    const pid_t pid = bridge.status().pid;
    auto t0 = std::chrono::steady_clock::now();
    bridge.stop();
    const double ms = ms_since(t0);
    MESSAGE("stop() took " << ms << " ms (grace 2000 + term_wait 2000)");
    CHECK(ms >= 3990.0);
    CHECK(ms < 2 * 3990.0);  // through the ladder once, not twice
    CHECK_FALSE(test::process_exists(pid));
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge writing its response just before exiting: the response is delivered, 30 times in a row") {
  test::LeakGuard guard;
  for (int i = 0; i < 30; ++i) {
    CAPTURE(i);
    auto opt = fake_bridge("respond_then_exit");
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    json params = {{"round", i}, {"text", std::string(static_cast<std::size_t>(i) * 997, 'r')}};
    Reply r = bridge.call("last-words", params, Deadline::after(5s));
    REQUIRE(r.status == Reply::Status::result);
    CHECK(r.value == params);
    auto exited = wait_state(*bridge.events(), "exited", 1, Ms(5000));
    REQUIRE(exited.has_value());
    CHECK((*exited)["error"].value("exitStatus", -1) == 0);
  }
  CHECK_NO_LEAKS(guard);
}

// The same, while the event queue is full: the dispatcher is not reading stdout when the bridge
// writes its last lines and exits, so only the drain after the exit can deliver them. Everything
// the bridge wrote before it exited is "already readable" and must be delivered, in order.
// Busy threads that compete for the CPUs while they live, like the other jobs of a loaded CI
// machine. Owned here and joined by the destructor.
class CpuHogs {
 public:
  explicit CpuHogs(unsigned n) {
    for (unsigned i = 0; i < n; ++i)
      threads_.emplace_back([this] {
        volatile std::uint64_t x = 0;
        while (!stop_.load(std::memory_order_relaxed)) x = x + 1;
      });
  }
  ~CpuHogs() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

void exit_while_queue_full(std::vector<std::string> args, long ticks, unsigned hogs = 0) {
  test::LeakGuard guard;
  {
    args.insert(args.begin(), "--exit");
    auto opt = fake_bridge("notification_flood", args);
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    std::int64_t id = 0;
    {
      std::optional<CpuHogs> load;
      if (hogs > 0) load.emplace(hogs);
      id = bridge.call_queued("flood", {{"n", ticks}}, nullptr);
      // Consume nothing until the process is gone.
      REQUIRE(test::eventually([&] { return bridge.status().state != State::ready; }, Ms(20000)));
    }
    long seen = 0;
    bool got = false;
    auto deadline = Deadline::after(10s);
    while (!got) {
      auto ev = q.pop(deadline);
      REQUIRE(ev.has_value());
      if (ev->kind == rpc::Event::Kind::notification) {
        if (ev->message["params"].value("seq", -1L) != seen) break;
        ++seen;
      } else if (ev->kind == rpc::Event::Kind::response) {
        got = true;
        CHECK(ev->call_id == id);
        CHECK_MESSAGE(ev->reply.ok(), rpc::dump(ev->reply.value));
      }
    }
    CHECK(seen == ticks);
    MESSAGE(seen << " of " << ticks << " ticks delivered after the exit, response " << std::string(got ? "seen" : "missing"));
  }
  CHECK_NO_LEAKS(guard);
}

TEST_CASE("a bridge answering and exiting while the event queue is full: every line and the response delivered") {
  // 1,500 ticks: the queue takes ~1,000, the rest (< 64 KiB) waits in the pipe and the reader.
  exit_while_queue_full({}, 1500);
}

TEST_CASE("the same with a full, enlarged stdout pipe on a busy machine: the drain is not cut short by its timer") {
  // A bridge may enlarge its stdout pipe (up to /proc/sys/fs/pipe-max-size, 1 MiB by default); what
  // it wrote before exiting is already readable when the exit is seen, and is still its output
  // however long decoding it takes. Decoding 1 MiB takes ~40 ms on an idle machine; with the CPUs
  // contended, as on a busy CI machine, it takes longer than the 100 ms drain window.
  long pipe = 0;
  std::ifstream("/proc/sys/fs/pipe-max-size") >> pipe;
  REQUIRE(pipe >= 65536);
  MESSAGE("stdout pipe of " << (pipe >> 10) << " KiB");
  exit_while_queue_full({"--pipe", std::to_string(pipe)}, pipe * 3 / 4 / 64,
                        8 * std::max(1u, std::thread::hardware_concurrency()));
}

// A grandchild that floods the inherited stdout goes on after the bridge exits. Reading after the
// exit exists to keep what the bridge wrote just before it ("what is already readable", at most a
// pipe's worth); it must not push everything a grandchild writes during the whole 100 ms drain
// past the queue's capacity.
TEST_CASE("a grandchild flooding stdout after the bridge exited: the queue stays near its capacity") {
  test::LeakGuard guard;
  {
    auto opt = fake_bridge("grandchild_floods_stdout");
    opt.auto_restart = false;
    Bridge bridge(opt);
    REQUIRE_FALSE(bridge.start().has_value());
    auto& q = *bridge.events();
    auto id = bridge.call_queued("go", json::object(), nullptr);
    // Consume until the bridge's answer: the grandchild's ticks come first, through backpressure.
    pid_t grandchild = -1;
    long ticks = 0;
    auto deadline = Deadline::after(10s);
    while (auto ev = q.pop(deadline)) {
      if (ev->kind == rpc::Event::Kind::notification) ++ticks;
      if (ev->kind == rpc::Event::Kind::response) {
        CHECK(ev->call_id == id);
        REQUIRE(ev->reply.ok());
        grandchild = ev->reply.value.value("grandchild", -1);
        break;
      }
    }
    REQUIRE(grandchild > 0);
    // Stop consuming; the bridge has exited (or is about to), the grandchild keeps writing.
    REQUIRE(test::eventually([&] { return bridge.status().state == State::exited; }, Ms(5000)));
    const std::size_t after_exit = q.size();
    MESSAGE(ticks << " ticks before the answer; queue high water " << q.high_water() << " of " << q.capacity()
                  << "; " << after_exit << " events waiting after the exit");
    // Past the capacity, at most what the reader already held (one 64 KiB read) and what the pipe
    // held at the exit (64 KiB): about 1,100 of these 58-byte ticks each.
    CHECK(q.high_water() <= q.capacity() + 2400);
    CHECK(eventually_gone(grandchild));
  }
  CHECK_NO_LEAKS(guard);
}

}  // namespace
}  // namespace tether::itest
