// The `tether batch --journal` file: a durable, append-only record of finished items, so a rerun
// skips what is already done and re-emits it, and a SIGKILL at any moment loses no finished work
// and duplicates none.
//
// Format (JSON Lines): a header line {"tetherBatchJournal":1}, then one line per finished item,
//   {"index":N,"id":ID,"hash":"<16 hex>","ok":true|false,"result":{...the output line...}}
// appended with O_APPEND and made durable (fdatasync) before the item's output line is written;
// several items finished in the same loop turn share one write and one sync (group commit). For
// one index the last record wins. `hash` is item_hash() of the input item: a record whose hash
// does not match the item now at that index was made from a different input and is not trusted.
// A torn last line (a crash in the middle of an append) is ignored and cut off before appending.
//
// JournalIndex is a plain value fed with the file's bytes (unit-tested); Journal does the I/O.
// Thread contract: thread-bound.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "base/unique_fd.h"
#include "cli/batch_input.h"

namespace tether::cli::batch {

inline constexpr std::string_view kJournalHeader = "{\"tetherBatchJournal\":1}";
// A journal line longer than this is not taken as a record (it is skipped, never held whole, and
// its item runs again): 256 MiB, far above any real output line.
inline constexpr std::size_t kMaxJournalLine = std::size_t{256} << 20;

// The journal line (with its newline) for an item whose output line is `record` (what
// dump_record() or answer_line() wrote): the record goes in as it is, under "result".
std::string journal_line(const Item& item, std::uint64_t hash, bool ok, std::string_view record);

struct JournalRecord {
  std::size_t index = 0;
  std::uint64_t hash = 0;
  bool ok = false;
  ojson result;
  std::string id_raw;  // Item::id_raw of the record's id, as written in the file
};
// Nothing when the line is not a well-formed record (nested deeper than a record of an input line
// that was accepted can be included: such a line is not one of ours).
std::optional<JournalRecord> parse_journal_line(std::string_view line);

class JournalIndex {
 public:
  struct Entry {
    std::uint64_t hash = 0;
    bool ok = false;
    std::uint64_t offset = 0;  // where the record's line starts in the file
    std::uint32_t length = 0;  // its length without the newline
  };

  // Feeds the file's bytes in order, then finish() once at the end.
  void feed(std::string_view bytes);
  void finish();

  const Entry* find(std::size_t index) const;
  std::size_t size() const { return entries_.size(); }
  std::size_t ok_entries() const;  // entries of items that were ok
  bool empty_file() const { return total_ == 0; }
  // The first line is the header (false for an empty file or a foreign one).
  bool has_header() const { return header_ok_; }
  // Not a journal: the first complete line is something else, or the whole file is one unfinished
  // line that is not the start of a header. Such a file is never written to.
  bool foreign() const { return foreign_; }
  // Bytes up to the end of the last complete line: a torn tail beyond it is cut off.
  std::uint64_t valid_bytes() const { return valid_; }
  bool torn_tail() const { return valid_ < total_; }
  std::size_t bad_lines() const { return bad_lines_; }  // complete lines that are not records

 private:
  void line(std::string_view text, std::uint64_t offset);

  std::unordered_map<std::size_t, Entry> entries_;
  std::string partial_;        // the unfinished last line so far
  bool overlong_ = false;      // inside a line over kMaxJournalLine: its bytes are not kept
  std::uint64_t total_ = 0;    // bytes fed
  std::uint64_t valid_ = 0;
  std::size_t lines_ = 0;
  std::size_t bad_lines_ = 0;
  bool header_ok_ = false;
  bool foreign_ = false;
};

class Journal {
 public:
  // Opens (creating) and locks the journal, indexes it and cuts off a torn tail. On failure, a
  // sentence in `error`.
  static std::unique_ptr<Journal> open(const std::string& path, std::string& error);

  const JournalIndex& index() const { return index_; }
  // Appends complete lines and makes them durable (write, then fdatasync). False on error (errno).
  bool append(std::string_view lines);
  // The output line (without newline) recorded for `entry`; nothing when it cannot be read back.
  std::optional<std::string> result_line(const JournalIndex::Entry& entry) const;

 private:
  Journal(base::UniqueFd fd, JournalIndex index) : fd_(std::move(fd)), index_(std::move(index)) {}
  base::UniqueFd fd_;
  JournalIndex index_;
};

}  // namespace tether::cli::batch
