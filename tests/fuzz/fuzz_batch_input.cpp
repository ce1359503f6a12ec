// Fuzz target: `tether batch` input (cli/batch_input.h): LineReader over a stream cut into
// fuzzer-chosen chunks, parse_item on every line, duplicate ids, the shard hash and item_hash. The
// oracle, besides not crashing: the lines and their numbers do not depend on the chunking (the
// same stream is read again in one piece); line numbers rise; an oversize line has no text and a
// line is never longer than the cap; an item without error has a string or number id whose
// canonical text is its dump (or, for an id read as a double, the text as written), and a prompt;
// every item (even a bad one) has an id text. Deep nesting is the parser's to refuse (512 levels).
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cli/batch_input.h"
#include "fuzz_support.h"

using namespace tether::cli::batch;

namespace {

struct Read {
  std::size_t line_no;
  std::string text;
  bool oversize;
  bool operator==(const Read&) const = default;
};

std::vector<Read> read(const std::vector<std::string>& chunks, std::size_t cap) {
  LineReader reader(cap);
  std::vector<Read> out;
  auto take = [&](const InputLine& l) {
    FUZZ_CHECK(out.empty() || l.line_no > out.back().line_no);
    FUZZ_CHECK(!l.oversize || l.text.empty());
    FUZZ_CHECK(l.text.size() <= cap);
    FUZZ_CHECK(l.text.find('\n') == std::string::npos);
    out.push_back({l.line_no, l.text, l.oversize});
  };
  for (const auto& c : chunks) {
    reader.push(c);
    while (auto l = reader.next()) take(*l);
  }
  while (auto l = reader.finish()) take(*l);
  FUZZ_CHECK(!reader.finish());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  const std::size_t cap = in.ConsumeBool() ? in.ConsumeIntegralInRange<std::size_t>(1, 64) : std::size_t{1} << 20;
  const std::string spec = in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 8));
  std::vector<std::string> chunks;
  std::string whole;
  while (in.remaining_bytes() > 0) {
    chunks.push_back(in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(0, 128)));
    whole += chunks.back();
  }
  auto lines = read(chunks, cap);
  FUZZ_CHECK(read({whole}, cap) == lines);

  auto shard = parse_shard(spec);
  if (shard) FUZZ_CHECK(shard->n >= 1 && shard->k < shard->n);
  IdRegistry ids;
  for (const auto& l : lines) {
    Item item = parse_item(InputLine{l.line_no, l.text, l.oversize});
    FUZZ_CHECK(item.index == l.line_no);
    FUZZ_CHECK(!item.id_text.empty());
    FUZZ_CHECK(item.id.is_string() || item.id.is_number());
    if (l.oversize) FUZZ_CHECK(item.error.has_value());
    if (!item.error) {
      // An id nlohmann reads as a double keeps the text it was written with (id_raw).
      FUZZ_CHECK(item.id_text == (item.id_raw.empty() ? dump(item.id) : item.id_raw));
      if (!item.id_raw.empty()) FUZZ_CHECK(item.id.is_number_float());
      FUZZ_CHECK(item.meta.is_null() || (item.meta.is_object() && !item.meta.empty()));
      (void)ids.insert(item.id_text);
    }
    (void)item_hash(item);
    if (shard) (void)shard->contains(item.id_text);
  }
  return 0;
}
