// The pure parts of `tether batch`: input lines and items, duplicate ids, the shard hash, the
// journal index (torn last line included) and the order buffer. No processes, no sleeps.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "cli/batch_input.h"
#include "cli/batch_journal.h"
#include "cli/batch_order.h"
#include "support/mutate.h"

using namespace tether::cli::batch;

namespace {

std::vector<InputLine> split(const std::string& text, std::size_t max_line = 1024, std::size_t chunk = 0) {
  LineReader r(max_line);
  std::vector<InputLine> out;
  if (chunk == 0) chunk = text.size() + 1;
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    r.push(std::string_view(text).substr(i, chunk));
    while (auto l = r.next()) out.push_back(*l);
  }
  while (auto l = r.next()) out.push_back(*l);
  if (auto l = r.finish()) out.push_back(*l);
  CHECK(!r.finish());
  return out;
}

Item item_of(const std::string& text, std::size_t line_no = 1) { return parse_item(InputLine{line_no, text, false}); }

// read_common_item's promise: whatever it reads, the general way reads the same, field by field
// (the id's JSON type included: an unsigned number stays unsigned). True when it read the line.
bool common_read_agrees(const std::string& text) {
  const InputLine line{5, text, false};
  auto fast = read_common_item(line);
  if (!fast) return false;
  INFO("line: " << text);
  Item full = parse_item_in_full(line);
  CHECK_FALSE(full.error);
  CHECK(fast->index == full.index);
  CHECK(fast->id == full.id);
  CHECK(fast->id.type() == full.id.type());
  CHECK(fast->id_given == full.id_given);
  CHECK(fast->id_raw == full.id_raw);
  CHECK(fast->id_text == full.id_text);
  CHECK(fast->prompt == full.prompt);
  CHECK(fast->attachments == full.attachments);
  CHECK(fast->meta == full.meta);
  CHECK_FALSE(fast->error);
  CHECK(item_hash(*fast) == item_hash(full));
  return true;
}

}  // namespace

TEST_CASE("the common item line is read without a parser, as the general way reads it") {
  const InputLine plain{4, R"({"prompt":"hi 4"})", false};
  auto a = read_common_item(plain);
  REQUIRE(a);
  CHECK(a->prompt == "hi 4");
  CHECK(a->id == 4);
  CHECK_FALSE(a->id_given);
  for (const char* text : {R"({"prompt":"hi"})", R"({"id":"q1","prompt":"caf\u00e9"})", R"({"id":"q1","prompt":"x"})",
                           R"({"prompt":"x","id":7})", R"({"id":0,"prompt":""})", R"({"id":123456789012345678,"prompt":"p"})",
                           "{\"id\":\"\xc3\xa9\",\"prompt\":\"\xf0\x9f\x98\x80 \x7f\"}"}) {
    INFO(text);
    CHECK(common_read_agrees(text) == (std::string(text).find('\\') == std::string::npos));
  }
  // The general way's: spaces, escapes, other members, other id forms, duplicates, bad UTF-8.
  for (const char* text : {R"( {"prompt":"x"})", R"({"prompt": "x"})", R"({"prompt":"x"} )", R"({"prompt":"a\"b"})",
                           R"({"prompt":"x","lang":"fr"})", R"({"id":-1,"prompt":"x"})", R"({"id":1.0,"prompt":"x"})",
                           R"({"id":01,"prompt":"x"})", R"({"id":1234567890123456789,"prompt":"x"})",
                           R"({"prompt":"x","prompt":"y"})", R"({"id":1,"id":2,"prompt":"x"})", R"({"id":1})",
                           R"({"prompt":1})", R"({"prompt":"x","attachments":[]})", "{\"prompt\":\"\xc3\"}",
                           "{\"prompt\":\"\xed\xa0\x80\"}", "{\"prompt\":\"a\tb\"}", R"({"prompt":"x",})", "{}",
                           R"({"id":"1","prompt":"x"}})"}) {
    INFO(text);
    CHECK_FALSE(read_common_item(InputLine{1, text, false}));
  }
  CHECK_FALSE(read_common_item(InputLine{1, "", true}));  // oversize
}

TEST_CASE("the common item read agrees with the general way on every single-byte edit and on mutations") {
  const std::vector<std::string> seeds = {R"({"prompt":"hi 1"})", R"({"id":"q-7","prompt":"say é"})",
                                          R"({"prompt":"p","id":42})", R"({"id":0,"prompt":""})",
                                          "{\"id\":\"\xc3\xa9\",\"prompt\":\"\xe2\x82\xac 9\"}"};
  const std::vector<std::string> sequences = {"\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xef\xbf\xbf",
                                              "\xf0\x9f\x98\x80", "\\\"", "\",\"id\":1", "\",\"x\":\"",
                                              "1e3", ".5", "-", " "};
  int read = 0, lines = 0;
  for (const auto& seed : seeds) {
    for (const auto& s : tether::test::byte_edits(seed, sequences)) {
      read += common_read_agrees(s);
      ++lines;
    }
  }
  tether::test::Mutator mutator(seeds, "{}[]\",:.\\-0123456789idprompt x\x01\xc3\xa9\xff", 20261207);
  for (int round = 0; round < 20000; ++round) {
    read += common_read_agrees(mutator.next_line(1));
    ++lines;
  }
  MESSAGE(read << " of " << lines << " edited lines read the common way");
  CHECK(read > 2000);
}

TEST_CASE("lines are numbered, blank ones counted and skipped, CRLF and a last line without newline handled") {
  for (std::size_t chunk : {0, 1, 2, 5}) {
    auto lines = split("a\n\n  \t\nb\r\n\r\nc", 1024, chunk);
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].line_no == 1);
    CHECK(lines[0].text == "a");
    CHECK(lines[1].line_no == 4);
    CHECK(lines[1].text == "b");
    CHECK(lines[2].line_no == 6);
    CHECK(lines[2].text == "c");
  }
}

TEST_CASE("an oversize line is reported with its number, never buffered whole, and the next line survives") {
  for (std::size_t chunk : {0, 3, 7}) {
    std::string big(50, 'x');
    auto lines = split("short\n" + big + "\nafter\n" + big, 10, chunk);
    REQUIRE(lines.size() == 4);
    CHECK(lines[1].line_no == 2);
    CHECK(lines[1].oversize);
    CHECK(lines[1].text.empty());
    CHECK(lines[2].text == "after");
    CHECK(lines[3].line_no == 4);
    CHECK(lines[3].oversize);
  }
  LineReader r(10);
  r.push(std::string(1000, 'y'));
  CHECK(!r.next());
  CHECK(r.buffered() == 0);
}

TEST_CASE("items: objects, plain text, numeric and string ids, meta, defaults") {
  Item a = item_of(R"({"id":"q1","prompt":"hello","lang":"fr","n":[1,2]})", 3);
  CHECK(!a.error);
  CHECK(a.index == 3);
  CHECK(a.id == "q1");
  CHECK(a.id_text == "\"q1\"");
  CHECK(a.prompt == "hello");
  CHECK(dump(a.meta) == R"({"lang":"fr","n":[1,2]})");

  Item b = item_of(R"({"prompt":"no id"})", 7);
  CHECK(b.id == 7);
  CHECK(b.id_text == "7");
  CHECK(b.meta.is_null());

  Item c = item_of(R"({"id":42,"prompt":"p"})");
  CHECK(c.id == 42);
  CHECK(c.id_text == "42");

  Item text = item_of("just some text, {not json}", 2);
  CHECK(!text.error);
  CHECK(text.prompt == "just some text, {not json}");
  CHECK(text.id == 2);

  // A JSON value that is not an object is text too.
  CHECK(item_of(R"("quoted")").prompt == R"("quoted")");
  CHECK(item_of("[1,2]").prompt == "[1,2]");
  CHECK(item_of("12").prompt == "12");
}

TEST_CASE("bad input: broken JSON object, no string prompt, bad id type, oversize") {
  Item broken = item_of(R"({"prompt":"unterminated)", 5);
  REQUIRE(broken.error);
  CHECK(broken.error->find("line 5") != std::string::npos);
  CHECK(broken.id == 5);

  Item no_prompt = item_of(R"({"id":"x","text":"hi"})");
  REQUIRE(no_prompt.error);
  CHECK(no_prompt.id == "x");  // the record still carries the id it was given

  CHECK(item_of(R"({"prompt":42})").error);
  CHECK(item_of(R"({"id":null,"prompt":"p"})").error);
  CHECK(item_of(R"({"id":[1],"prompt":"p"})").error);
  CHECK(item_of(R"({"id":true,"prompt":"p"})").error);

  Item big = parse_item(InputLine{9, "", true});
  REQUIRE(big.error);
  CHECK(big.id == 9);
}

TEST_CASE("duplicate ids: first wins; 1 and \"1\" differ") {
  IdRegistry ids;
  CHECK(ids.insert(item_of(R"({"id":"a","prompt":"p"})").id_text));
  CHECK(!ids.insert(item_of(R"({"id":"a","prompt":"q"})").id_text));
  CHECK(ids.insert(item_of(R"({"id":1,"prompt":"p"})").id_text));
  CHECK(ids.insert(item_of(R"({"id":"1","prompt":"p"})").id_text));
  // A default id collides with an explicit numeric id equal to another line's number.
  CHECK(!ids.insert(item_of("plain", 1).id_text));
}

TEST_CASE("FNV-1a 64 and shards are stable and partition the ids") {
  CHECK(fnv1a64("") == 0xcbf29ce484222325ULL);
  CHECK(fnv1a64("a") == 0xaf63dc4c8601ec8cULL);
  CHECK(fnv1a64("foobar") == 0x85944171f73967e8ULL);
  CHECK(fnv1a64("bar", fnv1a64("foo")) == 0x85944171f73967e8ULL);

  // A journal written by an earlier tether still matches: the hash is over id NUL prompt NUL meta
  // (NUL attachment)..., whatever way it is computed.
  Item it = item_of(R"({"id":"x","prompt":"the prompt","attachments":["a.txt","b.txt"],"tag":{"k":1}})");
  REQUIRE_FALSE(it.error.has_value());
  using namespace std::string_literals;
  CHECK(item_hash(it) == fnv1a64("\"x\"\0the prompt\0{\"tag\":{\"k\":1}}\0a.txt\0b.txt"s));
  CHECK(item_hash(item_of("plain", 3)) == fnv1a64("3\0plain\0"s));

  CHECK(!parse_shard("1/1"));
  CHECK(!parse_shard("4/4"));
  CHECK(!parse_shard("0/0"));
  CHECK(!parse_shard("a/4"));
  CHECK(!parse_shard("1"));
  CHECK(!parse_shard("-1/4"));
  auto s = parse_shard("3/4");
  REQUIRE(s);
  CHECK(s->k == 3);
  CHECK(s->n == 4);

  std::vector<int> per_shard(4);
  for (int i = 1; i <= 1000; ++i) {
    std::string id = std::to_string(i);
    int hits = 0;
    for (std::uint64_t k = 0; k < 4; ++k) {
      if (Shard{k, 4}.contains(id)) {
        ++hits;
        ++per_shard[k];
      }
    }
    CHECK(hits == 1);
  }
  for (int n : per_shard) CHECK(n > 150);  // roughly even
  CHECK(Shard{}.contains("anything"));
}

TEST_CASE("the item hash changes with the id, the prompt and the meta") {
  Item a = item_of(R"({"id":"x","prompt":"p"})");
  CHECK(item_hash(a) == item_hash(item_of(R"({"prompt":"p","id":"x"})")));
  CHECK(item_hash(a) != item_hash(item_of(R"({"id":"y","prompt":"p"})")));
  CHECK(item_hash(a) != item_hash(item_of(R"({"id":"x","prompt":"q"})")));
  CHECK(item_hash(a) != item_hash(item_of(R"({"id":"x","prompt":"p","m":1})")));
}

namespace {

std::string header() { return std::string(kJournalHeader) + "\n"; }

std::string record_for(std::size_t index, const std::string& prompt, bool ok) {
  Item it = item_of(prompt, index);
  ojson result = ojson::object();
  result["id"] = it.id;
  result["index"] = index;
  result["ok"] = ok;
  result["text"] = "answer to " + prompt;
  return journal_line(it, item_hash(it), ok, dump_record(result, it.id_raw));
}

JournalIndex index_of(const std::string& bytes, std::size_t chunk = 0) {
  JournalIndex idx;
  if (chunk == 0) chunk = bytes.size() + 1;
  for (std::size_t i = 0; i < bytes.size(); i += chunk) idx.feed(std::string_view(bytes).substr(i, chunk));
  idx.finish();
  return idx;
}

}  // namespace

TEST_CASE("journal: records are indexed with their offsets; the last record for an index wins") {
  std::string text = header() + record_for(1, "one", true) + record_for(2, "two", false) + record_for(2, "two", true);
  for (std::size_t chunk : {0, 1, 13}) {
    JournalIndex idx = index_of(text, chunk);
    CHECK(idx.has_header());
    CHECK(!idx.foreign());
    CHECK(!idx.torn_tail());
    CHECK(idx.size() == 2);
    const auto* e1 = idx.find(1);
    REQUIRE(e1);
    CHECK(e1->ok);
    CHECK(e1->hash == item_hash(item_of("one", 1)));
    auto line = text.substr(e1->offset, e1->length);
    auto rec = parse_journal_line(line);
    REQUIRE(rec);
    CHECK(rec->result["text"] == "answer to one");
    const auto* e2 = idx.find(2);
    REQUIRE(e2);
    CHECK(e2->ok);
    CHECK(!idx.find(3));
  }
}

TEST_CASE("journal: a truncated last line is ignored and marked for cutting off") {
  std::string good = header() + record_for(1, "one", true);
  std::string torn = record_for(2, "two", true);
  torn.resize(torn.size() / 2);
  JournalIndex idx = index_of(good + torn);
  CHECK(idx.size() == 1);
  CHECK(idx.torn_tail());
  CHECK(idx.valid_bytes() == good.size());
  CHECK(!idx.foreign());

  // A complete but malformed line in the middle costs that line only.
  JournalIndex mid = index_of(header() + "{garbage\n" + record_for(3, "three", true));
  CHECK(mid.bad_lines() == 1);
  CHECK(mid.find(3));
  CHECK(!mid.torn_tail());
}

TEST_CASE("journal: empty, torn header, and foreign files") {
  JournalIndex empty = index_of("");
  CHECK(empty.empty_file());
  CHECK(!empty.has_header());
  CHECK(!empty.foreign());

  JournalIndex torn_header = index_of(std::string(kJournalHeader.substr(0, 5)));
  CHECK(!torn_header.foreign());
  CHECK(torn_header.torn_tail());
  CHECK(torn_header.valid_bytes() == 0);

  CHECK(index_of("hello world\n" + record_for(1, "x", true)).foreign());
  CHECK(index_of("not a journal").foreign());
}

TEST_CASE("journal lines round-trip the result byte for byte") {
  Item it = item_of(R"({"id":"k","prompt":"p","tag":"t"})", 4);
  ojson result = ojson::object();
  result["id"] = it.id;
  result["index"] = 4;
  result["ok"] = true;
  result["text"] = "multi\nline \"quoted\" \xc3\xa9";
  result["meta"] = it.meta;
  std::string line = journal_line(it, 77, true, dump_record(result, it.id_raw));
  REQUIRE(line.back() == '\n');
  auto rec = parse_journal_line(std::string_view(line).substr(0, line.size() - 1));
  REQUIRE(rec);
  CHECK(rec->index == 4);
  CHECK(rec->hash == 77);
  CHECK(rec->ok);
  CHECK(dump(rec->result) == dump(result));
  CHECK(!parse_journal_line(R"({"index":1,"hash":"zz","ok":true,"result":{}})"));
  CHECK(!parse_journal_line(R"({"index":-1,"hash":"0000000000000001","ok":true,"result":{}})"));
}

TEST_CASE("order buffer: input order whatever the completion order; window counts what is not written") {
  OrderBuffer ob;
  std::vector<std::uint64_t> seq;
  for (int i = 0; i < 5; ++i) seq.push_back(ob.admit());
  CHECK(ob.window() == 5);
  ob.put(2, "c");
  ob.put(1, "b");
  CHECK(ob.take().empty());
  CHECK(ob.held() == 2);
  ob.put(0, "a");
  CHECK(ob.take() == std::vector<std::string>{"a", "b", "c"});
  CHECK(ob.window() == 2);
  ob.put(4, "e");
  CHECK(ob.take().empty());
  ob.put(3, "d");
  CHECK(ob.take() == std::vector<std::string>{"d", "e"});
  CHECK(ob.window() == 0);
  CHECK(ob.taken() == 5);
}

TEST_CASE("order buffer, unordered: results leave as they come") {
  OrderBuffer ob(true);
  for (int i = 0; i < 3; ++i) ob.admit();
  ob.put(2, "c");
  CHECK(ob.take() == std::vector<std::string>{"c"});
  CHECK(ob.window() == 2);
  ob.put(0, "a");
  CHECK(ob.take() == std::vector<std::string>{"a"});
  ob.put(1, "b");
  CHECK(ob.take() == std::vector<std::string>{"b"});
  CHECK(ob.window() == 0);
}

TEST_CASE("nesting: an object deeper than 512 levels is bad input before it is parsed; 512 is fine") {
  auto nested = [](std::size_t depth) {  // the item object is one level, meta's value the rest
    return "{\"prompt\":\"p\",\"meta\":" + std::string(depth - 1, '[') + std::string(depth - 1, ']') + "}";
  };
  Item ok = item_of(nested(512));
  CHECK(!ok.error);
  CHECK(ok.meta.is_object());
  Item deep = item_of(nested(513));
  REQUIRE(deep.error);
  CHECK(deep.error->find("nested deeper than 512") != std::string::npos);
  Item very = item_of(nested(100000));
  REQUIRE(very.error);
  // Brackets inside strings do not count.
  Item text = item_of("{\"prompt\":\"" + std::string(2000, '[') + "\"}");
  CHECK(!text.error);
}

TEST_CASE("number ids keep the text they were written with when a double would change it") {
  Item big = item_of(R"({"id":12345678901234567890123,"prompt":"p"})");
  CHECK(!big.error);
  CHECK(big.id_raw == "12345678901234567890123");
  CHECK(big.id_text == "12345678901234567890123");
  Item other = item_of(R"({"id":12345678901234567890124,"prompt":"p"})");
  CHECK(other.id_text != big.id_text);  // not duplicates of each other
  CHECK(item_of(R"({"id":1.50,"prompt":"p"})").id_raw == "1.50");
  CHECK(item_of(R"({"id":1e2,"prompt":"p"})").id_raw == "1e2");
  // Integers that fit are printed back the same: nothing to keep.
  CHECK(item_of(R"({"id":18446744073709551615,"prompt":"p"})").id_raw.empty());
  CHECK(item_of(R"({"id":-9223372036854775808,"prompt":"p"})").id_raw.empty());
  // Only the top-level id; the last one wins, as in the parsed object.
  CHECK(item_of(R"({"x":{"id":1.5},"prompt":"p"})").id_raw.empty());
  CHECK(item_of(R"({"id":2.5,"id":3,"prompt":"p"})").id_raw.empty());
  CHECK(item_of(R"({"id":3,"id":2.50,"prompt":"p"})").id_raw == "2.50");

  ojson r = ojson::object();
  r["id"] = big.id;
  r["index"] = 1;
  r["result"] = ojson::object({{"id", big.id}, {"ok", true}});
  r["meta"] = ojson::object({{"id", 1.5}});
  CHECK(dump_record(r, big.id_raw) ==
        R"({"id":12345678901234567890123,"index":1,"result":{"id":12345678901234567890123,"ok":true},"meta":{"id":1.5}})");
  CHECK(dump_record(r, "") == dump(r));

  // Through the journal and back.
  ojson result = ojson::object();
  result["id"] = big.id;
  result["ok"] = true;
  std::string line = journal_line(big, 5, true, dump_record(result, big.id_raw));
  CHECK(line.find("\"id\":12345678901234567890123,") != std::string::npos);
  auto rec = parse_journal_line(std::string_view(line).substr(0, line.size() - 1));
  REQUIRE(rec);
  CHECK(rec->id_raw == "12345678901234567890123");
  CHECK(dump_record(rec->result, rec->id_raw) == R"({"id":12345678901234567890123,"ok":true})");
}

TEST_CASE("journal: a line nested deeper than any record of ours is not a record; it costs that line") {
  std::string deep = "{\"index\":2,\"hash\":\"0000000000000001\",\"ok\":true,\"result\":{\"m\":" + std::string(600, '[') +
                     std::string(600, ']') + "}}";
  CHECK(!parse_journal_line(deep));
  JournalIndex idx = index_of(header() + deep + "\n" + record_for(3, "three", true));
  CHECK(idx.bad_lines() == 1);
  CHECK(idx.find(3));
}
