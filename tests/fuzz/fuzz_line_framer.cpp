// Fuzz target: rpc::LineFramer, the splitter of every bridge's stdout. The input is a line cap and
// a byte stream cut into chunks of fuzzer-chosen sizes. The oracle is the framer's own promise:
// the lines it returns, the final line and the count of dropped lines do not depend on how the
// bytes were chunked (so the same stream is also fed in one piece and byte by byte); no line
// holds a newline or exceeds the cap, none is blank; what it buffers stays bounded by the cap.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "rpc/line_framer.h"

namespace {

struct Result {
  std::vector<std::string> lines;
  std::optional<std::string> last;
  std::uint64_t dropped = 0;
  bool operator==(const Result&) const = default;
};

void take_all(tether::rpc::LineFramer& f, std::size_t cap, Result& r) {
  while (auto line = f.next()) {
    FUZZ_CHECK(line->find('\n') == std::string_view::npos);
    FUZZ_CHECK(line->size() <= cap);
    FUZZ_CHECK(line->find_first_not_of(" \t") != std::string_view::npos);
    r.lines.emplace_back(*line);
  }
}

Result run(const std::vector<std::string>& chunks, std::size_t cap) {
  tether::rpc::LineFramer f(cap);
  Result r;
  for (const auto& chunk : chunks) {
    f.push(chunk);
    // A partial line never grows past the cap (+1 for a CR that may start a CRLF); complete lines
    // not taken yet come on top, so check after taking them.
    take_all(f, cap, r);
    FUZZ_CHECK(f.buffered() <= cap + 1);
  }
  r.last = f.finish();
  if (r.last) {
    FUZZ_CHECK(r.last->find('\n') == std::string::npos);
    FUZZ_CHECK(r.last->size() <= cap);
  }
  r.dropped = f.oversize_dropped();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  // Small caps make oversize lines (and the CR at the cap) common.
  const std::size_t cap = in.ConsumeIntegralInRange<std::size_t>(1, 80);
  std::vector<std::string> chunks;
  std::string whole;
  while (in.remaining_bytes() > 0) {
    auto len = in.ConsumeIntegralInRange<std::size_t>(0, 96);
    chunks.push_back(in.ConsumeBytesAsString(len));
    whole += chunks.back();
  }
  Result chunked = run(chunks, cap);
  FUZZ_CHECK(run({whole}, cap) == chunked);
  std::vector<std::string> bytes;
  for (char c : whole) bytes.emplace_back(1, c);
  FUZZ_CHECK(run(bytes, cap) == chunked);
  return 0;
}
