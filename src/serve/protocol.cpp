// The shapes of serve/protocol.h that are more than a name.
#include "serve/protocol.h"

#include <nlohmann/json.hpp>

#include "tether_config.h"

namespace tether::serve::protocol {

nlohmann::json ready_meta(const std::string& main_session, std::uint64_t generation) {
  return {{kMainSessionId, main_session}, {"generation", generation}, {"version", TETHER_VERSION}};
}

}  // namespace tether::serve::protocol
