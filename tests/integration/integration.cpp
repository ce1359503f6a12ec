#include "integration.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "proc/child.h"

namespace tether::itest {
namespace {

// Process set-up shared by every integration test, done once before main() like tether does at
// start-up: reap orphaned grandchildren, survive EPIPE.
const bool kProcessSetUp = [] {
  proc::become_subreaper();
  ::signal(SIGPIPE, SIG_IGN);
  return true;
}();

long status_field(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0 && line.size() > key.size() && line[key.size()] == ':')
      return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
  return -1;
}

}  // namespace

bool ready_after(const supervisor::Bridge& bridge, std::uint64_t before, Ms limit) {
  bool ready = false;
  test::eventually(
      [&] {
        auto st = bridge.status();
        if (st.generation <= before) return false;
        ready = st.state == supervisor::State::ready;
        return ready || st.state == supervisor::State::failed;
      },
      limit);
  return ready;
}

bool restart_and_wait(supervisor::Bridge& bridge, Ms limit) {
  const auto before = bridge.status().generation;
  bridge.restart();
  return ready_after(bridge, before, limit);
}

supervisor::BridgeOptions fake_bridge(const std::string& name, std::vector<std::string> args) {
  (void)kProcessSetUp;
  supervisor::BridgeOptions o;
  o.argv.push_back(test::fake(name));
  for (auto& a : args) o.argv.push_back(std::move(a));
  o.restart.base_delay = Ms(10);
  o.grace = Ms(500);
  o.term_wait = Ms(500);
  return o;
}

std::optional<json> wait_status(rpc::EventQueue& q, const std::function<bool(const json&)>& match,
                                Ms limit, std::vector<rpc::Event>* skipped) {
  auto deadline = base::Deadline::after(limit);
  for (;;) {
    auto ev = q.pop(deadline);
    if (!ev) return std::nullopt;
    if (ev->kind == rpc::Event::Kind::status && match(ev->message)) return ev->message;
    if (skipped) skipped->push_back(std::move(*ev));
  }
}

std::optional<json> wait_state(rpc::EventQueue& q, const std::string& state, std::uint64_t generation,
                               Ms limit) {
  return wait_status(
      q,
      [&](const json& m) {
        return m.value("state", "") == state && (generation == 0 || m.value("generation", 0ull) == generation);
      },
      limit);
}

long rss_kib() { return status_field("/proc/self/status", "VmRSS"); }

long thread_voluntary_switches(const std::string& name) {
  DIR* d = ::opendir("/proc/self/task");
  if (!d) return -1;
  long found = -1;
  while (auto* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string dir = std::string("/proc/self/task/") + e->d_name;
    std::ifstream comm(dir + "/comm");
    std::string c;
    std::getline(comm, c);
    if (c == name) {
      found = status_field(dir + "/status", "voluntary_ctxt_switches");
      break;
    }
  }
  ::closedir(d);
  return found;
}

double process_cpu_ms() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto ms = [](const timeval& t) { return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_usec) / 1e3; };
  return ms(ru.ru_utime) + ms(ru.ru_stime);
}

WatchedWait watch_cpu(rpc::Connection& conn, Ms window) {
  WatchedWait w;
  const double cpu0 = process_cpu_ms();
  const auto t0 = std::chrono::steady_clock::now();
  w.exited = conn.wait_exited(base::Deadline::after(window));
  w.wall_ms = ms_since(t0);
  w.cpu_ms = process_cpu_ms() - cpu0;
  return w;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

bool eventually_gone(pid_t pid, Ms limit) {
  return test::eventually([pid] { return !test::process_exists(pid); }, limit);
}

ScratchDir::ScratchDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/tether-itest-XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data())) path_ = buf.data();
}

ScratchDir::~ScratchDir() {
  if (path_.empty()) return;
  if (DIR* d = ::opendir(path_.c_str())) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ::unlink((path_ + "/" + e->d_name).c_str());
    ::closedir(d);
  }
  ::rmdir(path_.c_str());
}

std::size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  std::size_t n = 0;
  std::string line;
  while (std::getline(in, line)) ++n;
  return n;
}

}  // namespace tether::itest
