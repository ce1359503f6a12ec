// dump()'s fast path: a JSON value written as one compact line, byte for byte what nlohmann's
// dump(-1, ' ', false, error_handler_t::replace) writes, in a fraction of the time. nlohmann's
// serializer is built anew for every dump() (it asks localeconv() and fills a 512-byte indent
// string each time) and escapes strings one code point at a time; a turn dumps its request and
// its batch record, and that was a tenth of a turn's CPU time (issue 17).
//
// Exactness: strings that are not valid UTF-8 (which dump() replaces with U+FFFD by rules of its
// own) and floating-point numbers (shortest round-trip text) are written by nlohmann itself;
// everything else is simple enough to write here the same way. tests/unit/json_write_test.cpp
// compares the two on random values.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace tether::rpc {

// Well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF), the
// strings nlohmann's serializer copies through unchanged.
bool valid_utf8(std::string_view s);
// A string that JSON writes as it is between quotes, and reads back as the same bytes: no quote,
// backslash or control byte, and valid UTF-8. The byte-exact readers (a chunk line, a batch item)
// take only such strings, so what they accept is what a parser would read.
bool is_plain_string(std::string_view s);

// Appends `value` to `out` as dump() would write it (no newline).
void append_json(std::string& out, const nlohmann::json& value);
void append_json(std::string& out, const nlohmann::ordered_json& value);
// Appends `s` as a JSON string, as append_json(out, json(s)) would, without building the value.
void append_json_string(std::string& out, std::string_view s);

}  // namespace tether::rpc
