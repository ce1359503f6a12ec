#include "rpc/json_write.h"

#include <charconv>
#include <cstring>
#include <string_view>

namespace tether::rpc {

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    // Eight ASCII bytes at a time: most text.
    if (end - p >= 8) {
      std::uint64_t w;
      std::memcpy(&w, p, 8);
      if ((w & 0x8080808080808080u) == 0) {
        p += 8;
        continue;
      }
    }
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int more;
    unsigned char lo = 0x80, hi = 0xBF;  // the allowed range of the first continuation byte
    if (c >= 0xC2 && c <= 0xDF) {
      more = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      more = 2;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      more = 3;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    } else {
      return false;
    }
    if (end - p <= more) return false;
    if (p[1] < lo || p[1] > hi) return false;
    for (int i = 2; i <= more; ++i)
      if ((p[i] & 0xC0) != 0x80) return false;
    p += more + 1;
  }
  return true;
}

bool is_plain_string(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == '"' || c == '\\') return false;
  return valid_utf8(s);
}

namespace {

constexpr char kHex[] = "0123456789abcdef";

template <typename J>
void append_string(std::string& out, std::string_view s) {
  if (!valid_utf8(s)) {
    out += J(std::string(s)).dump(-1, ' ', false, J::error_handler_t::replace);
    return;
  }
  out += '"';
  std::size_t run = 0;  // start of the bytes not yet copied
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s, run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: {
        const char esc[] = {'\\', 'u', '0', '0', kHex[c >> 4], kHex[c & 0xF]};
        out.append(esc, sizeof esc);
      }
    }
  }
  out.append(s, run, s.size() - run);
  out += '"';
}

template <typename Int>
void append_int(std::string& out, Int v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

template <typename J>
void append_value(std::string& out, const J& v) {
  using T = typename J::value_t;
  switch (v.type()) {
    case T::null: out += "null"; return;
    case T::boolean: out += v.template get<bool>() ? "true" : "false"; return;
    case T::number_integer: append_int(out, v.template get<typename J::number_integer_t>()); return;
    case T::number_unsigned: append_int(out, v.template get<typename J::number_unsigned_t>()); return;
    case T::string: append_string<J>(out, v.template get_ref<const typename J::string_t&>()); return;
    case T::array: {
      out += '[';
      bool first = true;
      for (const J& e : v.template get_ref<const typename J::array_t&>()) {
        if (!first) out += ',';
        first = false;
        append_value(out, e);
      }
      out += ']';
      return;
    }
    case T::object: {
      out += '{';
      bool first = true;
      for (const auto& [key, e] : v.template get_ref<const typename J::object_t&>()) {
        if (!first) out += ',';
        first = false;
        append_string<J>(out, key);
        out += ':';
        append_value(out, e);
      }
      out += '}';
      return;
    }
    case T::number_float:
    case T::binary:
    case T::discarded:
      break;
  }
  out += v.dump(-1, ' ', false, J::error_handler_t::replace);
}

}  // namespace

void append_json(std::string& out, const nlohmann::json& value) { append_value(out, value); }
void append_json(std::string& out, const nlohmann::ordered_json& value) { append_value(out, value); }
void append_json_string(std::string& out, std::string_view s) { append_string<nlohmann::json>(out, s); }

}  // namespace tether::rpc
