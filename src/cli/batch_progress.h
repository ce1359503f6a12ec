// What `tether batch` tells a person about a run, as plain values: how many items the input holds
// (counted ahead of the real reading when stdin is a regular file, or as a pipe is read), the
// recent completion rate that the time left is computed from, the progress line, the summary of
// an interrupted run, and the shell command that resumes it. No I/O and no clock here: the
// front-end feeds bytes and times in, and the unit tests do the same.
//
// Thread contract: thread-bound (plain values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.h"
#include "cli/shell_words.h"
#include "cli/batch_input.h"

namespace tether::cli::batch {

// Counts the items LineReader + the shard filter will yield from the same bytes, without keeping
// them: a line is an item when it is longer than max_line (counting a closing '\r') or, without
// one trailing '\r', holds a byte other than space and tab.
//
// Without a shard filter this is a memchr loop that holds nothing but the current line's state,
// so a regular-file stdin can be counted ahead of the run at the cost of one more read of it.
// With --shard K/N (N > 1) whether a line is this shard's depends on its id, so each line that is
// a JSON object is parsed (parse_item, the admission rule itself): slower, but still spread over
// the run in bounded steps by the caller and never on the path of the items.
class ItemCounter {
 public:
  ItemCounter(std::size_t max_line, Shard shard);
  void feed(std::string_view bytes);
  // At end of input: counts the last line if it had no newline. count() is final after this.
  void finish();
  bool finished() const { return finished_; }
  std::uint64_t count() const { return count_; }

 private:
  void end_line();

  std::size_t max_line_;
  Shard shard_;
  std::optional<LineReader> reader_;  // only with a shard filter
  std::uint64_t count_ = 0;
  // The current (unfinished) line, without a shard filter:
  std::size_t length_ = 0;     // its bytes so far
  bool nonblank_ = false;      // a byte other than ' ', '\t' seen (a '\r' counts unless last)
  bool cr_last_ = false;       // its last byte so far is '\r' (blank only if the line ends there)
  bool finished_ = false;
};

// The recent completion rate: items per second since a point that has at least `window`
// completions after it and lies at least `min_span` back (when the run is that old), measured up
// to now, so it falls while nothing finishes. With --jobs N items overlap, and throughput
// (completions per wall-clock second) is what the time left depends on, not any one item's
// latency; the span keeps thousands of fast items a second from making it jump about.
// Completions within 100 ms share one sample, so what it keeps is bounded by the span / 100 ms
// plus `window`.
class Throughput {
 public:
  explicit Throughput(std::size_t window = 20, base::Duration min_span = std::chrono::seconds(10))
      : window_(window < 1 ? 1 : window), min_span_(min_span) {}
  void start(base::TimePoint t);
  void completed(base::TimePoint t);
  // Nothing until the first completion.
  std::optional<double> per_second(base::TimePoint now) const;

 private:
  struct Sample {
    base::TimePoint t;
    std::uint64_t completed;  // completions so far at t
  };
  std::size_t window_;
  base::Duration min_span_;
  std::uint64_t completed_ = 0;
  std::deque<Sample> samples_;  // oldest first; the front is the point the rate is measured from
};

// What the progress line shows.
struct ProgressCounts {
  std::uint64_t done = 0;          // lines written (items from the journal included)
  std::uint64_t ok = 0, failed = 0;
  std::uint64_t from_journal = 0;  // of `done`: re-emitted from the journal, not run
  std::optional<std::uint64_t> total;  // every item of the input (this shard's), once known
  std::uint64_t to_run = 0;        // items not finished that will run (not from the journal)
  std::optional<double> rate;      // Throughput::per_second
};

// "batch: 12/100 done (50 from the journal), 11 ok, 1 failed, 2.3 items/s, ETA 38.0 s". The total
// and ETA appear once known (ETA: to_run / rate).
std::string progress_text(const ProgressCounts& c);

std::string format_rate(double per_second);
std::string format_duration(double seconds);

// An interrupted run, for its summary line.
struct InterruptCounts {
  int signal = 0;
  std::uint64_t ok = 0, failed = 0;    // items with a result of their own (journal included)
  std::uint64_t cancelled_running = 0; // in flight when the signal came: cancelled
  std::optional<std::uint64_t> total;  // when the whole input was counted
};

// "interrupted by SIGINT: 40 of 100 items done (38 ok, 2 failed), 4 cancelled while running, 56
// not started" (without "tether: "); with no total, "...; the rest of the input was not started".
// Not started: never sent to an agent (those already read have a `cancelled` line).
std::string interrupt_summary(const InterruptCounts& c);

// A run that was not interrupted, for its summary line.
struct RunCounts {
  std::uint64_t items = 0, ok = 0, failed = 0, from_journal = 0;
  double seconds = 0;
  bool no_bridges = false;  // every bridge went out of service
};

// "batch: 100 items, 98 ok, 2 failed (10 from the journal), in 1m40s, 0.9 items/s" (without
// "tether: "); the rate counts only the items that ran, and is left out when none did.
std::string run_summary(const RunCounts& c);

// Quoting for the shell (cli/shell_words.h), used for the resume hint.
using cli::shell_command;
using cli::shell_quote;

// The command line that resumes a run: `argv` quoted, and `< FILE` when stdin was the regular file
// `stdin_path` (empty when it was not).
std::string resume_command(const std::vector<std::string>& argv, const std::string& stdin_path);

}  // namespace tether::cli::batch
