// Fake bridge: on each request (id N), sends us a request of its own, "client/confirm", with the
// same id N (each direction has its own id space), waits for our response to it, and then answers
// our request N with {"clientSaid": <our result>}. Exits 0 at stdin EOF.
#include "fake_util.h"

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    auto id = *fake::field(line, "id");
    fake::write_line(1, "{\"jsonrpc\":\"2.0\",\"id\":" + id +
                            ",\"method\":\"client/confirm\",\"params\":{\"question\":\"proceed?\"}}");
    std::string answer;
    for (;;) {
      if (!in.next(answer)) return 0;
      if (!fake::method(answer) && fake::field(answer, "id") == id) break;  // our response
    }
    auto result = fake::field(answer, "result");
    auto error = fake::field(answer, "error");
    fake::write_line(1, fake::result_line(id, "{\"clientSaid\":" + (result ? *result : "null") +
                                                  ",\"clientError\":" + (error ? *error : "null") + "}"));
  }
  return 0;
}
