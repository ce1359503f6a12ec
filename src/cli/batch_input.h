// `tether batch` input, as plain values: splitting stdin into numbered lines, turning one line into
// an item (a JSON object with `prompt` and optional `id`, or the line as prompt text), duplicate-id
// detection, the stable shard hash, and the item hash the journal uses to recognise its input.
// No I/O here: the front-end feeds bytes in and gets items out, and the unit tests do the same.
//
// Thread contract: thread-bound (plain values).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>

#include <nlohmann/json.hpp>

#include "rpc/line_framer.h"

namespace tether::cli::batch {

// Output and journal records keep their keys in the order written (id, index, ok, ...).
using ojson = nlohmann::ordered_json;

// One physical input line. `line_no` counts every line, blank ones included (1-based), so it names
// the line a person finds with `sed -n Np`.
struct InputLine {
  std::size_t line_no = 0;
  std::string text;       // without the newline and one trailing '\r'
  bool oversize = false;  // longer than the cap: `text` is empty, the line was drained unbuffered
};

// Splits a byte stream into numbered lines. Blank lines (empty, or only spaces and tabs) are
// counted and skipped. A line longer than `max_line` is drained to its newline, never buffered
// whole, and reported as oversize so it still gets its one output line.
class LineReader {
 public:
  explicit LineReader(std::size_t max_line) : framer_(max_line, /*cap_counts_cr=*/true) {}
  void push(std::string_view bytes) { framer_.push(bytes); }
  // The next complete non-blank line, or nothing until more bytes arrive.
  std::optional<InputLine> next();
  // At end of input: the last line when it had no newline (non-blank), then nothing.
  std::optional<InputLine> finish();
  std::size_t buffered() const { return framer_.buffered(); }

 private:
  rpc::LineFramer framer_;
  std::size_t line_no_ = 0;   // lines completed so far
  bool finished_ = false;
};

// One input item. An item with `error` is not run: it becomes a bad_input record.
struct Item {
  std::size_t index = 0;  // the input line number
  ojson id;               // string or number: as given, or the line number
  // The line gave its id. Only such ids are checked for duplicates: a line without one is known by
  // its line number (`index`, unique by itself), so its default id never takes an explicit id's
  // place, whatever the types (`{"id":3}` on line 9 and a plain line 3 are both fine).
  bool id_given = false;
  // A number id nlohmann holds as a double (an integer beyond 64 bits, `1.0`, `1e3`) would be
  // printed back changed: its text exactly as given, written in its place (empty otherwise).
  std::string id_raw;
  std::string id_text;    // the id's JSON text (`"abc"`, `12`, id_raw), as records write it; shard hash, duplicates, item hash
  std::string prompt;
  std::vector<std::string> attachments;  // "attachments": paths, sent as -a would send them
  ojson meta;             // the object's other keys (null when none)
  std::optional<std::string> error;
};

// Parses one line: a JSON object is an item (`prompt` must be a string; `id`, when present, a
// string or a number; every other key goes to `meta`); a line that starts with '{' but is not
// valid JSON, or is nested deeper than rpc::kMaxJsonDepth, is bad input (it was meant as an
// object); anything else is the prompt text itself.
Item parse_item(const InputLine& line);

// parse_item's two ways. The common item line is read without a parser (issue 17: the general
// way cost a batch turn about 0.6 µs): `{"prompt":"P"}` with, before or after it, `"id":"S"` or
// `"id":N`, byte for byte (no space), where P and S hold no quote, backslash or control byte and
// are valid UTF-8, and N is 0 or up to 18 digits without a leading zero. It gives the same Item
// as parse_item_in_full (tests hold it to that on every byte edit); nullopt for any other line.
std::optional<Item> read_common_item(const InputLine& line);
Item parse_item_in_full(const InputLine& line);

// The text of the number that is the value of the top-level key "id" in the JSON object `text`,
// as written, when nlohmann reads it as a double (see Item::id_raw); empty otherwise.
std::string raw_float_id(std::string_view text);

// dump() for an output or journal record, with `id_raw` (when not empty) written as the value of
// "id" at the top level and in a top-level "result" object.
std::string dump_record(const ojson& record, std::string_view id_raw);

// Duplicate detection among the ids lines give (Item::id_given): the first wins; a later one is
// bad input.
class IdRegistry {
 public:
  // False when `id_text` was seen before.
  bool insert(const std::string& id_text) { return seen_.insert(id_text).second; }
  std::size_t size() const { return seen_.size(); }

 private:
  std::unordered_set<std::string> seen_;
};

// FNV-1a, 64 bits: offset basis 0xcbf29ce484222325, prime 0x100000001b3.
// `h`: the hash of the bytes before these (fnv1a64(a + b) == fnv1a64(b, fnv1a64(a))).
std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t h = 0xcbf29ce484222325ULL);

// --shard K/N: shard K (0-based) of N takes the items whose fnv1a64(id_text) % N == K.
struct Shard {
  std::uint64_t k = 0;
  std::uint64_t n = 1;
  bool contains(const std::string& id_text) const { return n <= 1 || fnv1a64(id_text) % n == k; }
};
// Parses "K/N" (0 <= K < N). Nothing when malformed.
std::optional<Shard> parse_shard(std::string_view spec);

// What the journal stores to recognise an item: fnv1a64 over its id, prompt and meta, so a journal
// made from a different input is noticed rather than trusted.
std::uint64_t item_hash(const Item& item);

// JSON text for output: compact, invalid UTF-8 replaced (never throws).
std::string dump(const ojson& value);

}  // namespace tether::cli::batch
