#include "cli/shell_words.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace tether::cli {

namespace {

bool shell_safe(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || std::strchr("_@%+=:,./-", c);
}

bool is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

}  // namespace

std::string shell_quote(std::string_view arg) {
  if (arg.empty()) return "''";
  if (std::all_of(arg.begin(), arg.end(), [](char c) { return c != '\0' && shell_safe(static_cast<unsigned char>(c)); }))
    return std::string(arg);
  if (std::none_of(arg.begin(), arg.end(), [](char c) { return is_control(static_cast<unsigned char>(c)); })) {
    std::string out = "'";
    for (char c : arg) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return out + "'";
  }
  std::string out = "$'";
  for (char ch : arg) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\\' || c == '\'') {
      out += '\\';
      out += ch;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (is_control(c)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "'";
}

std::string shell_command(const std::vector<std::string>& argv) {
  std::string out;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    if (i > 0) out += ' ';
    std::string word = shell_quote(argv[i]);
    // A first word NAME=VALUE would be taken for an assignment.
    if (i == 0 && word == argv[i] && word.find('=') != std::string::npos) word = "'" + word + "'";
    out += word;
  }
  return out;
}

}  // namespace tether::cli
