#include "cli/batch_journal.h"

#include "base/unique_fd.h"
#include "rpc/message.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>

namespace tether::cli::batch {
namespace {

std::string hex16(std::uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::optional<std::uint64_t> parse_hex16(std::string_view s) {
  if (s.size() != 16) return std::nullopt;
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, 16);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// A new file's directory entry must be durable too, or a crash can lose the whole journal.
void sync_parent_dir(const std::string& path) {
  std::string copy = path;
  int dir = ::open(::dirname(copy.data()), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  ::fsync(dir);
  ::close(dir);
}

// A record holds the output line, which holds the input line's other keys under "meta": two levels
// more than the input, which was at most rpc::kMaxJsonDepth deep.
constexpr int kMaxRecordDepth = rpc::kMaxJsonDepth + 2;

}  // namespace

std::string journal_line(const Item& item, std::uint64_t hash, bool ok, std::string_view record) {
  // {"index", "id", "hash", "ok", "result"}: the id as dump_record() writes it (its id_text).
  std::string line = "{\"index\":" + std::to_string(item.index) + ",\"id\":" + item.id_text;
  line += ",\"hash\":\"" + hex16(hash) + "\",\"ok\":";
  line += ok ? "true" : "false";
  line += ",\"result\":";
  line += record;
  line += "}\n";
  return line;
}

std::optional<JournalRecord> parse_journal_line(std::string_view line) {
  if (rpc::nested_deeper_than(line, kMaxRecordDepth)) return std::nullopt;
  ojson j = ojson::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  auto index = j.find("index");
  auto hash = j.find("hash");
  auto ok = j.find("ok");
  auto result = j.find("result");
  if (index == j.end() || !index->is_number_unsigned() || hash == j.end() || !hash->is_string() ||
      ok == j.end() || !ok->is_boolean() || result == j.end() || !result->is_object())
    return std::nullopt;
  auto h = parse_hex16(hash->get<std::string>());
  if (!h) return std::nullopt;
  JournalRecord r;
  r.index = index->get<std::size_t>();
  r.hash = *h;
  r.ok = ok->get<bool>();
  r.result = std::move(*result);
  if (auto id = j.find("id"); id != j.end() && id->is_number_float()) r.id_raw = raw_float_id(line);
  return r;
}

void JournalIndex::feed(std::string_view bytes) {
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    std::string_view piece = bytes.substr(0, nl);  // all of it when there is no newline
    if (!overlong_ && partial_.size() + piece.size() > kMaxJournalLine) {
      // Not a record of ours (Entry::length could not even hold it): skipped without holding it.
      overlong_ = true;
      partial_.clear();
    }
    if (!overlong_) partial_.append(piece);
    total_ += piece.size();
    if (nl == std::string_view::npos) return;
    total_ += 1;
    bytes.remove_prefix(nl + 1);
    if (overlong_) {
      if (lines_++ == 0) foreign_ = true;
      else ++bad_lines_;
      overlong_ = false;
    } else {
      line(partial_, total_ - partial_.size() - 1);
      partial_.clear();
    }
    valid_ = total_;
  }
}

void JournalIndex::finish() {
  // A torn tail stays out of the index (valid_ stops before it). A file that is nothing but an
  // unfinished line is ours only if that line is the start of a header.
  if (lines_ == 0 && (overlong_ || (!partial_.empty() && !kJournalHeader.starts_with(partial_)))) foreign_ = true;
  partial_.clear();
  overlong_ = false;
}

void JournalIndex::line(std::string_view text, std::uint64_t offset) {
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  if (lines_++ == 0) {
    if (text == kJournalHeader) header_ok_ = true;
    else foreign_ = true;
    return;
  }
  if (text.empty()) return;
  auto r = parse_journal_line(text);
  if (!r) {
    ++bad_lines_;
    return;
  }
  entries_[r->index] = Entry{r->hash, r->ok, offset, static_cast<std::uint32_t>(text.size())};
}

const JournalIndex::Entry* JournalIndex::find(std::size_t index) const {
  auto it = entries_.find(index);
  return it == entries_.end() ? nullptr : &it->second;
}

std::size_t JournalIndex::ok_entries() const {
  std::size_t n = 0;
  for (const auto& [index, entry] : entries_) n += entry.ok;
  return n;
}

std::unique_ptr<Journal> Journal::open(const std::string& path, std::string& error) {
  bool existed = ::access(path.c_str(), F_OK) == 0;
  base::UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) {
    error = "cannot open the journal " + path + ": " + strerror(errno);
    return nullptr;
  }
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    error = errno == EWOULDBLOCK ? "the journal " + path + " is in use by another tether batch"
                                 : "cannot lock the journal " + path + ": " + strerror(errno);
    return nullptr;
  }
  // Only a regular file has an end: /dev/zero would be read for ever, a FIFO would block.
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) {
    error = "cannot read the journal " + path + ": " + strerror(errno);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "the journal " + path + " is not a regular file; refusing to use it";
    return nullptr;
  }
  JournalIndex index;
  char buf[1 << 16];
  std::uint64_t off = 0;
  // Up to the size it had when opened: we hold the lock, so nobody appends meanwhile, and a file
  // that grows anyway is not read for ever.
  const auto size = static_cast<std::uint64_t>(st.st_size);
  while (off < size) {
    ssize_t n = ::pread(fd.get(), buf, std::min<std::uint64_t>(sizeof buf, size - off), static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot read the journal " + path + ": " + strerror(errno);
      return nullptr;
    }
    if (n == 0) break;
    index.feed(std::string_view(buf, static_cast<std::size_t>(n)));
    off += static_cast<std::uint64_t>(n);
  }
  index.finish();
  if (index.foreign()) {
    error = path + " is not a tether batch journal (its first line is not " + std::string(kJournalHeader) +
            "); refusing to write to it";
    return nullptr;
  }
  bool dirty = false;
  if (index.torn_tail()) {
    // A crash tore the last append: cut it off so the next record starts on a line of its own.
    if (::ftruncate(fd.get(), static_cast<off_t>(index.valid_bytes())) != 0) {
      error = "cannot repair the journal " + path + ": " + strerror(errno);
      return nullptr;
    }
    dirty = true;
  }
  if (!index.has_header()) {
    std::string header(kJournalHeader);
    header += '\n';
    if (!base::write_all(fd.get(), header)) {
      error = "cannot write the journal " + path + ": " + strerror(errno);
      return nullptr;
    }
    dirty = true;
  }
  if (dirty && ::fdatasync(fd.get()) != 0) {
    error = "cannot sync the journal " + path + ": " + strerror(errno);
    return nullptr;
  }
  if (!existed) sync_parent_dir(path);
  return std::unique_ptr<Journal>(new Journal(std::move(fd), std::move(index)));
}

bool Journal::append(std::string_view lines) {
  if (lines.empty()) return true;
  return base::write_all(fd_.get(), lines) && ::fdatasync(fd_.get()) == 0;
}

std::optional<std::string> Journal::result_line(const JournalIndex::Entry& entry) const {
  std::string text(entry.length, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    ssize_t n = ::pread(fd_.get(), text.data() + got, text.size() - got, static_cast<off_t>(entry.offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return std::nullopt;
    got += static_cast<std::size_t>(n);
  }
  auto r = parse_journal_line(text);
  if (!r) return std::nullopt;
  return dump_record(r->result, r->id_raw);
}

}  // namespace tether::cli::batch
