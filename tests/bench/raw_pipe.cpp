// The floor for tether's round trip: spawns a bridge over plain pipes and, N times, writes one
// ~150-byte JSON-RPC request line to its stdin and reads its one response line back. No threads,
// no poll, no JSON: the cost of two pipe hops and two context switches per round trip.
//
// Usage: raw_pipe [-n N] [-w WARMUP] BRIDGE [ARGS...]
// Prints one line: "round_trips=N total_s=S mean_us=M".
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern char** environ;

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "raw_pipe: %s: %s\n", what, std::strerror(errno));
  std::exit(1);
}

// A request of about 150 bytes, the same shape scripts/bench feeds `tether call`.
std::string request(long id) {
  std::string s = "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(id) +
                  ",\"method\":\"bench/echo\",\"params\":{\"text\":\"the quick brown fox jumps over "
                  "the lazy dog\",\"n\":" +
                  std::to_string(id) + ",\"flags\":[true,false,null],\"pad\":\"";
  while (s.size() < 146) s.push_back('x');
  s += "\"}}\n";
  return s;
}

class Reader {
 public:
  explicit Reader(int fd) : fd_(fd) {}
  // The next line, without its newline; false at EOF.
  bool line(std::string& out) {
    for (;;) {
      auto nl = buf_.find('\n', start_);
      if (nl != std::string::npos) {
        out.assign(buf_, start_, nl - start_);
        start_ = nl + 1;
        if (start_ == buf_.size()) {
          buf_.clear();
          start_ = 0;
        }
        return true;
      }
      char chunk[65536];
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) die("read");
      if (n == 0) return false;
      buf_.append(chunk, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_;
  std::string buf_;
  std::size_t start_ = 0;
};

void write_all(int fd, const std::string& s) {
  const char* p = s.data();
  std::size_t n = s.size();
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) die("write");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

}  // namespace

int main(int argc, char** argv) {
  long n = 20000;
  long warmup = 1000;
  int i = 1;
  for (; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc) n = std::atol(argv[++i]);
    else if (a == "-w" && i + 1 < argc) warmup = std::atol(argv[++i]);
    else break;
  }
  if (i >= argc || n <= 0) {
    std::fprintf(stderr, "usage: raw_pipe [-n N] [-w WARMUP] BRIDGE [ARGS...]\n");
    return 64;
  }
  ::signal(SIGPIPE, SIG_IGN);

  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) < 0 || ::pipe2(out, O_CLOEXEC) < 0) die("pipe2");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  pid_t pid;
  int rc = ::posix_spawnp(&pid, argv[i], &fa, nullptr, argv + i, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    errno = rc;
    die(argv[i]);
  }
  ::close(in[0]);
  ::close(out[1]);

  Reader reader(out[0]);
  std::string line;
  auto round_trip = [&](long id) {
    write_all(in[1], request(id));
    if (!reader.line(line)) {
      std::fprintf(stderr, "raw_pipe: the bridge closed its stdout\n");
      std::exit(1);
    }
    // Cheap sanity check that the answer is ours: {"jsonrpc":"2.0","id":<id>,...
    std::string want = "\"id\":" + std::to_string(id) + ",";
    if (line.find(want) == std::string::npos) {
      std::fprintf(stderr, "raw_pipe: unexpected response: %s\n", line.c_str());
      std::exit(1);
    }
  };

  for (long k = 0; k < warmup; ++k) round_trip(-1 - k);
  auto t0 = std::chrono::steady_clock::now();
  for (long k = 1; k <= n; ++k) round_trip(k);
  auto t1 = std::chrono::steady_clock::now();

  ::close(in[1]);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  ::close(out[0]);

  double total = std::chrono::duration<double>(t1 - t0).count();
  std::printf("round_trips=%ld total_s=%.6f mean_us=%.3f\n", n, total, total * 1e6 / static_cast<double>(n));
  return 0;
}
