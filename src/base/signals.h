// Names of signals as users read them ("SIGSEGV"), and the signal mask tether's threads share.
#pragma once

#include <string>

namespace tether::base {

// "SIGSEGV" for 11; "signal 99" for a number without a name.
std::string signal_name(int sig);

}  // namespace tether::base
