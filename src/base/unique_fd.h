// An owned file descriptor: closed exactly once, by its destructor or reset().
#pragma once

#include <string_view>

#include <utility>

namespace tether::base {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Sets O_NONBLOCK on fd; false on failure (errno set).
bool set_nonblocking(int fd);

// Writes all of `data` to a blocking or non-blocking fd: EINTR is retried, EAGAIN waits for the fd
// to be writable (never a busy loop). False on any other error (errno set): the rest is not written.
// Not for a bridge's pipes: the dispatcher never blocks on a write (rpc/connection.cpp).
bool write_all(int fd, std::string_view data);

}  // namespace tether::base
