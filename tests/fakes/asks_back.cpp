// Fake bridge: on each request (id N), sends us a request of its own, "client/confirm", with the
// same id N (each direction has its own id space), waits for our response to it, and then answers
// our request N with {"clientSaid": <our result>}. Exits 0 at stdin EOF.
// With --id TEXT, its own request carries the id TEXT as written instead (a number text such as
// 12345678901234567890123), the first response after it is taken as ours whatever its id, and
// the answer also says how that id came back: {"clientSaid":…,"clientError":…,"echoedId":"…"}.
#include <cstring>

#include "fake_util.h"

int main(int argc, char** argv) {
  std::optional<std::string> own_id;
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--id") == 0) own_id = argv[++i];
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    auto id = *fake::field(line, "id");
    const std::string asked = own_id ? *own_id : id;
    fake::write_line(1, "{\"jsonrpc\":\"2.0\",\"id\":" + asked +
                            ",\"method\":\"client/confirm\",\"params\":{\"question\":\"proceed?\"}}");
    std::string answer;
    for (;;) {
      if (!in.next(answer)) return 0;
      if (!fake::method(answer) && (own_id || fake::field(answer, "id") == id)) break;  // our response
    }
    auto result = fake::field(answer, "result");
    auto error = fake::field(answer, "error");
    std::string extra = own_id ? ",\"echoedId\":\"" + fake::field(answer, "id").value_or("") + "\"" : "";
    fake::write_line(1, fake::result_line(id, "{\"clientSaid\":" + (result ? *result : "null") +
                                                  ",\"clientError\":" + (error ? *error : "null") + extra + "}"));
  }
  return 0;
}
