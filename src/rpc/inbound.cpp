#include "rpc/inbound.h"

#include "rpc/json_read.h"

namespace tether::rpc {
namespace {

thread_local std::vector<Event>* t_batch = nullptr;
thread_local const EventQueue* t_batch_queue = nullptr;

}  // namespace

LineRoute route_line(std::string_view line, bool (*plain)(std::string_view)) {
  if (plain && plain(line)) return LineRoute::notification;
  // Without the word, no "method" member (or one spelled with escapes, which the long way reads):
  // a response, most likely, which is read the long way (or by read_response) anyway.
  if (line.find("\"method\"") == std::string_view::npos) return LineRoute::other;
  Field f[] = {Field("jsonrpc"), Field("method"), Field("id"), Field("params")};
  auto& [rpc, method, id, params] = f;
  if (!scan_fields(line, f)) return LineRoute::other;
  for (const Field& each : f)
    if (each.seen > 1) return LineRoute::other;
  using T = Field::Type;
  if (method.type != T::string || (rpc.seen && (rpc.type != T::string || rpc.text != "2.0"))) return LineRoute::other;
  if (params.seen && params.type != T::object && params.type != T::array) return LineRoute::other;
  if (id.seen && !(id.type == T::string || id.type == T::null || (id.type == T::number && is_integer_token(id.text))))
    return LineRoute::other;  // a float id is kept as written (RawIds): the long way
  return id.seen ? LineRoute::request : LineRoute::notification;
}

BatchScope::BatchScope(const EventQueue* q, std::vector<Event>& batch) {
  t_batch = &batch;
  t_batch_queue = q;
}

BatchScope::~BatchScope() {
  t_batch = nullptr;
  t_batch_queue = nullptr;
}

void deliver(EventQueue* q, Event ev) {
  if (t_batch && t_batch_queue == q) t_batch->push_back(std::move(ev));
  else q->push(std::move(ev));
}

}  // namespace tether::rpc
