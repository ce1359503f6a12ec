// The front-ends' side of the turn log (store/log_db.h, issue 15): where the log is (--log FILE,
// --no-log, TETHER_LOG, the config's `log`), and TurnRecorder, which turns one turn's TurnEvents
// into the plain record the log's writer thread stores.
//
// talk, prompt and batch (directly or through --connect) each make one TurnRecorder per prompt
// they send, show it every event of the turn (see()), and finish() it when the turn ends; the
// first recorder of the process starts the writer thread (which opens the database there, off the
// path of the first frame). close_turn_log() stores what is queued before the process exits: main
// calls it after the command returns, reraise() before the signal ends us. A log that cannot be
// written is one warning on stderr then (none with -q), never a different exit status. A turn that
// never ended (the process was killed, a second Ctrl-C gave up on the agent) is not logged.
//
// Thread contract: thread-bound (the front-end's thread), except close_turn_log (any thread, once
// the front-end is done).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "acp/session.h"
#include "cli/common.h"
#include "store/log_db.h"

namespace CLI {
class App;
}

namespace tether::cli {

// Adds --log FILE and --no-log (talk, prompt, batch).
void add_log_options(CLI::App& app, CommonOptions& options);

// Where this command logs: --no-log / `log = false`: nothing; else --log FILE, else TETHER_LOG,
// else the config's `log = "PATH"`, else store::default_log_path().
std::optional<std::string> log_path(const CommonOptions& options);

// Stores every turn handed over so far and closes the log; prints the log's warning, if any, once.
// Idempotent.
void close_turn_log();

// The JSON summary of a diff ("+3 -1 src/a.c"): lines only in the new text, lines only in the old.
std::string diff_summary(std::string_view path, std::string_view old_text, std::string_view new_text);

class TurnRecorder {
 public:
  // `source`: talk, prompt or batch. Call right after the prompt was sent.
  TurnRecorder(const CommonOptions& options, std::string_view source, std::string prompt,
               const acp::SessionState& state);
  // Every event of the turn, in order (other clients' events are skipped here).
  void see(const acp::TurnEvent& event);
  // A permission question a person answered (talk): the option's name, or "cancelled".
  void answered(std::uint64_t token, std::string_view choice);
  // batch: the item (its id as JSON text, its input line) in this process's batch run.
  void set_batch(std::string_view id_json, std::int64_t index);
  // The turn ended (after its terminal event): hands the record to the log's writer.
  void finish(const acp::SessionState& state);

 private:
  struct Tool {
    nlohmann::json fields = nlohmann::json::object();
    std::vector<std::string> diffs;
  };
  void on_update(const acp::Update& u);

  bool enabled_ = false;
  std::uint64_t generation_ = 0;
  store::TurnRecord record_;
  acp::MessageBreaks breaks_;
  std::vector<std::string> tool_order_;
  std::map<std::string, Tool> tools_;
  nlohmann::json permissions_ = nlohmann::json::array();
  std::map<std::uint64_t, std::size_t> permission_index_;  // token -> index in permissions_
  std::optional<acp::Usage> usage_;
  bool ended_ = false;
};

}  // namespace tether::cli
