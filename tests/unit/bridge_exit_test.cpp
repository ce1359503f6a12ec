// Unit tests for the sentences and error objects users see when a bridge stops:
// supervisor::describe(), BridgeExited::to_json() and give_up_message(). Pure values: no process
// is started (exit statuses are built by hand).
#include "supervisor/bridge.h"

#include <signal.h>
#include <sys/wait.h>

#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "base/signals.h"

using namespace std::chrono_literals;
using tether::proc::ExitStatus;
using tether::supervisor::BridgeExited;
using tether::supervisor::describe;
using tether::supervisor::ExitReason;
using tether::supervisor::give_up_message;

namespace {

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

ExitStatus exited_with(int code) {
  ExitStatus s;
  s.code = code;
  return s;
}

ExitStatus killed_by(int sig, bool core = false) {
  ExitStatus s;
  s.signaled = true;
  s.signal = sig;
  s.core_dumped = core;
  return s;
}

BridgeExited exit_event(ExitReason reason, std::optional<ExitStatus> status, std::string tail = {}) {
  BridgeExited e;
  e.reason = reason;
  e.status = status;
  e.stderr_tail = std::move(tail);
  e.generation = 3;
  return e;
}

}  // namespace

TEST_SUITE("supervisor::exit reasons") {

TEST_CASE("signal names") {
  CHECK(tether::base::signal_name(SIGSEGV) == "SIGSEGV");
  CHECK(tether::base::signal_name(SIGKILL) == "SIGKILL");
  CHECK(tether::base::signal_name(SIGTERM) == "SIGTERM");
  CHECK(tether::base::signal_name(999) == "signal 999");
}

TEST_CASE("ExitStatus from a wait status, and its words") {
  ExitStatus code = ExitStatus::from_wait_status(3 << 8);  // exited with 3
  CHECK_FALSE(code.signaled);
  CHECK(code.code == 3);
  CHECK(code.describe() == "status 3");
  ExitStatus sig = ExitStatus::from_wait_status(SIGSEGV | 0x80);  // killed, core dumped
  CHECK(sig.signaled);
  CHECK(sig.signal == SIGSEGV);
  CHECK(sig.core_dumped);
  CHECK(sig.describe() == "killed by SIGSEGV (core dumped)");
  CHECK(ExitStatus::from_wait_status(SIGTERM).describe() == "killed by SIGTERM");
}

TEST_CASE("exit code: message, exitStatus, stderr tail and last line") {
  auto e = exit_event(ExitReason::exited, exited_with(3), "starting up\nValueError: bad config\n");
  std::string text = describe(e);
  CHECK(contains(text, "exited with status 3"));
  CHECK(contains(text, "ValueError: bad config"));
  CHECK_FALSE(contains(text, "starting up"));  // only the last stderr line in the sentence

  auto j = e.to_json();
  CHECK(j["code"] == "bridge_exited");
  CHECK(j["exitStatus"] == 3);
  CHECK_FALSE(j.contains("signal"));
  CHECK(j["stderrTail"] == "starting up\nValueError: bad config\n");
  CHECK(j["generation"] == 3);
  CHECK(j["message"] == text);
}

TEST_CASE("exit status 0 is still reported") {
  auto j = exit_event(ExitReason::exited, exited_with(0)).to_json();
  CHECK(j["code"] == "bridge_exited");
  REQUIRE(j.contains("exitStatus"));
  CHECK(j["exitStatus"] == 0);
}

TEST_CASE("signal: the signal's name, no exit status") {
  auto e = exit_event(ExitReason::exited, killed_by(SIGSEGV, true), "Segmentation fault\n");
  std::string text = describe(e);
  CHECK(contains(text, "SIGSEGV"));
  CHECK(contains(text, "Segmentation fault"));
  auto j = e.to_json();
  CHECK(j["code"] == "bridge_exited");
  CHECK(j["signal"] == "SIGSEGV");
  CHECK_FALSE(j.contains("exitStatus"));
  CHECK(j["message"] == text);
}

TEST_CASE("hung: code bridge_hung, with the kill signal") {
  auto e = exit_event(ExitReason::hung, killed_by(SIGKILL), "last words\n");
  auto j = e.to_json();
  CHECK(j["code"] == "bridge_hung");
  CHECK(j["signal"] == "SIGKILL");
  std::string text = describe(e);
  CHECK(contains(text, "heartbeat"));
  CHECK(contains(text, "last words"));
  CHECK(j["message"] == text);
}

TEST_CASE("no stderr: no stderrTail and no stderr clause") {
  auto e = exit_event(ExitReason::exited, exited_with(1));
  auto j = e.to_json();
  CHECK_FALSE(j.contains("stderrTail"));
  CHECK_FALSE(contains(describe(e), "stderr"));
  auto blank = exit_event(ExitReason::exited, exited_with(1), "\n\n");
  CHECK_FALSE(contains(describe(blank), "stderr line"));
}

TEST_CASE("the last stderr line skips trailing blank lines") {
  auto e = exit_event(ExitReason::exited, exited_with(2), "first\nthe real last line\r\n\n\n");
  std::string text = describe(e);
  CHECK(contains(text, "the real last line"));
  CHECK_FALSE(contains(text, "first"));
}

TEST_CASE("a very long last stderr line is shortened in the sentence, kept whole in stderrTail") {
  std::string longline(5000, 'L');
  auto e = exit_event(ExitReason::exited, exited_with(1), longline + "\n");
  std::string text = describe(e);
  CHECK(contains(text, std::string(100, 'L')));
  CHECK(text.size() < 1000);  // one readable sentence, not a 5 KB dump
  CHECK(e.to_json()["stderrTail"] == longline + "\n");
}

TEST_CASE("other reasons each have their own sentence") {
  auto spawn = exit_event(ExitReason::spawn_failed, std::nullopt);
  spawn.detail = "./bridge.py: command not found";
  CHECK(contains(describe(spawn), "./bridge.py: command not found"));

  CHECK(contains(describe(exit_event(ExitReason::stdout_closed, std::nullopt)), "stdout"));
  CHECK(contains(describe(exit_event(ExitReason::stdin_closed, std::nullopt)), "stdin"));
  // After stdout closed, the status it then exited with is told too.
  CHECK(contains(describe(exit_event(ExitReason::stdout_closed, exited_with(4))), "status 4"));
  CHECK(describe(exit_event(ExitReason::exited, std::nullopt)) != describe(exit_event(ExitReason::stopped, std::nullopt)));
  CHECK(describe(exit_event(ExitReason::stdout_closed, std::nullopt)) !=
        describe(exit_event(ExitReason::stdin_closed, std::nullopt)));
}

TEST_CASE("give_up_message names the count, the window, the last cause and the stderr tail") {
  std::string tail = "alpha\nbravo\ncharlie\ndelta\necho\nfoxtrot\ngolf\n";
  auto last = exit_event(ExitReason::exited, exited_with(1), tail);
  std::string msg = give_up_message(3, 60s, last);
  CAPTURE(msg);
  CHECK(contains(msg, "3 restarts"));
  CHECK(contains(msg, "60 s"));
  CHECK(contains(msg, describe(last)));
  CHECK(contains(msg, "status 1"));
  // The last lines of stderr (five of them), not the whole tail.
  for (const char* line : {"charlie", "delta", "echo", "foxtrot", "golf"}) CHECK(contains(msg, line));
  CHECK_FALSE(contains(msg, "alpha"));
  CHECK_FALSE(contains(msg, "bravo"));
  CHECK(contains(msg, "again"));  // says how to try again
}

TEST_CASE("give_up_message: singular count, other windows, a signal as the cause") {
  auto last = exit_event(ExitReason::exited, killed_by(SIGSEGV));
  std::string one = give_up_message(1, 10s, last);
  CAPTURE(one);
  CHECK(contains(one, "1 restart "));
  CHECK(contains(one, "10 s"));
  CHECK(contains(one, "SIGSEGV"));
  CHECK_FALSE(contains(one, "stderr:"));  // no stderr, no stderr section
  std::string half = give_up_message(5, 1500ms, last);
  CHECK(contains(half, "5 restarts"));
  CHECK(contains(half, "1.5 s"));
}

}  // TEST_SUITE

TEST_CASE("a connection to a tether server (connect mode) is told as one, never as a process") {
  BridgeExited e;
  e.connection = true;
  e.generation = 2;
  for (auto r : {ExitReason::exited, ExitReason::stdout_closed, ExitReason::stdin_closed}) {
    e.reason = r;
    CHECK(describe(e) == "the tether server closed the connection");
  }
  e.reason = ExitReason::hung;
  CHECK(describe(e) == "the tether server stopped answering heartbeats and tether disconnected");
  CHECK(e.to_json()["code"] == "bridge_hung");
  e.reason = ExitReason::stopped;
  CHECK(describe(e) == "tether disconnected from the tether server");
  e.reason = ExitReason::restarted;
  e.detail = "manual restart";
  CHECK(describe(e) == "tether disconnected from the tether server to reconnect (manual restart)");
  e.reason = ExitReason::spawn_failed;
  e.detail = "no tether server is listening on /run/t.sock (start one with `tether serve`)";
  CHECK(describe(e) == e.detail);  // the whole sentence, no "cannot start the bridge"
  auto j = e.to_json();
  CHECK(j["code"] == "bridge_exited");
  CHECK(j["message"] == e.detail);

  std::string m = give_up_message(3, 60s, e);
  CHECK(contains(m, "tether gave up reconnecting to the tether server after 3 attempts within 60 s"));
  CHECK(contains(m, "Last cause: no tether server is listening on /run/t.sock"));
  CHECK(contains(m, "tether serve"));
  CHECK_FALSE(contains(m, "Fix the bridge"));
  CHECK(contains(give_up_message(0, 60s, e), "tether did not reconnect to the tether server (--max-restarts is 0)"));
}
