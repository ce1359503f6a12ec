#include "cli/batch_report.h"

#include <errno.h>
#include <limits.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>

#include "cli/common.h"
#include "cli/terminal_text.h"

namespace tether::cli::batch {
namespace {

// One step of counting a regular-file stdin ahead: about a millisecond of memchr from the page
// cache, so the loop stays responsive while a large input is counted.
constexpr std::size_t kCountStep = 1024 * 1024;

// tether's own command line as it was given: /proc/self/cmdline holds argv as the shell passed it.
std::vector<std::string> own_argv() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> argv;
  for (std::size_t at = 0; at < all.size();) {
    std::size_t end = all.find('\0', at);
    if (end == std::string::npos) end = all.size();
    argv.push_back(all.substr(at, end - at));
    at = end + 1;
  }
  return argv;
}

// The path of the regular file on stdin, relative to the working directory when it is below it;
// empty when stdin is not a regular file or its name no longer leads to it (deleted, renamed).
std::string stdin_file_path() {
  struct stat in {}, named {};
  if (::fstat(STDIN_FILENO, &in) != 0 || !S_ISREG(in.st_mode)) return {};
  char buf[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/fd/0", buf, sizeof buf - 1);
  if (n <= 0) return {};
  std::string path(buf, static_cast<std::size_t>(n));
  if (::stat(path.c_str(), &named) != 0 || named.st_dev != in.st_dev || named.st_ino != in.st_ino) return {};
  char cwd[PATH_MAX];
  if (::getcwd(cwd, sizeof cwd)) {
    std::string dir = std::string(cwd) + (std::string_view(cwd) == "/" ? "" : "/");
    if (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0) path.erase(0, dir.size());
  }
  return path;
}

void write_stderr(std::string_view text) {
  [[maybe_unused]] auto n = ::write(STDERR_FILENO, text.data(), text.size());
}

}  // namespace

void InputCount::start() {
  active_ = true;
  struct stat st {};
  if (::fstat(STDIN_FILENO, &st) == 0 && S_ISREG(st.st_mode)) {
    off_t at = ::lseek(STDIN_FILENO, 0, SEEK_CUR);
    if (at >= 0) {
      at_ = at;
      end_ = st.st_size;
      stepping_ = true;
      return;
    }
  }
  from_reads_ = true;
}

void InputCount::step() {
  if (!stepping_) return;
  if (buf_.empty()) buf_.resize(kCountStep);
  auto want = static_cast<std::size_t>(std::min<off_t>(std::max<off_t>(end_ - at_, 0), off_t(kCountStep)));
  ssize_t n = want > 0 ? ::pread(STDIN_FILENO, buf_.data(), want, at_) : 0;
  if (n < 0 && errno == EINTR) return;
  if (n < 0) {
    stepping_ = false;  // no total then; the reading itself reports what is wrong with stdin
    buf_ = {};
    return;
  }
  counter_.feed(std::string_view(buf_.data(), static_cast<std::size_t>(n)));
  at_ += n;
  if (n == 0 || at_ >= end_) {
    counter_.finish();
    total_ = counter_.count();
    stepping_ = false;
    buf_ = {};
  }
}

void InputCount::read(std::string_view bytes) {
  if (from_reads_) counter_.feed(bytes);
}

void InputCount::end_of_input() {
  if (!from_reads_ || counter_.finished()) return;
  counter_.finish();
  total_ = counter_.count();
}

ProgressLine::ProgressLine(bool enabled, bool plain)
    : enabled_(enabled), in_place_(enabled && !plain && ::isatty(STDERR_FILENO) == 1) {}

void ProgressLine::tick(const std::function<std::string()>& text, bool force) {
  if (!enabled_) return;
  auto now = base::Clock::now();
  if (!force && now < next_) return;
  next_ = now + (in_place_ ? std::chrono::milliseconds(200) : std::chrono::seconds(1));
  write_stderr(in_place_ ? "\r" + text() + "\x1b[K" : text() + "\n");
  shown_ = true;
}

void ProgressLine::clear() {
  if (in_place_ && shown_) write_stderr("\r\x1b[K");
  shown_ = false;
}

void ProgressLine::end(const std::function<std::string()>& text) {
  if (enabled_ && !in_place_) tick(text, true);
  clear();
}

void say_journal_warnings(std::uint64_t mismatches, std::uint64_t unreadable) {
  if (mismatches > 0) {
    error_line("warning: " + std::to_string(mismatches) + " journal record" + (mismatches == 1 ? " was" : "s were") +
               " made from a different input (another id or prompt at the same line): those items were run again");
  }
  if (unreadable > 0)
    error_line("warning: " + std::to_string(unreadable) + " journal records could not be read back: those items were run again");
}

bool same_file(int a, int b) {
  struct stat sa {}, sb {};
  if (::fstat(a, &sa) != 0 || ::fstat(b, &sb) != 0) return false;
  // One terminal has several names: /dev/pts/N, and /dev/tty for the controlling terminal (its own
  // inode and device number). For terminals the device decides, or both being our controlling
  // terminal (only that one answers tcgetsid).
  if (S_ISCHR(sa.st_mode) && S_ISCHR(sb.st_mode)) {
    if (sa.st_rdev == sb.st_rdev) return true;
    if (!::isatty(a) || !::isatty(b)) return false;
    pid_t sid = ::tcgetsid(a);
    return sid != -1 && sid == ::tcgetsid(b);
  }
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

void say_resume_hint(std::uint64_t ok_items, bool stdin_from_start) {
  std::string input = stdin_from_start ? stdin_file_path() : std::string();
  error_line("to resume, run the same command again with the same journal" +
             std::string(input.empty() ? " and the same input on stdin" : "") + " (the " + std::to_string(ok_items) +
             (ok_items == 1 ? " item that is" : " items that are") + " ok will not run again):");
  write_stderr(for_terminal(STDERR_FILENO, "  " + resume_command(own_argv(), input) + "\n"));
}

}  // namespace tether::cli::batch
