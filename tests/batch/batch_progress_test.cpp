// What `tether batch` tells a person, as plain values: the item count of an input (which must
// agree with what the reader yields, however the bytes are chunked), the recent completion rate,
// the progress line, the interrupted-run summary, shell quoting of the resume command, and ids
// given versus the line-number default. No processes, no sleeps: times are made up.
#include <doctest/doctest.h>
#include <signal.h>

#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cli/batch_input.h"
#include "cli/batch_progress.h"

using namespace tether::cli::batch;
using namespace std::chrono_literals;

namespace {

// What the front-end admits from `text`: LineReader's items that are in the shard.
std::uint64_t reader_items(const std::string& text, std::size_t max_line, Shard shard = {}) {
  LineReader r(max_line);
  std::uint64_t n = 0;
  r.push(text);
  while (auto l = r.next()) n += shard.contains(parse_item(*l).id_text);
  if (auto l = r.finish()) n += shard.contains(parse_item(*l).id_text);
  return n;
}

std::uint64_t counted(const std::string& text, std::size_t max_line, std::size_t chunk, Shard shard = {}) {
  ItemCounter c(max_line, shard);
  for (std::size_t i = 0; i < text.size(); i += chunk) c.feed(std::string_view(text).substr(i, chunk));
  c.finish();
  CHECK(c.finished());
  return c.count();
}

}  // namespace

TEST_CASE("the item count agrees with the reader: blanks, CR, oversize lines, a last line without newline") {
  const std::vector<std::string> inputs = {
      "",
      "a\nb\nc\n",
      "a\n\n \t\n\r\n \r\nb",
      "\r",
      " \r \n",           // a '\r' that is not last: not blank
      "\r\r\n",
      "xxxx\nxxxxx\nxxxx\r\nxxx\r\n",  // max_line 4: at the cap, over it, over it with its CR, at it with CR
      "     \n",          // a blank line over the cap is still an item (oversize)
      "yyyyyyy",          // oversize, no newline
      "ok\n   ",
      "ok\nzz\r",
  };
  for (const auto& in : inputs) {
    CAPTURE(in);
    for (std::size_t chunk : {1, 2, 3, 7, 100}) CHECK(counted(in, 4, chunk) == reader_items(in, 4));
  }
}

TEST_CASE("the item count agrees with the reader on random inputs, any chunking") {
  std::mt19937 rng(16);
  const char alphabet[] = {'a', ' ', '\t', '\r', '\n', '\n'};
  for (int round = 0; round < 400; ++round) {
    std::string in;
    std::size_t len = rng() % 40;
    for (std::size_t i = 0; i < len; ++i) in += alphabet[rng() % sizeof alphabet];
    CAPTURE(in);
    std::size_t max_line = 1 + rng() % 6;
    CHECK(counted(in, max_line, 1 + rng() % 9) == reader_items(in, max_line));
  }
}

TEST_CASE("with a shard filter the count is this shard's items (ids parsed, line numbers for the rest)") {
  std::string in;
  for (int i = 0; i < 60; ++i) {
    if (i % 3 == 0) in += "{\"id\":\"q" + std::to_string(i) + "\",\"prompt\":\"p\"}\n";
    else if (i % 3 == 1) in += "plain " + std::to_string(i) + "\n";
    else in += "\n";
  }
  std::uint64_t sum = 0;
  for (std::uint64_t k = 0; k < 4; ++k) {
    Shard shard{k, 4};
    std::uint64_t n = reader_items(in, 1024, shard);
    CHECK(counted(in, 1024, 5, shard) == n);
    sum += n;
  }
  CHECK(sum == 40);
}

TEST_CASE("throughput: completions per second, recent ones only, falling while nothing finishes") {
  tether::base::TimePoint t0{};
  Throughput t(3, 0s);
  t.start(t0);
  CHECK(!t.per_second(t0 + 5s));
  // Two bridges: items finish in pairs every 2 s, so 1 item/s whatever each one's latency.
  for (int i = 1; i <= 4; ++i) {
    t.completed(t0 + std::chrono::seconds(2 * i));
    t.completed(t0 + std::chrono::seconds(2 * i));
  }
  CHECK(*t.per_second(t0 + 8s) == doctest::Approx(1.0));  // the 4 since t0 + 4 s
  // It slows down: one item in 10 s.
  t.completed(t0 + 18s);
  CHECK(*t.per_second(t0 + 18s) == doctest::Approx(3.0 / 12));  // 8, 8, 18 since t0 + 6 s
  CHECK(*t.per_second(t0 + 28s) == doctest::Approx(3.0 / 22));

  Throughput few(20);
  few.start(t0);
  few.completed(t0 + 4s);
  CHECK(*few.per_second(t0 + 4s) == doctest::Approx(0.25));  // since the start
}

TEST_CASE("throughput: fast items are measured over the span, so a burst does not swing it") {
  tether::base::TimePoint t0{};
  Throughput t(3, 10s);
  t.start(t0);
  for (int i = 1; i <= 20; ++i) t.completed(t0 + std::chrono::seconds(i));
  CHECK(*t.per_second(t0 + 20s) == doctest::Approx(1.0));  // the 10 since t0 + 10 s
  for (int i = 0; i < 5; ++i) t.completed(t0 + 20s + 50ms);
  CHECK(*t.per_second(t0 + 20s + 50ms) == doctest::Approx(15.0 / 10.05));
  // Thousands a second: what it keeps stays bounded (one sample per 100 ms).
  Throughput fast(20, 10s);
  fast.start(t0);
  for (int i = 1; i <= 100000; ++i) fast.completed(t0 + std::chrono::microseconds(200 * i));
  CHECK(*fast.per_second(t0 + 20s) == doctest::Approx(5000).epsilon(0.02));
}

TEST_CASE("the progress line: the total and the time left once known; items from the journal said") {
  ProgressCounts c;
  c.done = 12;
  c.ok = 11;
  c.failed = 1;
  CHECK(progress_text(c) == "batch: 12 done, 11 ok, 1 failed, 0.0 items/s");
  c.rate = 2.0;
  CHECK(progress_text(c) == "batch: 12 done, 11 ok, 1 failed, 2.0 items/s");
  c.total = 100;
  c.to_run = 88;
  CHECK(progress_text(c) == "batch: 12/100 done, 11 ok, 1 failed, 2.0 items/s, ETA 44.0 s");
  c.from_journal = 10;
  c.to_run = 240;
  CHECK(progress_text(c) == "batch: 12/100 done (10 from the journal), 11 ok, 1 failed, 2.0 items/s, ETA 2m00s");
  c.total = 5;  // a file that grew after it was counted
  CHECK(progress_text(c).rfind("batch: 12/12 done", 0) == 0);
}

TEST_CASE("durations: seconds, minutes, hours; past 9999 h (or not a number) a cap, never negative") {
  CHECK(format_duration(44) == "44.0 s");
  CHECK(format_duration(120) == "2m00s");
  CHECK(format_duration(3 * 3600 + 5 * 60 + 9) == "3h05m");
  CHECK(format_duration(9999.0 * 3600) == "9999h00m");
  CHECK(format_duration(10000.0 * 3600) == ">9999h");
  CHECK(format_duration(3.6e9) == ">9999h");  // past 2^31 s an int cast went negative
  CHECK(format_duration(1e300) == ">9999h");
  CHECK(format_duration(std::numeric_limits<double>::infinity()) == ">9999h");
  CHECK(format_duration(std::numeric_limits<double>::quiet_NaN()) == ">9999h");
  CHECK(format_duration(-3) == "0.0 s");
}

TEST_CASE("the summary of a finished run: the rate counts only the items that ran") {
  CHECK(run_summary({.items = 100, .ok = 98, .failed = 2, .from_journal = 10, .seconds = 100}) ==
        "batch: 100 items, 98 ok, 2 failed (10 from the journal), in 1m40s, 0.9 items/s");
  CHECK(run_summary({.items = 1, .ok = 1, .from_journal = 1, .seconds = 0.5}) ==
        "batch: 1 item, 1 ok, 0 failed (1 from the journal), in 0.5 s");
  CHECK(run_summary({.items = 2, .failed = 2, .seconds = 2, .no_bridges = true}) ==
        "batch: 2 items, 0 ok, 2 failed, in 2.0 s, 1.0 items/s; no bridge left");
}

TEST_CASE("the summary of an interrupted run") {
  InterruptCounts c;
  c.signal = SIGINT;
  c.ok = 38;
  c.failed = 2;
  c.cancelled_running = 4;
  c.total = 100;
  CHECK(interrupt_summary(c) ==
        "interrupted by SIGINT: 40 of 100 items done (38 ok, 2 failed), 4 cancelled while running, 56 not started");
  c.total.reset();
  c.signal = SIGTERM;
  CHECK(interrupt_summary(c) ==
        "interrupted by SIGTERM: 40 items done (38 ok, 2 failed), 4 cancelled while running; the rest of the input was "
        "not started");
  InterruptCounts none{SIGINT, 0, 0, 0, 1};
  CHECK(interrupt_summary(none) == "interrupted by SIGINT: 0 of 1 item done (0 ok, 0 failed), 1 not started");
}

TEST_CASE("shell quoting of the resume command") {
  CHECK(shell_quote("batch") == "batch");
  CHECK(shell_quote("--journal=run/j.jsonl") == "--journal=run/j.jsonl");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("two words") == "'two words'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("$HOME*") == "'$HOME*'");
  CHECK(shell_quote("~x") == "'~x'");
  CHECK(shell_quote("a\nb's\x1b") == "$'a\\nb\\'s\\x1b'");
  CHECK(shell_command({"A=b", "x y"}) == "'A=b' 'x y'");
  CHECK(resume_command({"tether", "batch", "--journal", "j", "--", "my agent"}, "in put.jsonl") ==
        "tether batch --journal j -- 'my agent' < 'in put.jsonl'");
  CHECK(resume_command({"tether", "batch"}, "") == "tether batch");
}

TEST_CASE("ids: only an id the line gives is one; the line-number default is not registered as one") {
  Item plain = parse_item(InputLine{1, "hello", false});
  CHECK(!plain.id_given);
  CHECK(plain.id == 1);  // written back as before
  Item no_id = parse_item(InputLine{2, R"({"prompt":"p"})", false});
  CHECK(!no_id.id_given);
  CHECK(no_id.id == 2);
  for (const char* line : {R"({"id":1,"prompt":"p"})", R"({"id":"1","prompt":"p"})", R"({"id":1.0,"prompt":"p"})"}) {
    CAPTURE(line);
    CHECK(parse_item(InputLine{5, line, false}).id_given);
  }
  CHECK(!parse_item(InputLine{5, R"({"id":null,"prompt":"p"})", false}).id_given);
}
