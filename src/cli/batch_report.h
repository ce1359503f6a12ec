// The I/O side of what `tether batch` tells a person on stderr: the progress line (redrawn in
// place on a terminal, or plain lines with --progress), the counting of the input that gives it a
// total, and the lines that say how to resume an interrupted run. The texts themselves are plain
// functions in batch_progress.h; the loop that decides when to say what is batch.cpp.
//
// Thread contract: thread-bound (the batch loop's thread).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "cli/batch_progress.h"

namespace tether::cli::batch {

// How many items the input holds, learnt as early as it can be. A regular-file stdin is counted
// ahead of the run, from where stdin stands to its size at the start, in steps of a bounded size
// (pread: the reading position stays where the real reading needs it); any other stdin (a pipe, a
// terminal) is counted as it is read, so its total is known once its end is.
class InputCount {
 public:
  InputCount(std::size_t max_line, Shard shard) : counter_(max_line, shard) {}
  // Starts counting (nothing is counted unless this is called).
  void start();
  // A regular file is still being counted ahead: the loop should take another step() at once.
  bool stepping() const { return stepping_; }
  void step();
  // What read_stdin() read, and its end (for a stdin that is not a regular file).
  void read(std::string_view bytes);
  void end_of_input();
  std::optional<std::uint64_t> total() const { return total_; }

 private:
  ItemCounter counter_;
  bool active_ = false;    // start() was called
  bool from_reads_ = false;
  bool stepping_ = false;
  off_t at_ = 0, end_ = 0;
  std::vector<char> buf_;
  std::optional<std::uint64_t> total_;
};

// The progress line on stderr: on a terminal one line redrawn in place five times a second (and
// erased before anything else is written there), else with --progress a plain line a second.
class ProgressLine {
 public:
  // `enabled`: shown at all; `plain`: --progress (plain lines even on a terminal).
  ProgressLine(bool enabled, bool plain);
  bool enabled() const { return enabled_; }
  // A line drawn in place is on the terminal now.
  bool shown() const { return in_place_ && shown_; }
  // When the next line is due (for the loop's poll timeout).
  base::TimePoint next_due() const { return next_; }
  // Draws `text()` if a line is due (always when `force`).
  void tick(const std::function<std::string()>& text, bool force = false);
  // Erases a line drawn in place, before other text goes to stderr.
  void clear();
  // At the end: a last plain line, or the line erased.
  void end(const std::function<std::string()>& text);

 private:
  bool enabled_;
  bool in_place_;  // redrawn with a carriage return on a terminal
  bool shown_ = false;
  base::TimePoint next_{};
};

// At the end of a run with --journal: records that were not trusted (`mismatches`: made from
// another input) or could not be read back; their items were run again.
void say_journal_warnings(std::uint64_t mismatches, std::uint64_t unreadable);

// Both fds are the same file (for a terminal: the same device, whatever names opened it).
bool same_file(int a, int b);

// After the summary of an interrupted run with --journal: the sentence and, on a line of its own
// so that it can be copied whole, the command that resumes it (this process's own command line,
// quoted for a shell, with `< FILE` when stdin is a regular file that can still be found by name
// and `stdin_from_start`: it was read from its first byte, so `< FILE` gives the same input; when
// it was not (`{ read -r header; tether batch ...; } < FILE`) the sentence asks for the same input).
void say_resume_hint(std::uint64_t ok_items, bool stdin_from_start);

}  // namespace tether::cli::batch
