#include "cli/talk_history.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/unique_fd.h"

namespace tether::cli::talk {
namespace {

std::string dirname_of(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// mkdir -p with mode 0700 for each directory it creates (existing ones are left alone).
bool make_dirs(const std::string& dir, std::string& error) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    error = dir + " is not a directory";
    return false;
  }
  std::string parent = dirname_of(dir);
  if (parent != dir && !make_dirs(parent, error)) return false;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    error = "cannot create " + dir + ": " + strerror(errno);
    return false;
  }
  return true;
}

}  // namespace

std::string history_path(const std::function<const char*(const char*)>& getenv_fn) {
  if (const char* p = getenv_fn("TETHER_HISTORY")) return p;  // empty: history disabled
  if (const char* x = getenv_fn("XDG_STATE_HOME"); x && x[0] == '/') return std::string(x) + "/tether/history";
  if (const char* h = getenv_fn("HOME"); h && h[0]) return std::string(h) + "/.local/state/tether/history";
  return {};
}

bool should_record(std::string_view line, std::string_view previous) {
  if (line.empty() || line.front() == ' ' || line.front() == '\t') return false;
  if (line.find_first_not_of(" \t\r\n") == std::string_view::npos) return false;
  return line != previous;
}

std::string encode_entry(std::string_view entry) {
  std::string out;
  out.reserve(entry.size());
  for (char c : entry) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else out += c;
  }
  return out;
}

std::string decode_entry(std::string_view line) {
  std::string out;
  out.reserve(line.size());
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c != '\\' || i + 1 == line.size()) {
      out += c;
      continue;
    }
    char n = line[++i];
    out += n == 'n' ? '\n' : n == 'r' ? '\r' : n;
  }
  return out;
}

HistoryFile::HistoryFile(std::string path, std::size_t max_entries)
    : path_(std::move(path)), max_entries_(max_entries == 0 ? 1 : max_entries) {}

std::vector<std::string> HistoryFile::load(std::string& error) {
  std::vector<std::string> entries;
  if (!make_dirs(dirname_of(path_), error)) return entries;
  base::UniqueFd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno != ENOENT) error = "cannot read " + path_ + ": " + strerror(errno);
    return entries;
  }
  std::string data;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot read " + path_ + ": " + strerror(errno);
      return {};
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
  }
  std::size_t pos = 0;
  while (pos < data.size()) {
    std::size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    std::string_view line(data.data() + pos, nl - pos);
    if (!line.empty()) entries.push_back(decode_entry(line));
    pos = nl + 1;
  }
  if (entries.size() > 2 * max_entries_) {
    entries.erase(entries.begin(), entries.end() - static_cast<std::ptrdiff_t>(max_entries_));
    std::string ignored;  // a history that cannot be compacted still works
    rewrite(entries, ignored);
  }
  return entries;
}

bool HistoryFile::append(std::string_view entry, std::string& error) {
  base::UniqueFd fd(::open(path_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd) {
    error = "cannot write " + path_ + ": " + strerror(errno);
    return false;
  }
  // One write per entry: O_APPEND keeps concurrent sessions' entries whole.
  if (!base::write_all(fd.get(), encode_entry(entry) + "\n")) {
    error = "cannot write " + path_ + ": " + strerror(errno);
    return false;
  }
  return true;
}

bool HistoryFile::rewrite(const std::vector<std::string>& entries, std::string& error) {
  std::string tmp = path_ + ".tmp" + std::to_string(::getpid());
  base::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) {
    error = "cannot write " + tmp + ": " + strerror(errno);
    return false;
  }
  std::string data;
  for (const auto& e : entries) data += encode_entry(e) + "\n";
  if (!base::write_all(fd.get(), data) || ::fsync(fd.get()) != 0 || ::rename(tmp.c_str(), path_.c_str()) != 0) {
    error = "cannot rewrite " + path_ + ": " + strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

}  // namespace tether::cli::talk
