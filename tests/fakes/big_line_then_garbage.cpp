// Fake bridge: on each request, writes one 70 MiB line (a JSON-RPC notification holding a huge
// string), then 1,000 garbage lines, then the valid response (echo of the params), ended by
// "\r\n". The garbage, by i % 4:
//   0  text that is not JSON                               (counted as invalid_json: 250)
//   1  JSON-RPC with invalid UTF-8 inside a string          (invalid_json: 250)
//   2  JSON that is not JSON-RPC (4 kinds, in turn)         (not_jsonrpc: 250)
//   3  a response to an id nobody asked (number or string)  (unknown_responses: 250)
#include "fake_util.h"

namespace {

constexpr std::size_t kHuge = std::size_t{70} << 20;

std::string garbage(int i) {
  std::string n = std::to_string(i);
  switch (i % 4) {
    case 0: return "this is not json, line " + n;
    case 1: return "{\"jsonrpc\":\"2.0\",\"method\":\"bad\",\"params\":{\"s\":\"\xff\xfe\xc3\x28 " + n + "\"}}";
    case 2:
      switch ((i / 4) % 4) {
        case 0: return "{\"hello\":" + n + "}";
        case 1: return "[1,2," + n + "]";
        case 2: return "{\"jsonrpc\":\"1.0\",\"id\":1,\"result\":" + n + "}";
        default: return "{\"jsonrpc\":\"2.0\",\"id\":" + n + "}";
      }
    default:
      if ((i / 4) % 2) return "{\"jsonrpc\":\"2.0\",\"id\":\"nope-" + n + "\",\"result\":{}}";
      return "{\"jsonrpc\":\"2.0\",\"id\":" + std::to_string(1000000 + i) + ",\"result\":{}}";
  }
}

}  // namespace

int main() {
  fake::count_spawn();
  fake::LineReader in;
  std::string line;
  while (in.next(line)) {
    if (!fake::is_request(line)) continue;
    {
      std::string huge = "{\"jsonrpc\":\"2.0\",\"method\":\"huge\",\"params\":{\"s\":\"";
      huge.append(kHuge, 'h');
      huge += "\"}}\n";
      if (!fake::write_all(1, huge)) return 1;
    }
    std::string out;
    for (int i = 0; i < 1000; ++i) out += garbage(i) + "\n";
    auto id = fake::field(line, "id");
    auto params = fake::field(line, "params");
    out += fake::result_line(*id, params ? *params : "{}") + "\r\n";
    if (!fake::write_all(1, out)) return 1;
  }
  return 0;
}
