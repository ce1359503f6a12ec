// Standard descriptors 0-2 at start-up. A process started with one of them closed would hand that
// number to the next file it opens (a signalfd read as stdin, the --trace file written as stdout).
// Each closed one is therefore taken by /dev/null, opened in the direction that makes its use
// fail: stdin write-only (a read fails with EBADF), stdout and stderr read-only (a write fails
// with EBADF). So a closed stdin or stdout is an I/O error where it is used (exit 74), exactly as
// the closed descriptor would have been, and nothing tether opens later can land on 0-2.
#pragma once

namespace tether::base {

// Call first thing in main(), before anything opens a file or starts a thread. False when /dev/null
// could not be opened (then the descriptor stays closed: nothing better can be done).
bool reserve_standard_fds();

}  // namespace tether::base
