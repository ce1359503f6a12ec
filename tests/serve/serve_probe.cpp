// A tiny client of a `tether serve` socket, for the tests to run as another user (setpriv):
// connects to argv[1], sends an initialize request and says on stdout what the server did.
// Exit status: 0 the server closed the connection without an answer; 1 it answered;
// 2 the connect failed (errno name on stdout, e.g. "connect: EACCES"); 3 nothing within 5 s.
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: serve_probe SOCKET\n");
    return 64;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[1]);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int e = errno;
    std::printf("connect: %s (%s)\n", e == EACCES ? "EACCES" : e == ENOENT ? "ENOENT" : "other", std::strerror(e));
    return 2;
  }
  std::string req = R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":1,"clientCapabilities":{}}})"
                    "\n";
  // The server may have closed the connection already: a failed write is not the answer.
  [[maybe_unused]] ssize_t w = ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  std::string got;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      std::printf("timeout\n");
      return 3;
    }
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (!got.empty()) {
        std::printf("answered: %s\n", got.c_str());
        return 1;
      }
      std::printf("closed\n");
      return 0;
    }
    got.append(buf, static_cast<std::size_t>(n));
    if (got.find('\n') != std::string::npos) {
      std::printf("answered: %s", got.c_str());
      return 1;
    }
  }
}
