#include "acp/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <deque>
#include <fstream>
#include <optional>
#include <vector>

#include "rpc/message.h"

namespace tether::acp {
namespace {

using nlohmann::json;

constexpr int kResourceNotFound = -32002;  // ACP's resource-not-found error
constexpr int kMaxSymlinks = 40;           // as the kernel's own limit on a path's symlinks
constexpr int kOpenat2Retries = 8;         // EAGAIN: a rename raced with a `..`; the kernel says retry

// Set once openat2 answers ENOSYS (a kernel before 5.6, or a seccomp filter that hides it): from
// then on, every resolution is the walk.
std::atomic<bool> g_no_openat2{false};

// The components of `path` ("" and "." dropped), put in front of `todo`, in order.
void push_front_components(std::deque<std::string>& todo, std::string_view path) {
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (pos <= path.size()) {
    auto slash = path.find('/', pos);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view part = path.substr(pos, slash - pos);
    if (!part.empty() && part != ".") parts.emplace_back(part);
    pos = slash + 1;
  }
  todo.insert(todo.begin(), parts.begin(), parts.end());
}

// The text of the symlink `name` in `dirfd` (name "": dirfd is the link, opened O_PATH|O_NOFOLLOW).
std::optional<std::string> read_link(int dirfd, const char* name) {
  char buf[PATH_MAX];
  ssize_t n = ::readlinkat(dirfd, name, buf, sizeof buf);
  if (n < 0) return std::nullopt;
  if (static_cast<std::size_t>(n) == sizeof buf) {
    errno = ENAMETOOLONG;
    return std::nullopt;
  }
  return std::string(buf, static_cast<std::size_t>(n));
}

const char* kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode) || S_ISBLK(mode)) return "a device";
  if (S_ISLNK(mode)) return "a symbolic link";
  return "not a file";
}

FsError not_regular(const std::string& path, mode_t mode) {
  return {rpc::kInvalidParams, path + " is not a regular file (" + kind_of(mode) + ")"};
}

// The process umask, without changing it (umask(2) would race with other threads).
mode_t current_umask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
  return 022;
}

// A temporary file in a directory fd, removed when this goes out of scope unless it was renamed.
struct TempFile {
  int dirfd = -1;
  std::string name;
  base::UniqueFd fd;
  ~TempFile() {
    fd.reset();
    if (!name.empty()) ::unlinkat(dirfd, name.c_str(), 0);
  }
};

// Creates ".NAME.tether-XXXXXXXX" beside NAME, O_EXCL and 0600 (its final mode is set once it is
// written). -errno on failure.
int create_temp(TempFile& tmp, const std::string& target_name) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    unsigned char rnd[4];
    if (::getrandom(rnd, sizeof rnd, GRND_NONBLOCK) != sizeof rnd) {
      timespec ts{};
      ::clock_gettime(CLOCK_MONOTONIC, &ts);
      unsigned v = static_cast<unsigned>(ts.tv_nsec) ^ static_cast<unsigned>(::getpid()) ^
                   static_cast<unsigned>(attempt);
      std::memcpy(rnd, &v, sizeof rnd);
    }
    char suffix[16];
    std::snprintf(suffix, sizeof suffix, "%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    // NAME is cut so that the temporary's name stays under NAME_MAX (255).
    std::string name = "." + target_name.substr(0, 200) + ".tether-" + suffix;
    int fd = ::openat(tmp.dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) {
      tmp.name = std::move(name);
      tmp.fd.reset(fd);
      return 0;
    }
    if (errno != EEXIST) return -errno;
  }
  return -EEXIST;
}

}  // namespace

FsRoot::FsRoot(const std::string& cwd, Resolver resolver) : resolver_(resolver) {
  dir_.reset(::open(cwd.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir_) return;
  char buf[PATH_MAX];
  // The real path of the directory we opened (not of `cwd` again: it may have changed since).
  std::string self = "/proc/self/fd/" + std::to_string(dir_.get());
  ssize_t n = ::readlink(self.c_str(), buf, sizeof buf);
  if (n > 0 && static_cast<std::size_t>(n) < sizeof buf && buf[0] == '/')
    root_.assign(buf, static_cast<std::size_t>(n));
  else if (::realpath(cwd.c_str(), buf)) root_ = buf;
  if (!cwd.empty() && cwd[0] == '/') {
    given_ = cwd;
    while (given_.size() > 1 && given_.back() == '/') given_.pop_back();
  }
}

std::optional<std::string> FsRoot::relative(std::string_view path) const {
  for (const std::string* prefix : {&root_, &given_}) {
    if (prefix->empty()) continue;
    if (*prefix == "/") return path.size() > 1 ? std::string(path.substr(1)) : std::string(".");
    if (path == *prefix) return std::string(".");
    if (path.size() > prefix->size() && path.compare(0, prefix->size(), *prefix) == 0 && path[prefix->size()] == '/')
      return std::string(path.substr(prefix->size() + 1));
  }
  return std::nullopt;
}

int FsRoot::open_beneath(const std::string& rel, int flags, bool dir) const {
  if (!dir_) return -ENOENT;
  if (dir) flags = O_PATH | O_DIRECTORY;
  if (resolver_ == Resolver::kAuto && !g_no_openat2.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(flags | O_CLOEXEC);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    for (int attempt = 0; attempt < kOpenat2Retries; ++attempt) {
      long fd = ::syscall(SYS_openat2, dir_.get(), rel.c_str(), &how, sizeof how);
      if (fd >= 0) return static_cast<int>(fd);
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ENOSYS) g_no_openat2.store(true, std::memory_order_relaxed);
      // EXDEV is also what an absolute symlink gets, even one that points inside: the walk, which
      // understands those, decides. EPERM: some seccomp filters answer unknown system calls so
      // (these flags give no EPERM of their own); the walk is just as confined. Anything else is
      // the answer.
      if (errno != ENOSYS && errno != EXDEV && errno != EPERM) return -errno;
      break;
    }
  }
  return walk(rel, flags, dir);
}

// The fallback: one component at a time, each opened O_NOFOLLOW relative to the directory fd before
// it, so nothing that changes meanwhile can move an earlier step. `..` pops our own stack of
// directory fds (never the kernel's `..`), so it cannot climb above the root either. A symlink is
// read and its text put in front of the components still to walk: from the root for an absolute one
// that starts with the root, from where it is for a relative one.
int FsRoot::walk(const std::string& rel, int flags, bool dir) const {
  std::vector<base::UniqueFd> stack;  // the directories below the root, down to the current one
  auto here = [&] { return stack.empty() ? dir_.get() : stack.back().get(); };
  std::deque<std::string> todo;
  push_front_components(todo, rel);
  int links = 0;
  while (!todo.empty()) {
    std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == "..") {
      if (stack.empty()) return -EXDEV;
      stack.pop_back();
      continue;
    }
    std::optional<std::string> target;
    if (!dir && todo.empty()) {
      int fd = ::openat(here(), name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) return fd;
      if (errno != ELOOP) return -errno;  // O_NOFOLLOW: ELOOP means the last component is a symlink
      target = read_link(here(), name.c_str());
      if (!target && errno == EINVAL && ++links <= kMaxSymlinks) {  // no longer a symlink: again
        todo.push_front(std::move(name));
        continue;
      }
      if (!target) return -ELOOP;
    } else {
      base::UniqueFd fd(::openat(here(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
      if (!fd) return -errno;
      struct stat st;
      if (::fstat(fd.get(), &st) != 0) return -errno;
      if (S_ISDIR(st.st_mode)) {
        stack.push_back(std::move(fd));
        continue;
      }
      if (!S_ISLNK(st.st_mode)) return -ENOTDIR;
      target = read_link(fd.get(), "");
      if (!target) return -errno;
    }
    if (++links > kMaxSymlinks) return -ELOOP;
    if (target->empty()) return -ENOENT;
    if ((*target)[0] == '/') {
      auto inner = relative(*target);
      if (!inner) return -EXDEV;
      stack.clear();
      push_front_components(todo, *inner);
    } else {
      push_front_components(todo, *target);
    }
  }
  // Every component was a directory (or `rel` names the root): the current one is the answer.
  if (dir) {
    if (!stack.empty()) return stack.back().release();
    int fd = ::fcntl(dir_.get(), F_DUPFD_CLOEXEC, 0);
    return fd >= 0 ? fd : -errno;
  }
  int fd = ::openat(here(), ".", flags | O_CLOEXEC);
  return fd >= 0 ? fd : -errno;
}

FsError FsRoot::error_for(const std::string& path, int err) const {
  switch (err) {
    case EXDEV:
      return {rpc::kInvalidParams, path + " is outside the session directory " + root_};
    case ENOENT:
    case ENOTDIR:
      return {kResourceNotFound, "Resource not found: " + path};
    case ELOOP:
      return {rpc::kInvalidParams, path + ": too many symbolic links, or one tether does not follow"};
    case ENXIO:  // what open() says for a socket, or a device without a driver
      return {rpc::kInvalidParams, path + " is not a regular file"};
    default:
      return {rpc::kInternalError, path + ": " + ::strerror(err)};
  }
}

std::string select_lines(std::string_view text, long line, long limit) {
  if (line < 1) line = 1;
  std::size_t pos = 0;
  for (long i = 1; i < line && pos < text.size(); ++i) {
    auto nl = text.find('\n', pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  if (limit < 0) return std::string(text.substr(pos));
  std::size_t end = pos;
  for (long i = 0; i < limit && end < text.size(); ++i) {
    auto nl = text.find('\n', end);
    end = nl == std::string_view::npos ? text.size() : nl + 1;
  }
  return std::string(text.substr(pos, end - pos));
}

std::variant<json, FsError> FsRoot::read_text_file(const json& params) const {
  if (!params.is_object() || !params.contains("path") || !params["path"].is_string())
    return FsError{rpc::kInvalidParams, "fs/read_text_file needs a string path"};
  long line = 1, limit = -1;
  if (auto l = params.find("line"); l != params.end() && !l->is_null()) {
    if (!l->is_number_integer() || l->get<long>() < 1) return FsError{rpc::kInvalidParams, "line must be an integer >= 1"};
    line = l->get<long>();
  }
  if (auto l = params.find("limit"); l != params.end() && !l->is_null()) {
    if (!l->is_number_integer() || l->get<long>() < 0) return FsError{rpc::kInvalidParams, "limit must be an integer >= 0"};
    limit = l->get<long>();
  }
  const std::string& path = params["path"].get_ref<const std::string&>();
  if (path.empty() || path[0] != '/') return FsError{rpc::kInvalidParams, "path must be absolute: " + path};
  auto rel = relative(path);
  if (!rel) return error_for(path, EXDEV);
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the type is checked before any read.
  int opened = open_beneath(*rel, O_RDONLY | O_NONBLOCK | O_NOCTTY, false);
  if (opened < 0) return error_for(path, -opened);
  base::UniqueFd fd(opened);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return error_for(path, errno);
  if (!S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
  auto too_large = [&] {
    return FsError{rpc::kInternalError, path + " is larger than " + std::to_string(kMaxReadBytes >> 20) + " MiB"};
  };
  if (static_cast<std::size_t>(st.st_size) > kMaxReadBytes) return too_large();
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl >= 0) ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK);  // a regular file: reads as usual
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return error_for(path, errno);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxReadBytes) return too_large();  // it grew while we read
  }
  return json{{"content", select_lines(text, line, limit)}};
}

std::variant<json, FsError> FsRoot::write_text_file(const json& params) const {
  if (!params.is_object() || !params.contains("path") || !params["path"].is_string())
    return FsError{rpc::kInvalidParams, "fs/write_text_file needs a string path"};
  if (!params.contains("content") || !params["content"].is_string())
    return FsError{rpc::kInvalidParams, "fs/write_text_file needs a string content"};
  const std::string& path = params["path"].get_ref<const std::string&>();
  const std::string& content = params["content"].get_ref<const std::string&>();
  if (path.empty() || path[0] != '/') return FsError{rpc::kInvalidParams, "path must be absolute: " + path};
  if (content.size() > kMaxWriteBytes)
    return FsError{rpc::kInvalidParams,
                   "content for " + path + " is larger than " + std::to_string(kMaxWriteBytes >> 20) + " MiB"};
  auto rel = relative(path);
  if (!rel) return error_for(path, EXDEV);

  // Find the directory and the name to replace: follow a symlink at the target while it stays
  // inside (each hop resolved from the root again), so writing to a link writes its target.
  base::UniqueFd dirfd;
  std::string name;
  mode_t mode = 0;
  bool via_link = false;
  for (int hops = 0;; ++hops) {
    auto slash = rel->rfind('/');
    std::string dir_rel = slash == std::string::npos ? "." : rel->substr(0, slash);
    name = slash == std::string::npos ? *rel : rel->substr(slash + 1);
    if (name.empty() || name == "." || name == "..") return FsError{rpc::kInvalidParams, "not a file path: " + path};
    int opened = open_beneath(dir_rel.empty() ? "." : dir_rel, 0, true);
    if (opened == -ENOENT || opened == -ENOTDIR)
      return FsError{kResourceNotFound, "Resource not found: " + path + " (its directory does not exist)"};
    if (opened < 0) return error_for(path, -opened);
    dirfd.reset(opened);
    struct stat st;
    if (::fstatat(dirfd.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) return error_for(path, errno);
      if (via_link) return FsError{rpc::kInvalidParams, path + " is a symbolic link that points nowhere"};
      mode = 0666 & ~current_umask();
      break;
    }
    if (S_ISLNK(st.st_mode)) {
      if (hops >= kMaxSymlinks) return error_for(path, ELOOP);
      auto target = read_link(dirfd.get(), name.c_str());
      if (!target) continue;  // replaced meanwhile: look again (bounded by hops)
      if (target->empty()) return error_for(path, ENOENT);
      if ((*target)[0] == '/') {
        rel = relative(*target);
        if (!rel) return error_for(path, EXDEV);
      } else {
        rel = dir_rel + "/" + *target;
      }
      via_link = true;
      continue;
    }
    if (S_ISDIR(st.st_mode)) return FsError{rpc::kInvalidParams, path + " is a directory"};
    if (!S_ISREG(st.st_mode)) return not_regular(path, st.st_mode);
    mode = st.st_mode & 07777;
    break;
  }

  TempFile tmp;
  tmp.dirfd = dirfd.get();
  if (int r = create_temp(tmp, name); r < 0) {
    auto e = error_for(path, -r);
    e.message = "cannot create a temporary file beside " + path + ": " + ::strerror(-r);
    return e;
  }
  if (::fchmod(tmp.fd.get(), mode) != 0) return error_for(path, errno);
  if (!base::write_all(tmp.fd.get(), content)) return error_for(path, errno);
  if (::fsync(tmp.fd.get()) != 0) return error_for(path, errno);
  if (::close(tmp.fd.release()) != 0) return error_for(path, errno);
  // renameat replaces the name itself, never following it: whatever is at `name` by now (even a
  // symlink swapped in), the file lands in this directory, inside the root.
  if (::renameat(dirfd.get(), tmp.name.c_str(), dirfd.get(), name.c_str()) != 0) return error_for(path, errno);
  tmp.name.clear();
  return json::object();
}

}  // namespace tether::acp
