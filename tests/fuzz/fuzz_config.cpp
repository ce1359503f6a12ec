// Fuzz target: the config file (cli/config_file.h, cli/config.h): toml++ and tether's reading of
// its tree. The input is a whole file. The oracle, besides not crashing: every error names the
// file and a line and column ("PATH:LINE:COLUMN: ..."), and a file that is read has every
// setting, agent and MCP server placed at a line of the file.
#include <cstdint>
#include <string>
#include <variant>

#include "cli/config.h"
#include "fuzz_support.h"

using namespace tether::cli;

namespace {

bool starts_with_place(const std::string& err) {
  const std::string prefix = "/f.toml:";
  if (err.rfind(prefix, 0) != 0) return false;
  std::size_t i = prefix.size();
  std::size_t digits = 0;
  while (i < err.size() && err[i] >= '0' && err[i] <= '9') ++i, ++digits;
  return digits > 0 && i < err.size() && err[i] == ':';
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  ConfigKeys keys;
  keys.top = {"cwd", "timeout", "retries", "permission", "quiet", "mode"};
  keys.sections["talk"] = keys.top;
  keys.sections["serve"] = {"cwd", "mode"};
  auto read = load_config_text(text, "/f.toml", keys);
  if (auto* err = std::get_if<std::string>(&read)) {
    FUZZ_CHECK(starts_with_place(*err));
    return 0;
  }
  const auto& c = std::get<ConfigFile>(read);
  for (const auto& s : c.top) FUZZ_CHECK(s.line >= 1);
  for (const auto& [name, a] : c.agents) FUZZ_CHECK(!a.command.empty() && !a.command[0].empty());
  for (const auto& m : c.mcp) FUZZ_CHECK(!m.name.empty());
  return 0;
}
