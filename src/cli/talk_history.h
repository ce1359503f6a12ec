// The history of `tether talk`: where it lives, which lines it keeps, and the file itself.
//
// The file is $TETHER_HISTORY, else $XDG_STATE_HOME/tether/history, else
// ~/.local/state/tether/history (directories created 0700, the file 0600). One entry per line,
// with backslash and newline escaped (`\\`, `\n`), so a multi-line entry stays one entry. Each
// accepted line is appended at once (a crash loses nothing; two sessions interleave instead of
// overwriting each other); the file is compacted to the newest `max_entries` when it grows past
// twice that. Lines that start with a space, blank lines and a repeat of the previous entry are
// not recorded.
//
// Thread contract: thread-bound (a plain value; file I/O on the calling thread).
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tether::cli::talk {

// The history path from the environment (`getenv` is injected for tests). Empty when there is
// none: TETHER_HISTORY set to the empty string, or no HOME to fall back on.
std::string history_path(const std::function<const char*(const char*)>& getenv_fn);

// Whether `line` becomes a history entry after `previous` (the newest entry, empty if none).
bool should_record(std::string_view line, std::string_view previous);

// One entry as a file line (no trailing newline) and back. decode_entry is lenient: an unknown
// escape keeps its character.
std::string encode_entry(std::string_view entry);
std::string decode_entry(std::string_view line);

class HistoryFile {
 public:
  explicit HistoryFile(std::string path, std::size_t max_entries = 2000);

  // Reads the entries, oldest first, creating the directory (0700) if needed and compacting the
  // file when it is too long. A missing file is no error. On error, a sentence in `error`.
  std::vector<std::string> load(std::string& error);
  // Appends one entry (creating the file 0600). False with a sentence in `error` on failure.
  bool append(std::string_view entry, std::string& error);

  const std::string& path() const { return path_; }

 private:
  bool rewrite(const std::vector<std::string>& entries, std::string& error);

  std::string path_;
  std::size_t max_entries_;
};

}  // namespace tether::cli::talk
