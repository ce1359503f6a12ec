// `tether batch`: a pipe-friendly filter. Prompts come in on stdin, one item per line (a JSON
// object with "prompt" and an optional "id", or plain text); exactly one JSON result line per item
// goes out on stdout, in input order (or completion order with --unordered). --jobs N bridges run
// in parallel, each a supervised Bridge with its own ACP session(s) and restart budget, all driven
// from this one thread by polling their event fds, stdin and a signalfd. --journal makes finished
// items durable so a rerun skips them; --shard K/N splits the items among independent runs.
//
// The pure pieces are in batch_input.h (lines, items, ids, shard hash), batch_journal.h and
// batch_order.h; this file is the loop that drives them. Its bridges and sessions come from the
// launch steps every front-end uses (launch.h: plan_launch once, launch_bridge per worker).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "cli/common.h"

namespace tether::cli {

struct BatchOptions {
  CommonOptions common;
  int jobs = 1;                        // --jobs: bridges in parallel
  std::string session = "per-item";    // --session per-item|shared
  std::string journal;                 // --journal FILE
  bool unordered = false;              // --unordered: completion order
  std::string shard;                   // --shard K/N
  bool progress = false;               // --progress: plain progress lines even when not a TTY
};

int run_batch(BatchOptions& options);

// Registers the subcommand; the returned function runs it after parsing.
std::function<int()> setup_batch(CLI::App& app, const std::vector<std::string>& bridge_argv);

}  // namespace tether::cli
