#include "cli/attachments.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>

#include "base/unique_fd.h"
#include "cli/terminal_text.h"

namespace tether::cli {
namespace {

using nlohmann::json;

bool starts(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

// Valid UTF-8 (no overlong forms, no surrogates) without NUL bytes: what we call text.
bool is_text(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n = c >= 0xF0 && c <= 0xF4 ? 3 : c >= 0xE0 ? 2 : c >= 0xC2 && c < 0xE0 ? 1 : -1;
    if (n < 0 || i + static_cast<std::size_t>(n) >= s.size()) return false;  // s[i + n] must exist
    auto c1 = static_cast<unsigned char>(s[i + 1]);
    if ((c == 0xE0 && c1 < 0xA0) || (c == 0xED && c1 > 0x9F) || (c == 0xF0 && c1 < 0x90) || (c == 0xF4 && c1 > 0x8F))
      return false;
    for (int k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0xC0) != 0x80) return false;
    i += static_cast<std::size_t>(n) + 1;
  }
  return true;
}

std::string text_mime(std::string_view path) {
  auto dot = path.rfind('.');
  std::string_view ext = dot == std::string_view::npos ? "" : path.substr(dot + 1);
  if (ext == "md" || ext == "markdown") return "text/markdown";
  if (ext == "json") return "application/json";
  if (ext == "html" || ext == "htm") return "text/html";
  if (ext == "csv") return "text/csv";
  if (ext == "xml") return "application/xml";
  if (ext == "diff" || ext == "patch") return "text/x-diff";
  return "text/plain";
}

// file:///abs/path with the bytes outside RFC 3986's unreserved set and '/' percent-encoded.
std::string file_uri(std::string_view abs) {
  static const char* hex = "0123456789ABCDEF";
  std::string out = "file://";
  for (char ch : abs) {
    auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '/' || c == '-' || c == '.' || c == '_' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string size_text(std::uint64_t bytes) {
  if (bytes >= (std::uint64_t{1} << 20) && bytes % (std::uint64_t{1} << 20) == 0)
    return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes) + " bytes";
}

std::uint64_t limit_for(Attachment::Kind kind) {
  return kind == Attachment::Kind::text ? kMaxTextAttachment : kMaxBinaryAttachment;
}

// Reads all of `fd`, at most `limit` + 1 bytes (one more says it is over). False on a read error.
bool read_bounded(int fd, std::uint64_t limit, std::string& out) {
  char buf[65536];
  while (out.size() <= limit) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return true;
}

// Fills kind, MIME type and size from `a.data`, and checks the kind's limit.
std::optional<std::string> classify(Attachment& a, std::string_view shown) {
  auto [kind, mime] = sniff(a.data, a.name);
  a.kind = kind;
  a.mime_type = mime;
  a.size = a.data.size();
  if (a.size > limit_for(kind))
    return std::string(shown) + " is larger than tether sends (" + size_text(limit_for(kind)) + " for " +
           (kind == Attachment::Kind::text ? "text" : "images, audio and other files") +
           "); mention its path in the prompt instead, so the agent reads it itself";
  return std::nullopt;
}

}  // namespace

std::pair<Attachment::Kind, std::string> sniff(std::string_view b, std::string_view path) {
  using K = Attachment::Kind;
  if (starts(b, "\x89PNG\r\n\x1a\n")) return {K::image, "image/png"};
  if (starts(b, "\xFF\xD8\xFF")) return {K::image, "image/jpeg"};
  if (starts(b, "GIF87a") || starts(b, "GIF89a")) return {K::image, "image/gif"};
  if (b.size() >= 12 && starts(b, "RIFF") && b.substr(8, 4) == "WEBP") return {K::image, "image/webp"};
  if (b.size() >= 12 && starts(b, "RIFF") && b.substr(8, 4) == "WAVE") return {K::audio, "audio/wav"};
  if (starts(b, "OggS")) return {K::audio, "audio/ogg"};
  if (starts(b, "fLaC")) return {K::audio, "audio/flac"};
  // An MP3 starts with an ID3 tag or a frame sync (eleven set bits; 0xFF is never UTF-8).
  if (starts(b, "ID3") || (b.size() >= 2 && static_cast<unsigned char>(b[0]) == 0xFF &&
                           (static_cast<unsigned char>(b[1]) & 0xE0) == 0xE0))
    return {K::audio, "audio/mpeg"};
  if (is_text(b)) return {K::text, text_mime(path)};
  return {K::binary, "application/octet-stream"};
}

std::variant<Attachment, std::string> read_attachment(const std::string& path) {
  if (path == "-") {
    auto a = read_piped(STDIN_FILENO);
    if (auto* got = std::get_if<Attachment>(&a)) got->name = "stdin";
    return a;
  }
  Attachment a;
  a.name = path;
  base::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return "cannot read attachment " + path + ": " + ::strerror(errno);
  struct stat st{};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return "cannot attach " + path + ": not a regular file (use -a - to attach what is piped on stdin)";
  // The larger limit first: the kind is known only once the bytes are read.
  if (static_cast<std::uint64_t>(st.st_size) > kMaxBinaryAttachment)
    return "cannot attach " + path + ": it is larger than tether sends (" + size_text(kMaxBinaryAttachment) +
           "); mention its path in the prompt instead, so the agent reads it itself";
  ::fcntl(fd.get(), F_SETFL, 0);
  if (!read_bounded(fd.get(), kMaxBinaryAttachment, a.data))
    return "cannot read attachment " + path + ": " + ::strerror(errno);
  char abs[PATH_MAX];
  if (::realpath(path.c_str(), abs)) a.uri = file_uri(abs);
  if (auto err = classify(a, "cannot attach " + path + ": it")) return *err;
  return a;
}

std::variant<Attachment, std::string> read_piped(int fd) {
  Attachment a;
  a.name = "stdin";
  a.piped = true;
  if (!read_bounded(fd, kMaxBinaryAttachment, a.data))
    return std::string("cannot read stdin: ") + ::strerror(errno);
  if (a.data.size() > kMaxBinaryAttachment)
    return "what is piped on stdin is larger than tether sends (" + size_text(kMaxBinaryAttachment) + ")";
  if (auto err = classify(a, "what is piped on stdin")) return *err;
  return a;
}

PromptCaps PromptCaps::from(const json& caps) {
  PromptCaps p;
  if (!caps.is_object()) return p;
  auto it = caps.find("promptCapabilities");
  if (it == caps.end() || !it->is_object()) return p;
  auto flag = [&](const char* k) {
    auto f = it->find(k);
    return f != it->end() && f->is_boolean() && f->get<bool>();
  };
  p.image = flag("image");
  p.audio = flag("audio");
  p.embedded = flag("embeddedContext");
  return p;
}

std::variant<json, std::string> prompt_blocks(const std::vector<Attachment>& inputs, std::string_view words,
                                              const PromptCaps& caps, std::string_view agent) {
  using K = Attachment::Kind;
  json blocks = json::array();
  for (const auto& a : inputs) {
    const std::string what = a.piped ? "what is piped on stdin" : a.name;
    switch (a.kind) {
      case K::image:
      case K::audio: {
        const bool image = a.kind == K::image;
        if (!(image ? caps.image : caps.audio))
          return std::string(agent) + " does not accept " + (image ? "images" : "audio") + " in a prompt (its " +
                 "promptCapabilities." + (image ? "image" : "audio") + " is not true): cannot send " + what + " (" +
                 a.mime_type + ")";
        json b = {{"type", image ? "image" : "audio"}, {"data", base64(a.data)}, {"mimeType", a.mime_type}};
        if (image && !a.uri.empty()) b["uri"] = a.uri;
        blocks.push_back(std::move(b));
        break;
      }
      case K::text:
      case K::binary: {
        const bool text = a.kind == K::text;
        // Piped input has no URI of its own; this one names where it came from.
        const std::string uri = a.uri.empty() ? std::string("tether:stdin") : a.uri;
        if (caps.embedded) {
          json res = {{"uri", uri}, {"mimeType", a.mime_type}};
          res[text ? "text" : "blob"] = text ? a.data : base64(a.data);
          blocks.push_back({{"type", "resource"}, {"resource", std::move(res)}});
        } else if (!a.uri.empty()) {
          auto slash = a.name.rfind('/');
          blocks.push_back({{"type", "resource_link"},
                            {"uri", a.uri},
                            {"name", slash == std::string::npos ? a.name : a.name.substr(slash + 1)},
                            {"mimeType", a.mime_type},
                            {"size", a.size}});
        } else if (text) {
          blocks.push_back({{"type", "text"}, {"text", a.data}});
        } else {
          return std::string(agent) + " does not accept embedded files (promptCapabilities.embeddedContext) and " +
                 what + " is not text: it cannot be sent";
        }
        break;
      }
    }
  }
  if (!words.empty()) blocks.push_back({{"type", "text"}, {"text", std::string(words)}});
  if (blocks.empty()) return std::string("the prompt is empty: nothing to send");
  return blocks;
}

std::variant<std::vector<Attachment>, std::string> read_attachments(const std::vector<std::string>& paths) {
  std::vector<Attachment> out;
  for (const auto& path : paths) {
    auto got = read_attachment(path);
    if (auto* err = std::get_if<std::string>(&got)) return std::move(*err);
    out.push_back(std::move(std::get<Attachment>(got)));
  }
  return out;
}

acp::AcpSession::ContentBuilder content_builder(std::vector<Attachment> inputs, std::string words) {
  return [inputs = std::move(inputs), words = std::move(words)](const acp::SessionState& st)
             -> std::variant<json, std::string> {
    std::string agent = st.agent_info.is_object() ? st.agent_info.value("name", "the agent") : "the agent";
    return prompt_blocks(inputs, words, PromptCaps::from(st.agent_capabilities), terminal_line(agent));
  };
}

std::string attachment_names(const std::vector<Attachment>& inputs) {
  std::string out;
  for (const auto& a : inputs) {
    if (!out.empty()) out += ", ";
    out += a.name;
  }
  return out;
}

std::string base64(std::string_view in) {
  static const char* abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                      static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                      static_cast<unsigned char>(in[i + 2]);
    out += abc[v >> 18 & 63];
    out += abc[v >> 12 & 63];
    out += abc[v >> 6 & 63];
    out += abc[v & 63];
  }
  if (std::size_t rest = in.size() - i; rest > 0) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out += abc[v >> 18 & 63];
    out += abc[v >> 12 & 63];
    out += rest == 2 ? abc[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace tether::cli
