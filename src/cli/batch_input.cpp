#include "cli/batch_input.h"

#include <charconv>

#include "rpc/json_read.h"
#include "rpc/json_write.h"
#include "rpc/message.h"

namespace tether::cli::batch {
namespace {

bool is_blank(std::string_view s) { return s.find_first_not_of(" \t") == std::string_view::npos; }

}  // namespace

std::optional<InputLine> LineReader::next() {
  while (auto line = framer_.next_line()) {
    ++line_no_;
    if (line->oversize) return InputLine{line_no_, std::string(), true};
    if (is_blank(line->text)) continue;
    return InputLine{line_no_, std::string(line->text), false};
  }
  return std::nullopt;
}

std::optional<InputLine> LineReader::finish() {
  if (finished_) return std::nullopt;
  finished_ = true;
  if (auto rest = framer_.finish()) return InputLine{++line_no_, std::move(*rest), false};
  // Input that ended inside an oversize line: the framer reports it in its place now.
  if (auto line = framer_.next_line(); line && line->oversize) return InputLine{++line_no_, std::string(), true};
  return std::nullopt;
}

std::string dump(const ojson& value) {
  std::string out;
  out.reserve(256);  // a record's usual size: no regrowth
  rpc::append_json(out, value);
  return out;
}

namespace {

// `"text"` at the front of `in`, `text` plain: its body, and `in` advanced past it.
std::optional<std::string_view> take_plain_string(std::string_view& in) {
  if (in.empty() || in.front() != '"') return std::nullopt;
  auto end = in.find('"', 1);
  if (end == std::string_view::npos) return std::nullopt;
  std::string_view body = in.substr(1, end - 1);
  if (!rpc::is_plain_string(body)) return std::nullopt;
  in.remove_prefix(end + 1);
  return body;
}

bool take(std::string_view& in, std::string_view literal) {
  if (in.substr(0, literal.size()) != literal) return false;
  in.remove_prefix(literal.size());
  return true;
}

}  // namespace

std::optional<Item> read_common_item(const InputLine& line) {
  std::string_view in(line.text);
  if (line.oversize || !take(in, "{")) return std::nullopt;
  std::optional<std::string_view> prompt, id_string;
  std::optional<std::uint64_t> id_number;
  std::string_view id_digits;
  for (bool first = true;; first = false) {
    if (!first && !take(in, ",")) break;
    if (take(in, "\"prompt\":")) {
      if (prompt || !(prompt = take_plain_string(in))) return std::nullopt;
    } else if (take(in, "\"id\":")) {
      if (id_string || id_number) return std::nullopt;
      if (!in.empty() && in.front() == '"') {
        if (!(id_string = take_plain_string(in))) return std::nullopt;
      } else {
        // 0, or up to 18 digits without a leading zero: nlohmann reads it as this unsigned
        // integer, and writes it back as it is.
        std::size_t n = 0;
        while (n < in.size() && n < 19 && in[n] >= '0' && in[n] <= '9') ++n;
        if (n == 0 || n > 18 || (n > 1 && in[0] == '0')) return std::nullopt;
        id_digits = in.substr(0, n);
        std::uint64_t v = 0;
        std::from_chars(id_digits.data(), id_digits.data() + n, v);
        id_number = v;
        in.remove_prefix(n);
      }
    } else {
      return std::nullopt;
    }
  }
  if (in != "}" || !prompt) return std::nullopt;
  Item item;
  item.index = line.line_no;
  if (id_string) {
    item.id = std::string(*id_string);
    item.id_given = true;
    item.id_text.reserve(id_string->size() + 2);
    item.id_text.append(1, '"').append(*id_string).append(1, '"');
  } else if (id_number) {
    item.id = *id_number;
    item.id_given = true;
    item.id_text = std::string(id_digits);
  } else {
    item.id = line.line_no;
    item.id_text = std::to_string(line.line_no);
  }
  item.prompt = std::string(*prompt);
  return item;
}

Item parse_item(const InputLine& line) {
  if (auto common = read_common_item(line)) return std::move(*common);
  return parse_item_in_full(line);
}

Item parse_item_in_full(const InputLine& line) {
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
  // RapidJSON's reader where it reads exactly as nlohmann does (json_read.h), else nlohmann's.
  auto fast = rpc::fast_parse_ordered(text);
  ojson obj = fast ? std::move(*fast) : ojson::parse(text, nullptr, false);
  if (obj.is_discarded() || !obj.is_object()) {
    item.error = "input line " + item.id_text + " starts with '{' but is not valid JSON";
    return item;
  }
  ojson meta;  // null until another member comes: most items have none
  bool has_prompt = false;
  for (auto& [key, value] : obj.items()) {
    if (key == "id") {
      if (value.is_string() || value.is_number()) {
        item.id = value;
        item.id_given = true;
        item.id_raw = value.is_number_float() ? raw_float_id(text) : std::string();
        item.id_text = item.id_raw.empty() ? dump(value) : item.id_raw;
      } else {
        item.error = "input line " + std::to_string(line.line_no) + ": \"id\" must be a string or a number";
      }
    } else if (key == "attachments") {
      // Paths, as `tether prompt -a` takes them (relative to where tether runs); the files are
      // read when the item is sent, and one that cannot be sent fails that item alone.
      bool good = value.is_array() && value.size() <= 64;
      for (const auto& p : value) good = good && p.is_string() && !p.get<std::string>().empty();
      if (good) {
        for (const auto& p : value) item.attachments.push_back(p.get<std::string>());
      } else {
        item.error = "input line " + std::to_string(line.line_no) +
                     ": \"attachments\" must be an array of at most 64 file paths";
      }
    } else if (key == "prompt") {
      if (value.is_string()) {
        item.prompt = std::move(value.get_ref<std::string&>());  // obj is ours, and not read again
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
    rpc::append_json(out, ojson(key));
    out += ':';
    if (key == "id") out += id_raw;
    else if (key == "result" && value.is_object()) out += dump_record(value, id_raw);
    else rpc::append_json(out, value);
  }
  out += '}';
  return out;
}

std::uint64_t fnv1a64(std::string_view bytes, std::uint64_t h) {
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
  // fnv1a64 of id_text NUL prompt NUL meta (NUL attachment)..., hashed piece by piece.
  constexpr std::string_view nul("\0", 1);
  std::uint64_t h = fnv1a64(item.id_text);
  h = fnv1a64(nul, h);
  h = fnv1a64(item.prompt, h);
  h = fnv1a64(nul, h);
  if (!item.meta.is_null()) h = fnv1a64(dump(item.meta), h);
  for (const auto& a : item.attachments) {  // other files make another item (but their bytes do not)
    h = fnv1a64(nul, h);
    h = fnv1a64(a, h);
  }
  return h;
}

}  // namespace tether::cli::batch
