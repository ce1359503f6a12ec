// The demo agent's stdin and stdout (see agent.h). Output goes through one large buffer, flushed
// before the agent waits for input, so that a flood costs few system calls. Input is read as
// newline-delimited JSON; while a turn runs, what arrives is triaged: a session/cancel marks its
// session at once, answers to our requests are kept by id, and anything else waits for the turn
// to end.
#include "acp/demo/agent.h"

#include <errno.h>
#include <poll.h>
#include <unistd.h>

namespace tether::acp::demo {

void DemoAgent::flush() {
  std::size_t off = 0;
  while (off < out_.size()) {
    ssize_t n = ::write(out_fd_, out_.data() + off, out_.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // The client is gone: nothing more to do.
      ::_exit(0);
    }
    off += static_cast<std::size_t>(n);
  }
  out_.clear();
}

void DemoAgent::send(const json& msg) {
  out_ += dump(msg);
  out_ += '\n';
  if (out_.size() >= kFlushAt) flush();
}

void DemoAgent::respond(const json& id, json result) { send({{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}}); }

void DemoAgent::respond_error(const json& id, int code, const std::string& message) {
  send({{"jsonrpc", "2.0"}, {"id", id}, {"error", {{"code", code}, {"message", message}}}});
}

void DemoAgent::update(const std::string& sid, json u) {
  send({{"jsonrpc", "2.0"}, {"method", "session/update"}, {"params", {{"sessionId", sid}, {"update", std::move(u)}}}});
}

// The hot path: a text chunk formatted by hand.
void DemoAgent::chunk(const std::string& sid, std::string_view text, std::string_view kind) {
  out_ += R"({"jsonrpc":"2.0","method":"session/update","params":{"sessionId":")";
  append_escaped(out_, sid);
  out_ += R"(","update":{"sessionUpdate":")";
  out_ += kind;
  out_ += R"(","content":{"type":"text","text":")";
  append_escaped(out_, text);
  out_ += "\"}}}}\n";
  if (out_.size() >= kFlushAt) flush();
}

// Reads more input, waiting up to timeout_ms (-1: forever). False at EOF or on timeout.
bool DemoAgent::fill(int timeout_ms) {
  if (eof_) return false;
  // Whatever we said must be out before we wait. A mere look (timeout 0) does not flush: what a
  // turn says then leaves in one write, and the client wakes once for it.
  if (timeout_ms != 0) flush();
  pollfd p{in_, POLLIN, 0};
  for (;;) {
    int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return false;
    break;
  }
  char buf[kReadChunk];
  for (;;) {
    ssize_t n = ::read(in_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      eof_ = true;
      return false;
    }
    framer_.push(std::string_view(buf, static_cast<std::size_t>(n)));
    return true;
  }
}

// The next parsed message from what is buffered; nothing if no complete line is buffered.
std::optional<json> DemoAgent::buffered_message() {
  while (auto line = framer_.next()) {
    json msg = json::parse(*line, nullptr, false);
    if (msg.is_discarded() || !msg.is_object()) {
      send({{"jsonrpc", "2.0"}, {"id", nullptr}, {"error", {{"code", -32700}, {"message", "Parse error"}}}});
      continue;
    }
    return msg;
  }
  return std::nullopt;
}

std::optional<json> DemoAgent::next_message(int timeout_ms) {
  for (;;) {
    if (auto m = buffered_message()) return m;
    if (!fill(timeout_ms)) return std::nullopt;
  }
}

// During a turn: takes every complete message that has arrived, acting on cancels and responses
// at once and keeping everything else for after the turn. Waits (up to timeout_ms; -1: forever)
// only while nothing at all has been taken, and returns as soon as something was, so that the
// caller can check whether what it waits for (a response, a cancel) is among it. Invariant: it
// never blocks once it has taken a message; a caller whose response was in the batch just read
// would otherwise wait for input the client will not send before the turn goes on.
void DemoAgent::poll_input(int timeout_ms) {
  bool took = false, waited = false;
  for (;;) {
    if (auto m = buffered_message()) {
      triage(std::move(*m));
      took = true;
      continue;
    }
    // A bounded wait happens once (a torn line must not restart the caller's clock); an
    // unbounded one goes on until a whole message is in.
    bool may_wait = !took && timeout_ms != 0 && !(waited && timeout_ms > 0);
    if (!fill(may_wait ? timeout_ms : 0)) return;
    waited = waited || may_wait;
  }
}

void DemoAgent::triage(json msg) {
  auto method = msg.find("method");
  if (method == msg.end()) {
    if (msg.contains("id")) {
      std::string key = dump(msg["id"]);  // before the move: json's operator= takes its argument by value
      responses_[key] = std::move(msg);
    }
    return;
  }
  if (*method == "session/cancel" && !msg.contains("id")) {
    std::string sid = msg["params"].value("sessionId", "");
    if (auto it = sessions_.find(sid); it != sessions_.end()) it->second.cancelled = true;
    return;
  }
  deferred_.push_back(std::move(msg));
}

// Sends a request to the client and waits for its answer; nothing at EOF. Whatever else arrives
// meanwhile is triaged (a session/cancel marks the turn; the client still answers this request
// `cancelled`, as the spec requires, so the wait ends on the answer, never on the cancel).
std::optional<json> DemoAgent::request(const std::string& method, json params) {
  json id = next_id_++;
  send({{"jsonrpc", "2.0"}, {"id", id}, {"method", method}, {"params", std::move(params)}});
  std::string key = dump(id);
  for (;;) {
    if (auto it = responses_.find(key); it != responses_.end()) {
      json r = std::move(it->second);
      responses_.erase(it);
      return r;
    }
    if (eof_) return std::nullopt;
    poll_input(-1);
  }
}

}  // namespace tether::acp::demo
