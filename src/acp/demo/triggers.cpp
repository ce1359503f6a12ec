// The demo agent's text helpers and its trigger words (see acp/demo_agent.h for what each word
// does): pure functions over the prompt's text, no I/O.
#include "acp/demo/agent.h"

#include <cctype>
#include <charconv>

namespace tether::acp::demo {

// Appends `s` as the inside of a JSON string.
void append_escaped(std::string& out, std::string_view s) {
  static const char* hex = "0123456789abcdef";
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 15];
        } else {
          out += ch;
        }
    }
  }
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::size_t utf8_length(std::string_view s) {
  std::size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::optional<long long> number(std::string_view word) {
  long long v = 0;
  auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
  if (ec != std::errc() || p != word.data() + word.size() || v < 0) return std::nullopt;
  return v;
}

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    if (j > i) out.emplace_back(text.substr(i, j - i));
    i = j;
  }
  return out;
}

Triggers parse_triggers(std::string_view text) {
  Triggers t;
  auto words = words_of(text);
  std::string echo;
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    auto arg = [&]() -> std::optional<std::string> {
      if (i + 1 < words.size()) return words[++i];
      return std::nullopt;
    };
    auto num_arg = [&]() -> std::optional<long long> {
      if (i + 1 < words.size())
        if (auto n = number(words[i + 1])) {
          ++i;
          return n;
        }
      return std::nullopt;
    };
    if (w == "/chunks") t.chunks = num_arg().value_or(1);
    else if (w == "/flood") t.flood = num_arg().value_or(1000);
    else if (w == "/big") t.big = num_arg().value_or(1 << 20);
    else if (w == "/sleep") t.sleep_ms = num_arg().value_or(1000);
    else if (w == "/exit") t.exit_code = num_arg().value_or(1);
    else if (w == "/crash") t.crash = true;
    else if (w == "/hang") t.hang = true;
    else if (w == "/error") t.error = true;
    else if (w == "/stop") t.stop = arg().value_or("end_turn");
    else if (w == "/read") t.read_path = arg().value_or("");
    else if (w == "/diff") {
      t.diff = true;
      t.edit = true;
    } else if (w == "/write") {
      t.write_path = arg().value_or("");
      t.edit = true;
    } else {
      if (!echo.empty()) echo += ' ';
      echo += w;
      std::string l = lower(w);
      if (l.find("edit") != std::string::npos || l.find("write") != std::string::npos) t.edit = true;
    }
  }
  t.echo = std::move(echo);
  return t;
}

}  // namespace tether::acp::demo
