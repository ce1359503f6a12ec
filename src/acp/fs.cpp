#include "acp/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "base/unique_fd.h"
#include "rpc/message.h"

namespace tether::acp {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxFileBytes = std::size_t{32} << 20;  // fits well under the line cap

std::optional<std::string> real(const std::string& path, int& err) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) {
    err = errno;
    return std::nullopt;
  }
  return std::string(buf);
}

FsError io_error(const std::string& what, int err) {
  if (err == ENOENT || err == ENOTDIR) return {-32002, what + ": no such file or directory"};
  return {rpc::kInternalError, what + ": " + ::strerror(err)};
}

// The process umask, without changing it (umask(2) would race with other threads).
mode_t current_umask() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
  return 022;
}

}  // namespace

FsRoot::FsRoot(const std::string& cwd) {
  int err = 0;
  root_ = real(cwd, err).value_or("");
}

bool FsRoot::inside(const std::string& p) const {
  if (root_.empty()) return false;
  if (root_ == "/") return true;
  return p == root_ || (p.size() > root_.size() && p.compare(0, root_.size(), root_) == 0 && p[root_.size()] == '/');
}

std::variant<std::string, FsError> FsRoot::resolve_read(std::string_view path_in) const {
  std::string path(path_in);
  if (path.empty() || path[0] != '/') return FsError{rpc::kInvalidParams, "path must be absolute: " + path};
  int err = 0;
  if (auto r = real(path, err)) {
    if (!inside(*r)) return FsError{rpc::kInvalidParams, path + " is outside the session directory " + root_};
    return *r;
  }
  // Missing: say "not found" only for a place we would serve, so nothing leaks about the outside.
  auto slash = path.rfind('/');
  int perr = 0;
  auto parent = real(slash == 0 ? "/" : path.substr(0, slash), perr);
  if (!parent || !inside(*parent)) return FsError{rpc::kInvalidParams, path + " is outside the session directory " + root_};
  return io_error(path, err);
}

std::variant<std::string, FsError> FsRoot::resolve_write(std::string_view path_in) const {
  std::string path(path_in);
  if (path.empty() || path[0] != '/') return FsError{rpc::kInvalidParams, "path must be absolute: " + path};
  auto slash = path.rfind('/');
  std::string name = path.substr(slash + 1);
  if (name.empty() || name == "." || name == "..") return FsError{rpc::kInvalidParams, "not a file path: " + path};
  int err = 0;
  auto parent = real(slash == 0 ? "/" : path.substr(0, slash), err);
  if (!parent) {
    // As for reads: an outside place is refused as such, an inside one is "not found".
    return FsError{err == ENOENT ? -32002 : rpc::kInternalError,
                   "cannot write " + path + ": its directory does not exist"};
  }
  if (!inside(*parent)) return FsError{rpc::kInvalidParams, path + " is outside the session directory " + root_};
  std::string target = (*parent == "/" ? "" : *parent) + "/" + name;
  struct stat st;
  if (::lstat(target.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) {
      // Replacing the link itself would surprise; write where it points, if that is inside.
      auto to = real(target, err);
      if (!to) return FsError{rpc::kInvalidParams, path + " is a symbolic link that points nowhere"};
      if (!inside(*to)) return FsError{rpc::kInvalidParams, path + " is outside the session directory " + root_};
      target = *to;
      if (::stat(target.c_str(), &st) != 0) return io_error(path, errno);
    }
    if (S_ISDIR(st.st_mode)) return FsError{rpc::kInvalidParams, path + " is a directory"};
  }
  return target;
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
  auto resolved = resolve_read(params["path"].get<std::string>());
  if (auto* e = std::get_if<FsError>(&resolved)) return *e;
  const std::string& file = std::get<std::string>(resolved);
  base::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return io_error(params["path"].get<std::string>(), errno);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io_error(file, errno);
  if (!S_ISREG(st.st_mode)) return FsError{rpc::kInvalidParams, params["path"].get<std::string>() + " is not a regular file"};
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io_error(file, errno);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.size() > kMaxFileBytes) return FsError{rpc::kInternalError, file + " is larger than 32 MiB"};
  }
  return json{{"content", select_lines(text, line, limit)}};
}

std::variant<json, FsError> FsRoot::write_text_file(const json& params) const {
  if (!params.is_object() || !params.contains("path") || !params["path"].is_string())
    return FsError{rpc::kInvalidParams, "fs/write_text_file needs a string path"};
  if (!params.contains("content") || !params["content"].is_string())
    return FsError{rpc::kInvalidParams, "fs/write_text_file needs a string content"};
  auto resolved = resolve_write(params["path"].get<std::string>());
  if (auto* e = std::get_if<FsError>(&resolved)) return *e;
  const std::string& target = std::get<std::string>(resolved);
  const std::string& content = params["content"].get_ref<const std::string&>();

  auto slash = target.rfind('/');
  std::string tmpl = target.substr(0, slash + 1) + "." + target.substr(slash + 1) + ".tether-XXXXXX";
  std::vector<char> tmp(tmpl.begin(), tmpl.end());
  tmp.push_back('\0');
  base::UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd) return io_error("cannot create a temporary file beside " + target, errno);
  std::string tmp_path(tmp.data());
  auto fail = [&](const std::string& what, int err) {
    ::unlink(tmp_path.c_str());
    return io_error(what, err);
  };
  struct stat st;
  mode_t mode = ::stat(target.c_str(), &st) == 0 ? (st.st_mode & 07777) : (0666 & ~current_umask());
  if (::fchmod(fd.get(), mode) != 0) return fail(tmp_path, errno);
  std::string_view rest(content);
  while (!rest.empty()) {
    ssize_t n = ::write(fd.get(), rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(target, errno);
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
  if (::fsync(fd.get()) != 0) return fail(target, errno);
  fd.reset();
  if (::rename(tmp_path.c_str(), target.c_str()) != 0) return fail(target, errno);
  return json::object();
}

}  // namespace tether::acp
