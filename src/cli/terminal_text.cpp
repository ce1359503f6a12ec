#include "cli/terminal_text.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>

namespace tether::cli {
namespace {

constexpr std::uint32_t kInvalid = 0xffffffff;
constexpr std::string_view kReplacement = "\xef\xbf\xbd";  // U+FFFD

// The code point at text[i] and its length in bytes; kInvalid (length 1) for a byte that does
// not start a well-formed UTF-8 sequence (overlong forms and surrogates included).
std::uint32_t decode(std::string_view text, std::size_t i, std::size_t& len) {
  auto byte = [&](std::size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  len = 1;
  if (c < 0x80) return c;
  std::size_t n;
  std::uint32_t cp, min;
  if (c >= 0xc2 && c <= 0xdf) n = 2, cp = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) n = 3, cp = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) n = 4, cp = c & 0x07, min = 0x10000;
  else return kInvalid;
  if (i + n > text.size()) return kInvalid;
  for (std::size_t k = 1; k < n; ++k) {
    unsigned char b = byte(i + k);
    if ((b & 0xc0) != 0x80) return kInvalid;
    cp = (cp << 6) | (b & 0x3f);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return kInvalid;
  len = n;
  return cp;
}

// One character of the text: a code point, or for an ill-formed byte its value when it is in
// the C1 range (a terminal may take the raw byte for the control), else kInvalid.
struct Char {
  std::uint32_t cp;
  std::size_t len;
};
Char char_at(std::string_view text, std::size_t i) {
  std::size_t len;
  std::uint32_t cp = decode(text, i, len);
  if (cp == kInvalid) {
    unsigned char b = static_cast<unsigned char>(text[i]);
    if (b >= 0x80 && b <= 0x9f) cp = b;
  }
  return {cp, len};
}

// Past a control string (OSC, DCS, SOS, PM, APC) that starts at i: up to and including its
// terminator, BEL, ESC \ or ST (U+009C); the end of the text when it has none.
std::size_t skip_string(std::string_view text, std::size_t i) {
  while (i < text.size()) {
    Char c = char_at(text, i);
    if (c.cp == 0x07 || c.cp == 0x9c) return i + c.len;
    if (c.cp == 0x1b && i + 1 < text.size() && text[i + 1] == '\\') return i + 2;
    i += c.len;
  }
  return i;
}

// Past a CSI's parameters, intermediates and final byte, starting at i (after the introducer).
// A byte that cannot be part of a CSI ends it there (that byte is then read as text again).
std::size_t skip_csi(std::string_view text, std::size_t i) {
  while (i < text.size()) {
    unsigned char b = static_cast<unsigned char>(text[i]);
    if (b >= 0x40 && b <= 0x7e) return i + 1;  // the final byte
    if (b < 0x20 || b > 0x3f) return i;        // not a parameter or an intermediate byte
    ++i;
  }
  return i;
}

// Past the rest of an ESC sequence whose ESC is at i.
std::size_t skip_escape(std::string_view text, std::size_t i) {
  ++i;
  if (i >= text.size()) return i;
  unsigned char b = static_cast<unsigned char>(text[i]);
  switch (b) {
    case '[': return skip_csi(text, i + 1);
    case ']':
    case 'P':
    case 'X':
    case '^':
    case '_': return skip_string(text, i + 1);
    default: break;
  }
  while (i < text.size() && static_cast<unsigned char>(text[i]) >= 0x20 && static_cast<unsigned char>(text[i]) <= 0x2f)
    ++i;  // intermediate bytes (ESC ( B, ESC # 8, ...)
  if (i < text.size() && static_cast<unsigned char>(text[i]) >= 0x30 && static_cast<unsigned char>(text[i]) <= 0x7e)
    ++i;  // the final byte
  return i;
}

bool bidi_control(std::uint32_t cp) { return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069); }

std::string clean(std::string_view text, bool one_line) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    Char c = char_at(text, i);
    if (c.cp == 0x1b) {
      i = skip_escape(text, i);
      continue;
    }
    if (c.cp == 0x9b) {  // C1 CSI
      i = skip_csi(text, i + c.len);
      continue;
    }
    if (c.cp == 0x9d || c.cp == 0x90 || c.cp == 0x98 || c.cp == 0x9e || c.cp == 0x9f) {  // OSC, DCS, SOS, PM, APC
      i = skip_string(text, i + c.len);
      continue;
    }
    if (c.cp == kInvalid) {
      out += kReplacement;
    } else if (c.cp == '\n' || c.cp == '\t') {
      out += one_line ? ' ' : static_cast<char>(c.cp);
    } else if (c.cp < 0x20 || (c.cp >= 0x7f && c.cp <= 0x9f) || bidi_control(c.cp)) {
      // a control character: dropped
    } else {
      out.append(text.substr(i, c.len));
    }
    i += c.len;
  }
  return out;
}

}  // namespace

std::string terminal_text(std::string_view text) { return clean(text, false); }
std::string terminal_line(std::string_view text) { return clean(text, true); }

std::string for_terminal(int fd, std::string_view text) {
  return ::isatty(fd) == 1 ? terminal_text(text) : std::string(text);
}

std::string json_for_terminal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  std::size_t i = 0;
  while (i < text.size()) {
    Char c = char_at(text, i);
    if (c.cp == 0x7f || (c.cp >= 0x80 && c.cp <= 0x9f) || bidi_control(c.cp)) {
      char esc[16];
      std::snprintf(esc, sizeof esc, "\\u%04x", static_cast<unsigned>(c.cp));
      out += esc;
    } else {
      out.append(text.substr(i, c.len));
    }
    i += c.len;
  }
  return out;
}

std::string json_for_fd(int fd, std::string_view text) {
  return ::isatty(fd) == 1 ? json_for_terminal(text) : std::string(text);
}

}  // namespace tether::cli
