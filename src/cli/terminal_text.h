// The one way text from an agent or a bridge reaches a terminal. Agents and bridges are not
// trusted with the screen: a title, an id, a command description, an answer or a line of stderr
// may carry escape sequences that write the clipboard (OSC 52), set the window title, clear the
// screen to fake a permission question, or reorder what is shown (bidi overrides). Everything an
// agent or bridge controls passes through here on its way to a terminal; nothing of it is
// interpreted there.
//
// The rules (terminal_text):
//   - escape sequences are removed whole: CSI (ESC [ or C1 CSI, up to its final byte), OSC (ESC ]
//     or C1 OSC, up to BEL or ST), DCS / SOS / PM / APC strings (up to ST), and every other ESC
//     sequence (ESC, intermediates, final byte); an unterminated one runs to the end of the text;
//   - C0 controls (BEL, BS, CR, ...), DEL and the C1 controls U+0080..U+009F (in their UTF-8
//     form and as raw 8-bit bytes) are removed; newline and tab stay;
//   - the bidi embeddings, overrides and isolates (U+202A..U+202E, U+2066..U+2069) are removed;
//   - bytes that are not UTF-8 become U+FFFD (a raw 0x80..0x9f byte counts as its C1 control).
// terminal_line applies the same rules and flattens newlines and tabs to spaces, for text that
// is shown inside one line of tether's (tool titles, ids, names, /help lines): a newline there
// could start a line that looks like tether's own.
//
// Where: talk's renderer and prompt's side channel run their output through these when the fd is
// a terminal; error_line does for stderr. JSON outputs (--json, batch records, `call`) are data
// and stay exact: on a terminal only their encoding changes (json_for_terminal): the characters
// a JSON dump leaves raw that a terminal could act on (DEL, C1 controls, bidi overrides; it
// escapes C0 itself) are written as \uXXXX escapes, which decode to the same strings.
//
// Thread contract: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace tether::cli {

// Text that may span lines (answers, thoughts, stderr tails, messages).
std::string terminal_text(std::string_view text);
// Text shown inside one line: as terminal_text, with newlines and tabs as spaces.
std::string terminal_line(std::string_view text);
// terminal_text(text) when fd is a terminal, else the text as it is.
std::string for_terminal(int fd, std::string_view text);

// A JSON text (valid UTF-8, as nlohmann's dump writes it) with DEL, U+0080..U+009F and the bidi
// controls as \uXXXX escapes: the same JSON value, safe to show. Such characters occur only inside
// strings, where the escape means the same.
std::string json_for_terminal(std::string_view json_text);
// json_for_terminal(text) when fd is a terminal, else the text as it is.
std::string json_for_fd(int fd, std::string_view json_text);

}  // namespace tether::cli
