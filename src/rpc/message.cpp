#include "rpc/message.h"

#include "rpc/json_read.h"
#include "rpc/json_write.h"

namespace tether::rpc {

bool nested_deeper_than(std::string_view line, int max_depth) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (char c : line) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return false;
}

namespace {

// nlohmann's SAX interface hands number_float() the token as written, which the DOM forgets. The
// last occurrence of the key wins, as in the DOM.
class RawFloatFinder : public nlohmann::json_sax<json> {
 public:
  explicit RawFloatFinder(std::string_view key) : key_(key) {}
  std::string raw;

  bool null() override { return scalar(); }
  bool boolean(bool) override { return scalar(); }
  bool number_integer(number_integer_t) override { return scalar(); }
  bool number_unsigned(number_unsigned_t) override { return scalar(); }
  bool number_float(number_float_t, const string_t& text) override {
    if (depth_ == 1 && at_key_) raw = text;
    at_key_ = false;
    return true;
  }
  bool string(string_t&) override { return scalar(); }
  bool binary(binary_t&) override { return scalar(); }
  bool start_object(std::size_t) override { return open(); }
  bool key(string_t& k) override {
    at_key_ = depth_ == 1 && k == key_;
    return true;
  }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return open(); }
  bool end_array() override { return close(); }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool scalar() {
    if (depth_ == 1 && at_key_) raw.clear();  // another kind of value: nothing to keep
    at_key_ = false;
    return true;
  }
  bool open() {
    scalar();
    ++depth_;
    return true;
  }
  bool close() {
    --depth_;
    return true;
  }
  std::string_view key_;
  int depth_ = 0;
  bool at_key_ = false;
};

}  // namespace

std::string raw_float_text(std::string_view text, std::string_view key) {
  RawFloatFinder finder(key);  // builds no values: no depth to fear
  if (!json::sax_parse(text, &finder)) return {};
  return finder.raw;
}

std::optional<json> parse_line(std::string_view line) {
  if (auto value = fast_parse(line)) return value;
  // Not JSON, or a line the fast path leaves to nlohmann (a BOM, a number out of double's range).
  if (nested_deeper_than(line)) return std::nullopt;
  json value = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return std::nullopt;
  return value;
}

const json* member(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

std::string string_of(const json& obj, std::string_view key) {
  const json* v = member(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

Classified classify(const json& msg) {
  if (!msg.is_object()) return {MessageKind::invalid, "not a JSON object"};
  // "jsonrpc":"2.0" is required by the spec, but peers that omit it are common; a wrong value is not.
  if (auto v = msg.find("jsonrpc"); v != msg.end() && *v != "2.0")
    return {MessageKind::invalid, "jsonrpc is not \"2.0\""};
  auto method = msg.find("method");
  auto id = msg.find("id");
  bool has_id = id != msg.end();
  if (has_id && !(id->is_string() || id->is_number() || id->is_null()))
    return {MessageKind::invalid, "id is not a string, number or null"};
  if (method != msg.end()) {
    if (!method->is_string()) return {MessageKind::invalid, "method is not a string"};
    if (auto p = msg.find("params"); p != msg.end() && !(p->is_object() || p->is_array()))
      return {MessageKind::invalid, "params is not an object or array"};
    return {has_id ? MessageKind::request : MessageKind::notification, {}};
  }
  bool has_result = msg.contains("result");
  auto error = msg.find("error");
  bool has_error = error != msg.end();
  if (has_result == has_error) return {MessageKind::invalid, "neither a request nor a response"};
  if (!has_id) return {MessageKind::invalid, "response without an id"};
  if (has_error && !(error->is_object() && error->contains("code") && (*error)["code"].is_number_integer()))
    return {MessageKind::invalid, "error is not an object with an integer code"};
  return {MessageKind::response, {}};
}

std::optional<std::int64_t> our_id(const json& id) {
  if (id.is_number_integer()) return id.get<std::int64_t>();
  return std::nullopt;
}

std::string dump(const json& value) {
  std::string out;
  append_json(out, value);
  return out;
}

json make_request(std::int64_t id, std::string_view method, json params) {
  json msg = {{"jsonrpc", "2.0"}, {"id", id}, {"method", method}};
  if (!params.is_null()) msg["params"] = std::move(params);
  return msg;
}

RawParams raw_params(const json& params) { return {params.is_null() ? std::string() : dump(params)}; }

std::string request_line(std::int64_t id, std::string_view method, const RawParams& params) {
  // The members in nlohmann's (sorted) order: id, jsonrpc, method, params.
  std::string line;
  // The fixed members (45 bytes), a 20-digit id, the method's quotes and the newline the
  // connection appends: one allocation for the whole line.
  line.reserve(72 + method.size() + params.text.size());
  line += "{\"id\":";
  line += std::to_string(id);
  line += ",\"jsonrpc\":\"2.0\",\"method\":";
  append_json_string(line, method);
  if (!params.text.empty()) {
    line += ",\"params\":";
    line += params.text;
  }
  line += '}';
  return line;
}

json make_notification(std::string_view method, json params) {
  json msg = {{"jsonrpc", "2.0"}, {"method", method}};
  if (!params.is_null()) msg["params"] = std::move(params);
  return msg;
}

json make_result(const json& id, json result) {
  return {{"jsonrpc", "2.0"}, {"id", id}, {"result", std::move(result)}};
}

json make_error(const json& id, int code, std::string_view message, json data) {
  json err = {{"code", code}, {"message", message}};
  if (!data.is_null()) err["data"] = std::move(data);
  return {{"jsonrpc", "2.0"}, {"id", id}, {"error", std::move(err)}};
}

}  // namespace tether::rpc
