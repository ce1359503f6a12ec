// The fast path of parse_line() (message.h): RapidJSON's SAX reader (Debian's rapidjson-dev,
// header-only, included by this file only) builds the nlohmann value directly. nlohmann stays the
// project's JSON type; only its parser is too slow for the dispatcher's hot path (issue 17: a
// session/update chunk line took 3.0 µs to parse with nlohmann's DOM parser, 1.5 µs this way, and
// nlohmann's lexer was half of the dispatcher's time in a notification flood).
//
// Exactness: whatever this path accepts, nlohmann accepts with the same value. It refuses (and
// parse_line then asks nlohmann, which decides) every input where the two could differ:
// - numbers are read as text and converted by nlohmann's rules: an integer that fits int64 (a
//   negative one) or uint64 (a non-negative one) is an integer; anything else is a double, and
//   a double that is not finite is left to nlohmann (it refuses those);
// - a string whose decoded bytes hold a UTF-16 surrogate (RapidJSON lets a lone "\udc00" through,
//   nlohmann refuses it) is left to nlohmann;
// - a NUL byte anywhere in the line (RapidJSON's stream reads NUL as the end) is left to nlohmann;
// - duplicate keys: the last one wins, as in nlohmann;
// - more than kMaxJsonDepth levels: refused, as parse_line refuses them;
// - anything RapidJSON refuses (a byte-order mark, which nlohmann skips, included) goes to nlohmann.
#include "rpc/json_read.h"

#include <rapidjson/error/error.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>

#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace tether::rpc {
namespace {

// UTF-8 of a code point in U+D800..U+DFFF: ED A0..BF xx.
bool has_surrogate(const char* s, std::size_t n) {
  for (const char* p = static_cast<const char*>(std::memchr(s, '\xED', n)); p;
       p = static_cast<const char*>(std::memchr(p + 1, '\xED', n - static_cast<std::size_t>(p + 1 - s)))) {
    if (p + 1 < s + n && static_cast<unsigned char>(p[1]) >= 0xA0) return true;
  }
  return false;
}

// A number token as nlohmann reads it; false when nlohmann should decide (not finite).
bool number_value(const char* s, std::size_t n, json& out) {
  const char* end = s + n;
  bool integral = std::memchr(s, '.', n) == nullptr && std::memchr(s, 'e', n) == nullptr &&
                  std::memchr(s, 'E', n) == nullptr;
  if (integral) {
    if (s[0] == '-') {
      std::int64_t v;
      auto r = std::from_chars(s, end, v);
      if (r.ec == std::errc() && r.ptr == end) {
        out = v;
        return true;
      }
    } else {
      std::uint64_t v;
      auto r = std::from_chars(s, end, v);
      if (r.ec == std::errc() && r.ptr == end) {
        out = v;
        return true;
      }
    }
  }
  // nlohmann converts the token with strtod; from_chars gives the same correctly rounded double.
  double d = 0;
  auto r = std::from_chars(s, end, d);
  if (r.ec != std::errc() || r.ptr != end || !std::isfinite(d)) return false;  // out of range: nlohmann's call
  out = d;
  return true;
}

// Builds a value of type J (json, or batch's ordered_json) the way nlohmann's parser does.
template <typename J>
class Builder : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Builder<J>> {
 public:
  J root;

  bool Null() { return put(J(nullptr)); }
  bool Bool(bool b) { return put(J(b)); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    json v;
    return number_value(s, n, v) && put(J(std::move(v)));
  }
  // Set when the line has a \u escape: only an escape can make a surrogate (RapidJSON's UTF-8
  // validation refuses one written as raw bytes).
  bool escapes = true;

  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (escapes && has_surrogate(s, n)) return false;
    return put(J(std::string(s, n)));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (escapes && has_surrogate(s, n)) return false;
    key_.assign(s, n);
    return true;
  }
  bool StartObject() { return open(J(J::value_t::object)); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return open(J(J::value_t::array)); }
  bool EndArray(rapidjson::SizeType) { return close(); }

 private:
  // Places `v` in the innermost open container (or as the root); returns where it went.
  J* place(J v) {
    if (stack_.empty()) {
      root = std::move(v);
      return &root;
    }
    J& top = *stack_.back();
    if (top.is_object()) {
      // As nlohmann's parser does: the last duplicate's value, in the first one's place.
      J& slot = top.template get_ref<typename J::object_t&>()[std::move(key_)];
      slot = std::move(v);
      key_.clear();
      return &slot;
    }
    auto& arr = top.template get_ref<typename J::array_t&>();
    arr.push_back(std::move(v));
    return &arr.back();
  }
  bool put(J v) {
    place(std::move(v));
    return true;
  }
  bool open(J container) {
    if (stack_.size() >= static_cast<std::size_t>(kMaxJsonDepth)) return false;
    stack_.push_back(place(std::move(container)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  std::vector<J*> stack_;
  std::string key_;
};

constexpr unsigned kFlags = rapidjson::kParseValidateEncodingFlag | rapidjson::kParseNumbersAsStringsFlag;
// For a line of ASCII bytes only, where UTF-8 validation cannot refuse anything: RapidJSON's
// check costs a call per byte (a fifth of a short line's scan, issue 17). Escapes (\u00e9) are
// decoded to valid UTF-8 either way, and a surrogate is caught by the handlers.
constexpr unsigned kAsciiFlags = rapidjson::kParseNumbersAsStringsFlag;

bool all_ascii(std::string_view s) {
  const char* p = s.data();
  std::size_t n = s.size();
  for (; n >= 8; p += 8, n -= 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    if (w & 0x8080808080808080u) return false;
  }
  for (; n > 0; ++p, --n)
    if (static_cast<unsigned char>(*p) & 0x80) return false;
  return true;
}

// One reader per thread: its stack keeps its memory from one line to the next (a fresh reader
// allocates it on every line).
rapidjson::Reader& thread_reader() {
  thread_local rapidjson::Reader reader;
  return reader;
}

template <typename Handler>
bool read_json(std::string_view line, Handler& handler) {
  rapidjson::MemoryStream in(line.data(), line.size());
  rapidjson::Reader& reader = thread_reader();
  return all_ascii(line) ? !reader.Parse<kAsciiFlags>(in, handler).IsError() : !reader.Parse<kFlags>(in, handler).IsError();
}

// scan_fields()'s reader: the same checks as Builder, a path of keys instead of a value.
class Scanner : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, Scanner> {
 public:
  // `path` and `bases`: scratch space, kept by the caller from one line to the next.
  Scanner(std::span<Field> fields, bool escapes, std::string& path, std::vector<std::size_t>& bases)
      : fields_(fields), escapes_(escapes), path_(path), bases_(bases) {
    path_.clear();
    bases_.clear();
  }

  bool Null() { return value(Field::Type::null, {}); }
  bool Bool(bool) { return value(Field::Type::boolean, {}); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    json v;
    return number_value(s, n, v) && value(Field::Type::number, std::string_view(s, n));
  }
  bool String(const char* s, rapidjson::SizeType n, bool) {
    if (escapes_ && has_surrogate(s, n)) return false;
    return value(Field::Type::string, std::string_view(s, n));
  }
  bool Key(const char* s, rapidjson::SizeType n, bool) {
    if (escapes_ && has_surrogate(s, n)) return false;
    if (tracked()) {
      path_.resize(bases_.back());
      // Nested or not by depth, never by an empty path: a top-level key "" must not make the
      // keys under it read as top-level ones.
      if (bases_.size() > 1) path_.push_back('.');
      path_.append(s, n);
      // A key with a dot in it would read as a path ("a.b" as "a" then "b"): a NUL, which no
      // path asked for has, keeps it and everything under it from matching.
      if (std::memchr(s, '.', n)) path_.push_back('\0');
    }
    return true;
  }
  bool StartObject() { return open(Field::Type::object); }
  bool EndObject(rapidjson::SizeType) { return close(); }
  bool StartArray() { return open(Field::Type::array); }
  bool EndArray(rapidjson::SizeType) { return close(); }

  bool root_object = false;

 private:
  // Paths are followed through objects only, a few levels deep (every path asked for is short).
  static constexpr int kTrackedDepth = 6;
  bool tracked() const { return untracked_ == 0 && !bases_.empty(); }

  Field* match() {
    if (!tracked()) return nullptr;
    for (Field& f : fields_)
      if (f.path == path_) return &f;
    return nullptr;
  }
  bool value(Field::Type type, std::string_view text) {
    if (Field* f = match()) {
      f->type = type;
      f->text.assign(text);
      ++f->seen;
    }
    return true;
  }
  bool open(Field::Type type) {
    if (++depth_ > kMaxJsonDepth) return false;
    if (depth_ == 1) root_object = type == Field::Type::object;
    if (Field* f = match()) {
      f->type = type;
      f->text.clear();
      ++f->seen;
    }
    if (untracked_ > 0 || type == Field::Type::array || depth_ > kTrackedDepth) {
      ++untracked_;
    } else {
      bases_.push_back(path_.size());
    }
    return true;
  }
  bool close() {
    --depth_;
    if (untracked_ > 0) {
      --untracked_;
    } else {
      path_.resize(bases_.back());
      bases_.pop_back();
    }
    return true;
  }

  std::span<Field> fields_;
  bool escapes_;
  int depth_ = 0;
  int untracked_ = 0;              // levels opened inside an array or below kTrackedDepth
  std::string& path_;               // keys from the top to the current member, joined by '.'
  std::vector<std::size_t>& bases_;  // per open tracked object: path_'s length at its start
};

// read_response()'s reader: the top level is checked here, member by member, and only the
// "result" or "error" value is built (by a Builder fed its events). Anything else at the top, or
// a member twice, declines: the line then takes the long way.
class ResponseReader : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, ResponseReader> {
 public:
  enum class Member { none, jsonrpc, id, result, error };
  FastResponse out;
  bool seen_id = false;
  int seen_value = 0;  // result or error members

  bool Null() { return in_value() ? value_.Null() && done() : false; }
  bool Bool(bool b) { return in_value() ? value_.Bool(b) && done() : false; }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    if (in_value()) return value_.RawNumber(s, n, copy) && done();
    if (depth_ != 1 || member_ != Member::id || seen_id) return false;
    json v;
    if (!number_value(s, n, v) || !v.is_number_integer()) return false;  // not an id of ours: the long way
    out.id = v.get<std::int64_t>();
    seen_id = true;
    member_ = Member::none;
    return true;
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (in_value()) return value_.String(s, n, copy) && done();
    if (depth_ != 1 || member_ != Member::jsonrpc || std::string_view(s, n) != "2.0") return false;
    member_ = Member::none;
    return true;
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    if (in_value()) return value_.Key(s, n, copy);
    std::string_view k(s, n);
    if (k == "jsonrpc" && !seen_jsonrpc_) {
      seen_jsonrpc_ = true;
      member_ = Member::jsonrpc;
    } else if (k == "id") {
      member_ = Member::id;
    } else if (k == "result" || k == "error") {
      member_ = k == "result" ? Member::result : Member::error;
      out.is_error = member_ == Member::error;
      ++seen_value;
    } else {
      return false;
    }
    return true;
  }
  bool StartObject() {
    if (depth_ >= kMaxJsonDepth) return false;  // parse_line refuses it: so must this
    if (depth_++ == 0) return true;             // the message itself
    return in_value() && value_.StartObject();
  }
  bool EndObject(rapidjson::SizeType n) {
    if (--depth_ == 0) return true;
    return value_.EndObject(n) && done();
  }
  bool StartArray() {
    if (depth_ == 0 || depth_ >= kMaxJsonDepth) return false;
    ++depth_;
    return in_value() && value_.StartArray();
  }
  bool EndArray(rapidjson::SizeType n) {
    --depth_;
    return value_.EndArray(n) && done();
  }

  json take_value() { return std::move(value_.root); }

 private:
  bool in_value() const { return depth_ >= 1 && (member_ == Member::result || member_ == Member::error); }
  // A value ends when the reader is back at the top level.
  bool done() {
    if (depth_ == 1) member_ = Member::none;
    return true;
  }

  Builder<json> value_;
  Member member_ = Member::none;
  int depth_ = 0;
  bool seen_jsonrpc_ = false;
};

}  // namespace

bool scan_fields(std::string_view line, std::span<Field> fields) {
  if (std::memchr(line.data(), '\0', line.size())) return false;
  thread_local std::string path;
  thread_local std::vector<std::size_t> bases;
  Scanner scanner(fields, line.find("\\u") != std::string_view::npos, path, bases);
  return read_json(line, scanner) && scanner.root_object;
}

bool is_integer_token(std::string_view t) {
  json v;
  return !t.empty() && t.find_first_of(".eE") == std::string_view::npos && number_value(t.data(), t.size(), v) &&
         v.is_number_integer();
}

namespace {

template <typename J>
std::optional<J> build(std::string_view line) {
  if (std::memchr(line.data(), '\0', line.size())) return std::nullopt;
  Builder<J> b;
  b.escapes = line.find("\\u") != std::string_view::npos;
  if (!read_json(line, b)) return std::nullopt;
  return std::move(b.root);
}

}  // namespace

std::optional<json> fast_parse(std::string_view line) { return build<json>(line); }

std::optional<FastResponse> read_response(std::string_view line) {
  // Escapes (a surrogate nlohmann refuses, a key spelled with escapes) and NULs take the long way.
  if (line.find('\\') != std::string_view::npos || std::memchr(line.data(), '\0', line.size())) return std::nullopt;
  ResponseReader r;
  if (!read_json(line, r) || !r.seen_id || r.seen_value != 1) return std::nullopt;
  r.out.value = r.take_value();
  const json& v = r.out.value;
  // An error must be an object with an integer code (classify()'s rule); the long way says why not.
  if (r.out.is_error && !(v.is_object() && v.contains("code") && v["code"].is_number_integer())) return std::nullopt;
  return std::move(r.out);
}
std::optional<nlohmann::ordered_json> fast_parse_ordered(std::string_view line) { return build<nlohmann::ordered_json>(line); }

}  // namespace tether::rpc
