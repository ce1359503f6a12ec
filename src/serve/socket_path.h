// Where a `tether serve` socket lives, for the server and for `--connect` clients alike.
//
// A NAME (letters, digits, '.', '_', '-'; at most 64; not starting with '.') means
// `$XDG_RUNTIME_DIR/tether/NAME.sock` when XDG_RUNTIME_DIR is an absolute path, else
// `/tmp/tether-UID/NAME.sock`. Anything with a '/' in it is a PATH, used as it is. The empty
// string is the name "default".
#pragma once

#include <string>
#include <string_view>
#include <optional>
#include <variant>

namespace tether::serve {

struct SocketLocation {
  std::string path;       // the socket
  std::string dir;        // its directory
  std::string lock_path;  // PATH + ".lock": locked by the live server for its whole life
  bool private_dir = false;  // dir is ours to create 0700 and to check (a NAME, not a PATH)
};

// The location, or a sentence saying why the name is not usable.
std::variant<SocketLocation, std::string> resolve_socket(std::string_view name_or_path);

// Creates the private directory (0700) when missing and checks it: a real directory (not a
// symlink), owned by us, no access for group or others. Nothing on success, else a sentence.
std::optional<std::string> check_private_dir(const SocketLocation& where);

// The name's lock is an open-file-description write lock on lock_path (F_OFD_SETLK): the server
// takes it on an fd it keeps open for its whole life, and it goes with that fd however the server
// ends. take_server_lock: false when another server holds it (errno EAGAIN) or it cannot be
// taken. server_holds_lock only tests it (F_OFD_GETLK), so a client's look never makes a starting
// server believe the name is taken: one is running or starting there.
bool take_server_lock(int fd);
bool server_holds_lock(const SocketLocation& where);

}  // namespace tether::serve
