// The fs capability (`--allow-fs`): serves the agent's fs/read_text_file and fs/write_text_file,
// confined to the session's working directory. A path must be absolute and must resolve
// (realpath: symlinks and `..` followed) inside the root; for a write, the real parent directory
// must be inside it, and an existing symlink at the target must point inside it too. Writes are
// atomic: a temporary file in the target's directory, then rename(2).
//
// Thread contract: reentrant (a plain value; every call works on the file system only).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

namespace tether::acp {

struct FsError {
  int code = 0;  // JSON-RPC error code to answer with
  std::string message;
};

class FsRoot {
 public:
  // `cwd` is the session directory; it is resolved with realpath once, here.
  explicit FsRoot(const std::string& cwd);
  const std::string& root() const { return root_; }

  // The real path to read for `path`, or why it is refused.
  std::variant<std::string, FsError> resolve_read(std::string_view path) const;
  // The real path to replace for `path` (its parent directory exists), or why it is refused.
  std::variant<std::string, FsError> resolve_write(std::string_view path) const;

  // The handlers: params of the request in, result (or error) out.
  std::variant<nlohmann::json, FsError> read_text_file(const nlohmann::json& params) const;
  std::variant<nlohmann::json, FsError> write_text_file(const nlohmann::json& params) const;

 private:
  bool inside(const std::string& real) const;

  std::string root_;  // realpath of the session directory; empty if it could not be resolved
};

// Lines [line, line + limit) of `text` (line is 1-based; limit < 0: to the end), newlines kept.
std::string select_lines(std::string_view text, long line, long limit);

}  // namespace tether::acp
