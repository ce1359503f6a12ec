// Fake bridge: on a request with params {"n":N}, writes N notifications
// {"jsonrpc":"2.0","method":"tick","params":{"seq":i}} (i = 0..N-1) and then the response
// {"sent":N,"pipe":BYTES}, through a 64 KiB buffer so it floods as fast as the pipe takes it.
// Exits at EOF. Options: --exit: exit 0 right after the first response; --pipe BYTES: first ask
// the kernel for a stdout pipe of that size (F_SETPIPE_SZ; above /proc/sys/fs/pipe-max-size only
// with CAP_SYS_RESOURCE), so that much can be written without anyone reading. "pipe" in the
// response is the size obtained; --heavy: notifications that cost more to decode per byte,
// {"jsonrpc":"2.0","method":"tick","params":{"seq":i,"p":[{"k":0},{"k":1},{"k":2},{"k":3}]}}.
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cstdlib>

#include "fake_util.h"

namespace {

class Out {
 public:
  void add(std::string_view s) {
    buf_.append(s);
    if (buf_.size() >= 64 * 1024) flush();
  }
  void flush() {
    fake::write_all(1, buf_);
    buf_.clear();
  }

 private:
  std::string buf_;
};

}  // namespace

int main(int argc, char** argv) {
  bool exit_after_response = false, heavy = false;
  for (int i = 1; i < argc; ++i) {
    if (strcmp(argv[i], "--exit") == 0) exit_after_response = true;
    if (strcmp(argv[i], "--heavy") == 0) heavy = true;
    if (strcmp(argv[i], "--pipe") == 0 && i + 1 < argc) ::fcntl(1, F_SETPIPE_SZ, std::atoi(argv[++i]));
  }
  const int pipe_size = ::fcntl(1, F_GETPIPE_SZ);
  fake::count_spawn();
  fake::LineReader in;
  Out out;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    auto params = fake::field(line, "params");
    long long n = params ? fake::int_field(*params, "n", 0) : 0;
    for (long long i = 0; i < n; ++i) {
      out.add("{\"jsonrpc\":\"2.0\",\"method\":\"tick\",\"params\":{\"seq\":");
      out.add(std::to_string(i));
      out.add(heavy ? ",\"p\":[{\"k\":0},{\"k\":1},{\"k\":2},{\"k\":3}]}}\n" : "}}\n");
    }
    out.add(fake::result_line(*fake::field(line, "id"), "{\"sent\":" + std::to_string(n) + ",\"pipe\":" + std::to_string(pipe_size) + "}"));
    out.add("\n");
    out.flush();
    if (exit_after_response) ::_exit(0);
  }
  return 0;
}
