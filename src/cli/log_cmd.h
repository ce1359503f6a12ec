// `tether log` (issue 15): reads the turn log that talk, prompt and batch write (cli/turn_log.h,
// store/log_db.h). `tether log` lists recent turns (-n, --agent, --cwd, --since), `-q WORDS`
// searches them (SQLite FTS5 over prompt, answer and title), `tether log show [ID]` renders a
// whole conversation as talk showed it, `tether log path` prints where the log is; `--json` gives
// each form as data (keys in man/tether.1, LOG). An absent or empty log is "no turns logged yet",
// exit 0; the log is never created by reading it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace tether::cli {

struct LogOptions {
  CommonOptions common;             // --log FILE, --config (the config's `log`)
  int limit = 20;                   // -n N
  std::string agent;                // --agent NAME
  std::string cwd;                  // --cwd DIR
  std::string since;                // --since 2h | 3d | 2026-12-01 | 2026-12-01T10:00[Z]
  std::vector<std::string> search;  // -q WORDS
  bool json = false;                // --json
  std::string show_id;              // show [ID]: a conversation id or an ACP session id
  enum class Form { list, show, path } form = Form::list;
};

int run_log(LogOptions& options);

// Parses --since: a duration back from `now_ms` (30s, 15m, 2h, 3d, 1w) or an ISO date or date-time
// (local time; UTC with a trailing Z). Unix ms, or nothing when it is neither.
std::optional<std::int64_t> parse_since(std::string_view text, std::int64_t now_ms);

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_log(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
