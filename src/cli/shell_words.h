// Words for a POSIX shell: an argument, or a whole command line, written so that a shell reads it
// back as the same words. Shown to people to copy (batch's resume hint, talk's /status bridge
// line), so it stays printable whatever the words hold.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace tether::cli {

// One argument quoted for a POSIX shell (bash, zsh, dash): as it is when it has only characters
// no shell treats specially, else in single quotes; an argument with control characters (which
// would not survive a terminal) as $'...' with \n, \t and \xHH escapes (bash, zsh and ksh read it;
// dash does not, and has no other way to write them in one printable word).
std::string shell_quote(std::string_view arg);
// The words quoted one by one, joined by spaces; a first word NAME=VALUE is quoted too (a shell
// would take it for an assignment).
std::string shell_command(const std::vector<std::string>& argv);

}  // namespace tether::cli
