#include "base/signals.h"

#include <string.h>

namespace tether::base {

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);  // glibc >= 2.32; nullptr for unknown numbers
  if (abbrev == nullptr) return "signal " + std::to_string(sig);
  return std::string("SIG") + abbrev;
}

}  // namespace tether::base
