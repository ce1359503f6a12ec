// Fuzz target: the `tether batch --journal` reader (cli/batch_journal.h): JournalIndex over a
// file's bytes cut into fuzzer-chosen chunks, and parse_journal_line on every line. The oracle,
// besides not crashing: the index (entries, header, foreign, valid bytes, bad lines) does not
// depend on the chunking (the bytes are indexed again in one piece); valid_bytes ends a line and
// never passes the end; every entry points at a line of the file that parses as that record; and
// a record written back with journal_line() reads back the same.
// Deep nesting is the parser's to refuse (512 levels, two more for a record's own wrapping).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cli/batch_journal.h"
#include "fuzz_support.h"

using namespace tether::cli::batch;

namespace {

JournalIndex index(const std::vector<std::string>& chunks) {
  JournalIndex ix;
  for (const auto& c : chunks) ix.feed(c);
  ix.finish();
  return ix;
}

bool same(const JournalIndex& a, const JournalIndex& b, const std::vector<std::size_t>& indexes) {
  if (a.size() != b.size() || a.has_header() != b.has_header() || a.foreign() != b.foreign() ||
      a.valid_bytes() != b.valid_bytes() || a.bad_lines() != b.bad_lines() || a.empty_file() != b.empty_file())
    return false;
  for (std::size_t i : indexes) {
    const auto* x = a.find(i);
    const auto* y = b.find(i);
    if (!x != !y) return false;
    if (x && (x->hash != y->hash || x->ok != y->ok || x->offset != y->offset || x->length != y->length)) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::vector<std::string> chunks;
  std::string file;
  while (in.remaining_bytes() > 0) {
    chunks.push_back(in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 128)));
    file += chunks.back();
  }
  JournalIndex ix = index(chunks);
  JournalIndex whole = index({file});

  FUZZ_CHECK(ix.valid_bytes() <= file.size());
  FUZZ_CHECK(ix.valid_bytes() == 0 || file[ix.valid_bytes() - 1] == '\n');
  FUZZ_CHECK(ix.torn_tail() == (ix.valid_bytes() < file.size()));
  FUZZ_CHECK(ix.empty_file() == file.empty());

  // Every record the file holds, by index, checked against the index and written back.
  std::vector<std::size_t> indexes;
  std::size_t pos = 0;
  std::size_t line_count = 0;
  while (pos < ix.valid_bytes()) {
    std::size_t nl = file.find('\n', pos);
    std::string_view line(file.data() + pos, nl - pos);
    if (line_count++ > 0) {
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (auto r = parse_journal_line(line)) {
        indexes.push_back(r->index);
        const auto* e = ix.find(r->index);
        FUZZ_CHECK(e != nullptr);
        // The last record for an index wins: the entry is this one or a later one.
        FUZZ_CHECK(e->offset >= pos);
        auto again = parse_journal_line(std::string_view(file.data() + e->offset, e->length));
        FUZZ_CHECK(again && again->index == r->index && again->hash == e->hash && again->ok == e->ok);

        const auto* ok = r->result.contains("ok") ? &r->result["ok"] : nullptr;
        if (!ok || ok->is_boolean()) {  // journal_line takes `ok` from tether's own result
          Item item;
          item.index = r->index;
          item.id = "x";
          item.id_text = "\"x\"";  // as parse_item sets it: records write the id from it
          std::string written = journal_line(item, r->hash, ok && ok->get<bool>(), dump_record(r->result, item.id_raw));
          FUZZ_CHECK(!written.empty() && written.back() == '\n');
          written.pop_back();
          auto back = parse_journal_line(written);
          FUZZ_CHECK(back && back->index == r->index && back->hash == r->hash && back->result == r->result);
        }
      }
    }
    pos = nl + 1;
  }
  FUZZ_CHECK(same(ix, whole, indexes));
  return 0;
}
