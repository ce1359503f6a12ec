// Unit tests of the two rules every front-end shares (cli/launch.h): when there is colour, and
// which permission policy --permission gives each command. Pure functions: no processes, no
// terminal (the environment and "is a terminal" are arguments).
#include <doctest/doctest.h>

#include <variant>

#include "cli/launch.h"

using tether::acp::PermissionPolicy;
using tether::cli::Asker;
using tether::cli::color_rule;
using tether::cli::kExitUsage;
using tether::cli::permission_rule;
using tether::cli::PermissionChoice;
using tether::cli::SetupError;

namespace {

PermissionChoice chosen(std::string_view option, Asker asker, bool at_terminal) {
  auto r = permission_rule(option, "cmd", asker, at_terminal);
  REQUIRE(std::holds_alternative<PermissionChoice>(r));
  return std::get<PermissionChoice>(r);
}

SetupError refused(std::string_view option, Asker asker, bool at_terminal) {
  auto r = permission_rule(option, "cmd", asker, at_terminal);
  REQUIRE(std::holds_alternative<SetupError>(r));
  return std::get<SetupError>(r);
}

}  // namespace

TEST_CASE("colour: --color always and never decide whatever the environment says") {
  for (bool tty : {false, true}) {
    for (const char* no_color : {static_cast<const char*>(nullptr), "", "1"}) {
      for (const char* term : {static_cast<const char*>(nullptr), "dumb", "xterm-256color"}) {
        CHECK(color_rule("always", no_color, term, tty));
        CHECK_FALSE(color_rule("never", no_color, term, tty));
      }
    }
  }
}

TEST_CASE("colour: auto is colour on a terminal, unless NO_COLOR is set or TERM is dumb") {
  CHECK(color_rule("auto", nullptr, "xterm-256color", true));
  CHECK(color_rule("auto", nullptr, nullptr, true));
  CHECK_FALSE(color_rule("auto", nullptr, "xterm-256color", false));  // a pipe or a file
  CHECK_FALSE(color_rule("auto", "1", "xterm-256color", true));
  CHECK_FALSE(color_rule("auto", "anything", nullptr, true));
  CHECK(color_rule("auto", "", "xterm", true));  // NO_COLOR set but empty does not count
  CHECK_FALSE(color_rule("auto", nullptr, "dumb", true));
  CHECK(color_rule("auto", nullptr, "dumber", true));  // only "dumb" itself
}

TEST_CASE("permission: no --permission asks only a person at a terminal, else denies") {
  CHECK(chosen("", Asker::person_at_terminal, true).policy == PermissionPolicy::ask);
  CHECK(chosen("", Asker::person_at_terminal, false).policy == PermissionPolicy::deny);
  // prompt and batch deny by default, at a terminal too: nobody answers them.
  CHECK(chosen("", Asker::nobody, true).policy == PermissionPolicy::deny);
  CHECK(chosen("", Asker::nobody, false).policy == PermissionPolicy::deny);
  CHECK(chosen("", Asker::person_at_terminal, true).warning.empty());
  CHECK(chosen("", Asker::person_at_terminal, false).warning.empty());
}

TEST_CASE("permission: an explicit allow, allow-always or deny is kept by every command") {
  for (Asker asker : {Asker::nobody, Asker::person_at_terminal}) {
    for (bool tty : {false, true}) {
      CHECK(chosen("allow", asker, tty).policy == PermissionPolicy::allow);
      CHECK(chosen("allow-always", asker, tty).policy == PermissionPolicy::allow_always);
      CHECK(chosen("deny", asker, tty).policy == PermissionPolicy::deny);
      CHECK(chosen("deny", asker, tty).warning.empty());
    }
  }
}

TEST_CASE("permission: ask is kept at a terminal, denied with a warning without one, refused where nobody asks") {
  auto at_terminal = chosen("ask", Asker::person_at_terminal, true);
  CHECK(at_terminal.policy == PermissionPolicy::ask);
  CHECK(at_terminal.warning.empty());

  auto piped = chosen("ask", Asker::person_at_terminal, false);
  CHECK(piped.policy == PermissionPolicy::deny);
  CHECK(piped.warning.find("needs a terminal") != std::string::npos);

  for (bool tty : {false, true}) {
    auto err = refused("ask", Asker::nobody, tty);
    CHECK(err.exit_code == kExitUsage);
    CHECK(err.message.find("tether cmd cannot ask anyone") != std::string::npos);
  }
}

TEST_CASE("permission: an unknown word is a usage error") {
  CHECK(refused("maybe", Asker::person_at_terminal, true).exit_code == kExitUsage);
  CHECK(refused("maybe", Asker::nobody, false).exit_code == kExitUsage);
}

TEST_CASE("permission: `ask` from the config file asks where someone can answer, and silently denies elsewhere") {
  using tether::cli::Source;
  auto from_config = [](Asker asker, bool at_terminal) {
    auto r = permission_rule("ask", "cmd", asker, at_terminal, Source::config_file);
    REQUIRE(std::holds_alternative<PermissionChoice>(r));
    return std::get<PermissionChoice>(r);
  };
  CHECK(from_config(Asker::person_at_terminal, true).policy == PermissionPolicy::ask);
  // prompt and batch: no refusal (one config file serves every command), and no warning each run.
  for (bool tty : {false, true}) {
    CHECK(from_config(Asker::nobody, tty).policy == PermissionPolicy::deny);
    CHECK(from_config(Asker::nobody, tty).warning.empty());
  }
  CHECK(from_config(Asker::person_at_terminal, false).policy == PermissionPolicy::deny);
  // The same word on the command line is still refused where nobody can answer.
  CHECK(refused("ask", Asker::nobody, false).exit_code == kExitUsage);
}
