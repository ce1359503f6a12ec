// Helpers for the integration tests: options for a fake bridge, waiting for a status event with a
// deadline, reading our own memory use, a scratch directory, and the end-of-test leak check.
// Linking integration.cpp also sets the process up the way tether does at start-up: it becomes a
// child subreaper (so a bridge's grandchildren are ours to reap) and ignores SIGPIPE (EPIPE on a
// bridge's stdin means the bridge is dead; it must not kill us).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "supervisor/bridge.h"
#include "support/support.h"

namespace tether::itest {

using rpc::json;
using Ms = std::chrono::milliseconds;

// Bridge options that run the fake `name` with `args`, restarting after 10 ms and stopping fast.
supervisor::BridgeOptions fake_bridge(const std::string& name, std::vector<std::string> args = {});

// Pops events until a status event satisfies `match`, or `limit` passes. Other events are dropped;
// when `skipped` is given they are appended to it instead.
std::optional<json> wait_status(rpc::EventQueue& q, const std::function<bool(const json&)>& match,
                                Ms limit = Ms(5000), std::vector<rpc::Event>* skipped = nullptr);
// The status event for entering `state` in `generation` (0: any generation).
std::optional<json> wait_state(rpc::EventQueue& q, const std::string& state,
                               std::uint64_t generation = 0, Ms limit = Ms(5000));

// What a front-end waits for after restart() (talk's /restart polls status()): a generation newer
// than `before` that is ready (true); false when a newer one failed instead, or at expiry.
bool ready_after(const supervisor::Bridge& bridge, std::uint64_t before, Ms limit = Ms(5000));
// restart(), then ready_after() the generation that ran at the restart().
bool restart_and_wait(supervisor::Bridge& bridge, Ms limit = Ms(5000));

// True when `needle` occurs in `hay`.
inline bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

// Resident set size of this process, in KiB (VmRSS in /proc/self/status).
long rss_kib();
// Voluntary context switches of this process's thread named `name`; -1 when there is none.
long thread_voluntary_switches(const std::string& name);

// CPU time (user + system) this process has used, in ms: a dispatcher that spins shows here while
// the test thread only waits.
double process_cpu_ms();
// Waits `window` for `conn` to end, and measures this process's CPU time meanwhile: a dispatcher
// that sleeps uses a small part of the wall time, one that spins uses all of it.
struct WatchedWait {
  bool exited = false;
  double cpu_ms = 0, wall_ms = 0;
};
WatchedWait watch_cpu(rpc::Connection& conn, Ms window);

// Milliseconds since `t0`.
double ms_since(std::chrono::steady_clock::time_point t0);

// Waits until `pid` is gone (reaped, or never ours and dead); false at expiry.
bool eventually_gone(pid_t pid, Ms limit = Ms(3000));

// A fresh directory under $TMPDIR, removed with its files when destroyed.
class ScratchDir {
 public:
  ScratchDir();
  ~ScratchDir();
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Lines in a file (0 when it does not exist).
std::size_t count_lines(const std::string& path);

}  // namespace tether::itest

// Checks, after everything the test started is destroyed, that no fd opened since `guard` was
// built is still open, no child of ours is left a zombie, and no child of ours (a bridge, or a
// grandchild re-parented to us) is still running.
#define CHECK_NO_LEAKS(guard)                                                             \
  do {                                                                                    \
    std::string leak_report_;                                                             \
    bool leak_clean_ = (guard).check_clean(leak_report_);                                 \
    CHECK_MESSAGE(leak_clean_, leak_report_);                                             \
    CHECK_MESSAGE(::tether::test::eventually([] { return ::tether::test::children().empty(); }), \
                  "children still running: " << ::tether::test::children().size());     \
  } while (0)
