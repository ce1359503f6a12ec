#include "cli/batch_input.h"

#include <charconv>

#include "rpc/message.h"

namespace tether::cli::batch {
namespace {

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; }

}  // namespace

void LineReader::push(std::string_view bytes) {
  // Drop what was consumed before growing, so the buffer holds at most one partial line plus the
  // complete lines not taken yet.
  if (start_ > 0 && (start_ == buf_.size() || start_ > 64 * 1024)) {
    buf_.erase(0, start_);
    start_ = 0;
  }
  buf_.append(bytes);
}

std::optional<InputLine> LineReader::take(std::string_view raw, bool oversize) {
  ++line_no_;
  if (oversize) return InputLine{line_no_, std::string(), true};
  if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
  if (is_blank(raw)) return std::nullopt;
  return InputLine{line_no_, std::string(raw), false};
}

std::optional<InputLine> LineReader::next() {
  for (;;) {
    std::string_view view(buf_);
    view.remove_prefix(start_);
    auto nl = view.find('\n');
    if (discarding_) {
      if (nl == std::string_view::npos) {
        start_ = buf_.size();  // still inside the oversize line
        return std::nullopt;
      }
      start_ += nl + 1;
      discarding_ = false;
      return take({}, true);
    }
    if (nl == std::string_view::npos) {
      if (view.size() > max_line_) {
        discarding_ = true;  // reported when its newline (or the end of input) comes
        start_ = buf_.size();
      }
      return std::nullopt;
    }
    std::string_view raw = view.substr(0, nl);
    start_ += nl + 1;
    auto line = raw.size() > max_line_ ? take({}, true) : take(raw, false);
    if (line) return line;
  }
}

std::optional<InputLine> LineReader::finish() {
  if (finished_) return std::nullopt;
  finished_ = true;
  if (discarding_) {
    discarding_ = false;
    start_ = buf_.size();
    return take({}, true);
  }
  std::string_view rest(buf_);
  rest.remove_prefix(start_);
  start_ = buf_.size();
  if (rest.empty()) return std::nullopt;
  return take(rest, rest.size() > max_line_);
}

std::string dump(const ojson& value) {
  return value.dump(-1, ' ', false, ojson::error_handler_t::replace);
}

Item parse_item(const InputLine& line) {
  Item item;
  item.index = line.line_no;
  item.id = line.line_no;
  item.id_text = std::to_string(line.line_no);
  if (line.oversize) {
    item.error = "input line " + item.id_text + " is too long (over --max-line bytes)";
    return item;
  }
  std::string_view text(line.text);
  auto first = text.find_first_not_of(" \t");
  if (first == std::string_view::npos || text[first] != '{') {
    item.prompt = line.text;  // plain text (a JSON string, number or array is text too)
    return item;
  }
  if (rpc::nested_deeper_than(text)) {
    // Refused before parsing: copying or printing such a value would overflow the stack.
    item.error = "input line " + item.id_text + " is nested deeper than " + std::to_string(rpc::kMaxJsonDepth) +
                 " levels";
    return item;
  }
  ojson obj = ojson::parse(text, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) {
    item.error = "input line " + item.id_text + " starts with '{' but is not valid JSON";
    return item;
  }
  ojson meta = ojson::object();
  bool has_prompt = false;
  for (auto& [key, value] : obj.items()) {
    if (key == "id") {
      if (value.is_string() || value.is_number()) {
        item.id = value;
        item.id_raw = value.is_number_float() ? raw_float_id(text) : std::string();
        item.id_text = item.id_raw.empty() ? dump(value) : item.id_raw;
      } else {
        item.error = "input line " + std::to_string(line.line_no) + ": \"id\" must be a string or a number";
      }
    } else if (key == "prompt") {
      if (value.is_string()) {
        item.prompt = value.get<std::string>();
        has_prompt = true;
      }
    } else {
      meta[key] = value;
    }
  }
  if (!meta.empty()) item.meta = std::move(meta);
  if (!item.error && !has_prompt)
    item.error = "input line " + std::to_string(line.line_no) + ": a JSON object needs a \"prompt\" string";
  return item;
}

std::string raw_float_id(std::string_view text) { return rpc::raw_float_text(text, "id"); }

std::string dump_record(const ojson& record, std::string_view id_raw) {
  if (id_raw.empty() || !record.is_object()) return dump(record);
  std::string out = "{";
  for (auto& [key, value] : record.items()) {
    if (out.size() > 1) out += ',';
    out += dump(ojson(key));
    out += ':';
    if (key == "id") out += id_raw;
    else if (key == "result" && value.is_object()) out += dump_record(value, id_raw);
    else out += dump(value);
  }
  out += '}';
  return out;
}

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::optional<Shard> parse_shard(std::string_view spec) {
  auto slash = spec.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto number = [](std::string_view s) -> std::optional<std::uint64_t> {
    std::uint64_t v = 0;
    if (s.empty()) return std::nullopt;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
  };
  auto k = number(spec.substr(0, slash));
  auto n = number(spec.substr(slash + 1));
  if (!k || !n || *n == 0 || *k >= *n) return std::nullopt;
  return Shard{*k, *n};
}

std::uint64_t item_hash(const Item& item) {
  std::string text = item.id_text;
  text += '\0';
  text += item.prompt;
  text += '\0';
  if (!item.meta.is_null()) text += dump(item.meta);
  return fnv1a64(text);
}

}  // namespace tether::cli::batch
