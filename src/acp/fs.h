// The fs capability (`--allow-fs`): serves the agent's fs/read_text_file and fs/write_text_file,
// confined to the session's working directory (the root).
//
// The root is opened once, as a directory fd; every request is resolved under that fd, component by
// component, never by name from `/`: openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS) where the
// kernel has it (Linux 5.6), else a walk of O_NOFOLLOW opens that expands each symlink itself. An
// agent that swaps a directory for a symlink while it asks therefore cannot make tether read or
// write outside: whatever it swaps, each step starts from a directory already inside.
//
// Paths: absolute only; they must start with the root, either as given (the cwd the agent was sent)
// or as its real path; `..` may be used but never above the root. Symlinks are followed while they
// stay inside: a relative one, or an absolute one whose target starts with the root (either form);
// one pointing outside, or a chain of more than 40, is refused. Only regular files are read or
// replaced: FIFOs, sockets, devices and directories are refused before any read (a FIFO is opened
// O_NONBLOCK, so opening it never waits for a writer). Writes are atomic: a temporary file created
// O_EXCL in the target's directory (through the same directory fd), synced, then renameat(2) over
// the target; it is removed on every failure. Writing to an inward symlink writes its target and
// keeps the link. Sizes: see kMaxReadBytes and kMaxWriteBytes. A missing file, or a missing
// directory for a write, is the spec's resource-not-found error (-32002, "Resource not found: …").
//
// Thread contract: reentrant (const after construction; each call works on its own fds).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "base/unique_fd.h"

namespace tether::acp {

// A file larger than this is not read (the answer, escaped as JSON, must pass the agent's own line
// limit, often 64 MiB); content larger than this is not written (tether's own --max-line default
// is 64 MiB, so a write can only come close with a larger --max-line).
inline constexpr std::size_t kMaxReadBytes = std::size_t{32} << 20;
inline constexpr std::size_t kMaxWriteBytes = std::size_t{64} << 20;

struct FsError {
  int code = 0;  // JSON-RPC error code to answer with
  std::string message;
};

class FsRoot {
 public:
  // kWalk forces the fallback walk where openat2 exists, so that tests cover both.
  enum class Resolver { kAuto, kWalk };

  // `cwd` is the session directory; it is opened (and its real path taken) once, here. If it
  // cannot be opened, every request is refused.
  explicit FsRoot(const std::string& cwd, Resolver resolver = Resolver::kAuto);
  const std::string& root() const { return root_; }

  // The handlers: params of the request in, result (or error) out.
  std::variant<nlohmann::json, FsError> read_text_file(const nlohmann::json& params) const;
  std::variant<nlohmann::json, FsError> write_text_file(const nlohmann::json& params) const;

 private:
  // `path` relative to the root ("." for the root itself), or nothing when it is not under it.
  std::optional<std::string> relative(std::string_view path) const;
  // An fd for `rel` under the root: the directory itself (O_PATH) when `dir`, else the file
  // opened with `flags` (never following a last-component symlink outside). -errno on failure.
  int open_beneath(const std::string& rel, int flags, bool dir) const;
  int walk(const std::string& rel, int flags, bool dir) const;
  FsError error_for(const std::string& path, int err) const;

  base::UniqueFd dir_;  // the root, O_PATH | O_DIRECTORY; invalid if it could not be opened
  std::string root_;    // realpath of the session directory (messages, absolute symlinks)
  std::string given_;   // the directory as given, without trailing slashes, if absolute
  Resolver resolver_;
};

// Lines [line, line + limit) of `text` (line is 1-based; limit < 0: to the end), newlines kept.
std::string select_lines(std::string_view text, long line, long limit);

}  // namespace tether::acp
