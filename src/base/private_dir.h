// Private directories for state kept outside the user's home (e.g. under /tmp or
// $XDG_RUNTIME_DIR), where another local user may have been first: a directory that is ours alone,
// checked rather than trusted, and files in it that are never reached through a symlink.
//
// open_private_dir creates the directory 0700 when it is missing and refuses (with a sentence that
// says what is wrong and what to do) a symlink or any other file in its place, a directory that
// belongs to another user, and one that group or others may enter. The check is made on the
// directory it opened (O_NOFOLLOW | O_DIRECTORY, then fstat), so what is checked is what is used:
// callers then work through the fd (openat), never by name again.
//
// Not for the user's own trees (a config file, a project directory): those are theirs to arrange.
//
// Thread contract: reentrant (functions of the file system only).
#pragma once

#include <string>
#include <variant>

#include "base/unique_fd.h"

namespace tether::base {

// The directory `path` (absolute), created 0700 when missing, as an O_DIRECTORY fd, or why not.
// `make_parents`: missing parent directories are created too (0700); existing ones are used as
// they are (only `path` itself must be private).
std::variant<UniqueFd, std::string> open_private_dir(const std::string& path, bool make_parents = false);

// Opens `name` (one component) in the private directory `dirfd`: O_NOFOLLOW always, so a symlink
// planted there is refused, never followed; with O_CREAT in `flags` a new file is created
// O_EXCL, 0600. The file must be a regular file of ours with one link. -1 and errno on failure
// (ELOOP for a symlink, EPERM for a file that is not ours or not a plain file).
int open_private_file(int dirfd, const std::string& name, int flags);

}  // namespace tether::base
