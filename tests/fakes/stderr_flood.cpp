// Fake bridge: from its first request on, writes 100 MiB to stderr in 1 MiB writes, checking stdin
// between writes and answering every request that arrived with {"flooded":BYTES_SO_FAR}. It runs
// in one thread on purpose: if the reader ever stops draining stderr, the flood blocks in write()
// and no request is answered any more. After the flood it writes a trailer of 200 lines
// "trailer NNNN" and goes on answering until stdin EOF.
//
// The filler is 'x' with a '\n' at every 128th byte (offset % 128 == 127 within each 1 MiB write);
// tests rebuild the expected last 4 KiB from that.
#include <poll.h>

#include <cstdio>

#include "fake_util.h"

namespace {

constexpr std::size_t kChunk = 1 << 20;
constexpr std::size_t kChunks = 100;

void answer(const std::string& line, std::size_t flooded) {
  if (!fake::is_request(line)) return;
  auto id = fake::field(line, "id");
  fake::write_line(1, fake::result_line(*id, "{\"flooded\":" + std::to_string(flooded) + "}"));
}

}  // namespace

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  // Wait for the first request, answer it, then flood.
  for (;;) {
    if (!in.next(line)) return 0;
    if (fake::is_request(line)) break;
  }
  answer(line, 0);

  std::string chunk(kChunk, 'x');
  for (std::size_t i = 127; i < kChunk; i += 128) chunk[i] = '\n';
  std::size_t flooded = 0;
  for (std::size_t c = 0; c < kChunks; ++c) {
    if (!fake::write_all(2, chunk)) return 1;
    flooded += chunk.size();
    pollfd p{0, POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) {
      if (!in.fill()) return 0;
      while (auto l = in.take()) answer(*l, flooded);
    }
  }
  std::string trailer;
  for (int i = 0; i < 200; ++i) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "trailer %04d\n", i);
    trailer += buf;
  }
  fake::write_all(2, trailer);
  flooded += trailer.size();
  while (in.next(line)) answer(line, flooded);
  return 0;
}
