#include "cli/batch.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>

#include "acp/outcome.h"
#include "acp/session.h"
#include "cli/attachments.h"
#include "cli/batch_input.h"
#include "cli/batch_journal.h"
#include "cli/option_values.h"
#include "cli/batch_order.h"
#include "cli/batch_progress.h"
#include "cli/batch_record.h"
#include "cli/batch_report.h"
#include "cli/event_stream.h"
#include "cli/launch.h"
#include "cli/terminal_text.h"
#include "cli/tool_calls.h"
#include "cli/turn_log.h"

namespace tether::cli {
namespace {

using acp::error_object;
using batch::Item;
using batch::ojson;
using nlohmann::json;

// An admitted item that needs a bridge: queued, or in flight on a worker.
struct Job {
  std::uint64_t seq = 0;
  Item item;
  std::uint64_t hash = 0;
  batch::Tries tries;  // prompts sent so far, and when the first was
};

// One supervised bridge and what runs on it. `session` lives for the worker's life; with
// --session per-item, each attempt starts a fresh ACP session on it (session/new, no new
// initialize).
struct Worker {
  int number = 0;
  std::unique_ptr<supervisor::Bridge> bridge;
  std::unique_ptr<acp::AcpSession> session;
  std::optional<acp::Turn> turn;  // destroyed before `session`
  std::unique_ptr<Job> job;       // in flight
  batch::Attempt attempt;         // what the attempt in flight gathered (answer, tool calls, usage)
  std::uint64_t dropped_at_start = 0;  // the bridge's oversize-line count when the attempt began
  bool retired = false;
  std::optional<TurnRecorder> log;  // the attempt in flight, for the turn log
};

// Bytes of a pipe read ahead of what admission needs, so that the end of a short input (and with
// it the total) is seen at once; the read-ahead of items is bounded by the window as before.
constexpr std::size_t kReadAhead = 64 * 1024;

class BatchRunner {
 public:
  BatchRunner(BatchOptions& o, LaunchPlan plan, batch::Shard shard, std::unique_ptr<batch::Journal> journal)
      : o_(o),
        plan_(std::move(plan)),
        shard_(shard),
        journal_(std::move(journal)),
        reader_(o.common.max_line),
        count_(o.common.max_line, shard),
        order_(o.unordered),
        per_item_(o.session == "per-item"),
        window_limit_(static_cast<std::uint64_t>(std::max(32, 8 * o.jobs))),
        throughput_(static_cast<std::size_t>(std::max(20, 4 * o.jobs))),
        progress_(o.common.quiet && !o.progress ? false : o.progress || ::isatty(STDERR_FILENO) == 1, o.progress) {
    for (int i = 0; i < o.jobs; ++i) {
      workers_.emplace_back();
      workers_.back().number = i + 1;
    }
    stdout_tty_ = ::isatty(STDOUT_FILENO) == 1;
    shared_terminal_ = stdout_tty_ && batch::same_file(STDOUT_FILENO, STDERR_FILENO);
    stdin_from_start_ = ::lseek(STDIN_FILENO, 0, SEEK_CUR) == 0;
    if (journal_) journal_ok_total_ = journal_->index().ok_entries();
    // The total is counted for the progress line only: a run nobody watches does not read its
    // input twice.
    if (progress_.enabled()) count_.start();
  }

  ~BatchRunner() { shutdown_workers(); }

  int run() {
    sig_ = open_signal_fd();
    start_ = base::Clock::now();
    throughput_.start(start_);
    count_.step();  // most inputs are counted in this one step, before the first progress line
    for (;;) {
      // Until nothing moves: writing lines frees the window, which lets more input in, which may
      // finish at once (journal, bad input) and be written, and so on.
      bool moved = true;
      while (moved && !io_error_) {
        std::uint64_t before = order_.admitted() + order_.taken();
        admit();
        dispatch();
        if (!flush()) break;
        moved = order_.admitted() + order_.taken() != before;
      }
      if (io_error_ || finished()) break;
      count_.step();
      wait();
    }
    if (stop_signal_) progress_.clear();
    else progress_.end([this] { return progress_text(); });
    if (stop_signal_) say_interrupted(stop_signal_, 0);
    close_sessions();
    shutdown_workers();
    if (stop_signal_) reraise(stop_signal_);
    if (io_error_) return kExitIoErr;
    summary();
    // --mode/--model/--set that the agent does not take is a usage error, whichever bridge said so.
    if (no_bridges_) return last_bridge_error_.value("code", "") == "usage" ? kExitUsage : kExitUnavailable;
    return failed_ > 0 ? kExitNotClean : kExitOk;
  }

 private:
  // Every line tether writes on stderr during the run: the progress line is erased first (the
  // next tick draws it again below).
  void say(const std::string& message) {
    progress_.clear();
    error_line(message);
  }

  // --- input -----------------------------------------------------------------------------------

  std::size_t live_workers() const {
    std::size_t n = 0;
    for (const auto& w : workers_) n += !w.retired;
    return n;
  }

  // Admits input items while the read-ahead allows: results waiting to be written stay under the
  // window, and at most one queued item per live bridge waits for a free one.
  void admit() {
    while (!input_done_ && !stopping_) {
      if (order_.window() >= window_limit_) return;
      if (!no_bridges_ && ready_.size() >= std::max<std::size_t>(1, live_workers())) return;
      std::optional<batch::InputLine> line = reader_.next();
      if (!line && stdin_eof_) {
        line = reader_.finish();
        if (!line) {
          input_done_ = true;
          total_ = order_.admitted();  // exact, whatever was counted before
          return;
        }
      }
      if (!line) return;  // wait for more input
      admit_line(*line);
    }
  }

  void admit_line(const batch::InputLine& line) {
    Item item = batch::parse_item(line);
    if (!shard_.contains(item.id_text)) return;
    if (!item.error && item.id_given && !ids_.insert(item.id_text))
      item.error = "input line " + std::to_string(item.index) + ": duplicate id " + item.id_text;
    auto job = std::make_unique<Job>();
    job->seq = order_.admit();
    job->hash = batch::item_hash(item);
    job->item = std::move(item);
    if (journal_ && !job->item.error) {
      if (const auto* e = journal_->index().find(job->item.index)) {
        journal_ok_seen_ += e->ok;
        if (e->hash != job->hash) {
          ++journal_mismatches_;  // made from another input: run the item again
        } else if (e->ok) {
          if (auto recorded = journal_->result_line(*e)) {
            order_.put(job->seq, std::move(*recorded));
            ++ok_;
            ++from_journal_;
            return;
          }
          ++journal_unreadable_;
        }
      }
    }
    if (job->item.error) {
      finish(*job, failure(*job, error_object("bad_input", *job->item.error)));
      return;
    }
    if (no_bridges_) {
      finish(*job, failure(*job, last_bridge_error_));
      return;
    }
    ready_.push_back(std::move(job));
  }

  void read_stdin() {
    char buf[64 * 1024];
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return;
    if (n < 0) {
      say(std::string("cannot read stdin: ") + strerror(errno));
      io_error_ = true;
    }
    if (n <= 0) {
      stdin_eof_ = true;
      count_.end_of_input();
      return;
    }
    reader_.push(std::string_view(buf, static_cast<std::size_t>(n)));
    count_.read(std::string_view(buf, static_cast<std::size_t>(n)));
  }

  // --- bridges ---------------------------------------------------------------------------------

  void start_bridges() {
    if (bridges_started_) return;
    bridges_started_ = true;
    for (auto& w : workers_) {
      // Its session comes with its first item (start_attempt): until then service() answers
      // what the bridge asks by itself.
      StartedBridge started = launch_bridge(plan_, sig_.get());
      w.bridge = std::move(started.bridge);
      if (started.caught) {
        // Interrupted while this bridge started (or waited for a server): it is stopped, the
        // rest are not started, and dispatch() cancels what waits.
        on_signal(started.caught);
        return;
      }
      if (started.failed) retire(w, started.failed->to_json());
    }
  }

  void dispatch() {
    if (stopping_) {
      // Interrupted: what has not started will not (a retry queued meanwhile included).
      for (auto& job : std::exchange(ready_, {})) {
        if (job->tries.attempts > 0) {
          // A retry waiting for a bridge: the item did run, so it counts as cancelled, not as
          // not started.
          ++cancelled_running_;
          finish(*job,
                 failure(*job, error_object("cancelled", "tether was interrupted while the item waited to be tried again")));
          continue;
        }
        ++cancelled_queued_;
        finish(*job, failure(*job, error_object("cancelled", "tether was interrupted before the item ran")));
      }
      return;
    }
    if (ready_.empty()) return;
    start_bridges();
    if (stopping_) return dispatch();  // interrupted while the bridges started
    for (auto& w : workers_) {
      if (ready_.empty()) break;
      if (w.retired || w.job) continue;
      w.job = std::move(ready_.front());
      ready_.pop_front();
      start_attempt(w);
    }
  }

  void start_attempt(Worker& w) {
    Job& job = *w.job;
    ++job.tries.attempts;
    if (!job.tries.started) job.tries.started = base::Clock::now();
    w.attempt.clear();
    w.dropped_at_start = w.bridge->counters().oversize_lines;
    w.turn.reset();
    if (!w.session) {
      w.session = make_session(*w.bridge, plan_);
    } else if (per_item_) {
      // A fresh session/new on the same connection: the handshake is not repeated per item. The
      // previous item's session is closed at the agent first (when it can close sessions).
      w.session->start_new_session();
    }
    if (job.item.attachments.empty()) {
      w.turn.emplace(w.session->prompt(job.item.prompt, base::seconds(o_.common.timeout)));
      log_item(w, job);
      return;
    }
    // The files are read now (an item that cannot have them fails alone, as bad input) and the
    // blocks built once the agent has said what it accepts (the first item may open the session).
    auto inputs = read_attachments(job.item.attachments);
    if (auto* err = std::get_if<std::string>(&inputs)) {
      std::unique_ptr<Job> failed = std::move(w.job);
      finish(*failed, failure(*failed, error_object("bad_input", *err)));
      return;
    }
    w.turn.emplace(w.session->prompt_built(content_builder(std::get<std::vector<Attachment>>(std::move(inputs)), job.item.prompt),
                                           base::seconds(o_.common.timeout)));
    log_item(w, job);
  }

  // The item's turn in the log (cli/turn_log.h), linked to this batch run.
  void log_item(Worker& w, const Job& job) {
    if (!logging_) return;  // --no-log: no recorder to make and drop per item
    w.log.emplace(o_.common, "batch", job.item.prompt, w.session->state());
    w.log->set_batch(job.item.id_text, static_cast<std::int64_t>(job.item.index));
    if (!job.item.attachments.empty()) w.log->set_attachments(json(job.item.attachments));
  }

  // Takes the bridge out of service: its job (if any) goes back to the queue, and when no bridge
  // is left every item still waiting becomes an error record.
  void retire(Worker& w, json why, bool nothing_open = false) {
    if (w.retired) return;
    w.retired = true;
    w.turn.reset();
    w.session.reset();
    // A bridge whose session could not be set up (no turn ran on it; at most a session whose
    // settings were refused) is discarded: it need not get the whole grace to exit on stdin EOF
    // (some agents never do).
    if (w.bridge) {
      if (nothing_open) w.bridge->stop(kClosedGrace);
      else w.bridge->stop();
    }
    last_bridge_error_ = std::move(why);
    if (!o_.common.quiet) {
      say("bridge " + std::to_string(w.number) + " is out of service: " + acp::message_with_tail(last_bridge_error_, 3));
    }
    if (w.job) ready_.push_front(std::move(w.job));
    if (live_workers() == 0) {
      no_bridges_ = true;
      for (auto& job : std::exchange(ready_, {})) finish(*job, failure(*job, last_bridge_error_));
    }
  }

  // The error that retires a bridge whose supervisor gave up (when no event carried one).
  json gave_up_error(const Worker& w) const {
    auto st = w.bridge->status();
    std::string message = st.last_exit
                              ? supervisor::give_up_message(st.restarts_in_window, plan_.bridge.restart.window, *st.last_exit)
                              : "the bridge is past its restart limit";
    return error_object("restart_limit", message);
  }

  void service(Worker& w) {
    if (w.retired || !w.bridge) return;
    if (w.turn) {
      for (auto& ev : w.turn->poll()) {
        on_turn_event(w, ev);
        if (!w.turn) break;
      }
    } else if (w.session) {
      for (auto& ev : w.session->poll()) {
        if (ev.kind == acp::TurnEvent::Kind::notice) on_notice(w, ev);
        else if (ev.kind == acp::TurnEvent::Kind::output) on_output(w, ev);
      }
    } else {
      // Before the worker's first item (or after its session was dropped): nobody else reads
      // this bridge's events. A request for a session that is gone still gets its one answer.
      for (auto& ev : w.bridge->events()->drain()) {
        if (ev.kind == rpc::Event::Kind::request)
          w.bridge->respond_error(ev.generation, ev.message["id"], rpc::kInternalError, "the session has ended");
      }
    }
    if (!w.retired && !w.job && w.bridge->state() == supervisor::State::failed) retire(w, gave_up_error(w));
  }

  void say_notice(const Worker& w, const std::string& text) {
    if (o_.common.verbose > 0 && !text.empty()) say("bridge " + std::to_string(w.number) + ": " + text);
  }

  void on_notice(const Worker& w, const acp::TurnEvent& ev) {
    if (!ev.server_trouble) {
      say_notice(w, ev.text);
      return;
    }
    // Trouble at the tether server is an error; every connection hears it, the person once.
    if (ev.text == last_server_trouble_) return;
    last_server_trouble_ = ev.text;
    say(ev.text);
  }

  // A line the agent wrote on stdout that is not JSON (a sign-in URL, say): a person should see it.
  void on_output(const Worker& w, const acp::TurnEvent& ev) {
    if (o_.common.quiet) return;
    // say() passes it through the terminal sanitizer when stderr is a terminal.
    say("bridge " + std::to_string(w.number) + ": the agent wrote on stdout: " + ev.text);
  }

  void on_turn_event(Worker& w, acp::TurnEvent& ev) {
    using K = acp::TurnEvent::Kind;
    if (ev.other_client) return;  // another client's turn in a shared session: not this item's
    if (w.log) w.log->see(ev);
    switch (ev.kind) {
      case K::update:
        w.attempt.take(ev.update);
        break;
      case K::retry:
        w.attempt.clear();
        break;
      case K::output:
        on_output(w, ev);
        break;
      case K::notice:
        on_notice(w, ev);
        break;
      case K::permission:
      case K::permission_withdrawn:
      case K::reply:
        break;  // answered by the policy (batch never asks); batch sends no request() of its own
      case K::completed:
      case K::failed:
        on_terminal(w, ev);
        break;
    }
  }

  void on_terminal(Worker& w, const acp::TurnEvent& ev) {
    if (w.log) w.log->finish(w.session->state());
    w.log.reset();
    w.turn.reset();
    std::unique_ptr<Job> job = std::move(w.job);
    const std::string code = ev.kind == acp::TurnEvent::Kind::failed ? ev.error.value("code", "") : "";

    // An answer the agent finished stands, even when a cancel (timeout, signal) crossed it.
    if (ev.kind == acp::TurnEvent::Kind::completed && (ev.cancelled == acp::CancelCause::none || ev.stop_reason != "cancelled")) {
      const auto dropped_now = w.bridge->counters().oversize_lines;
      const auto dropped = dropped_now > w.dropped_at_start ? dropped_now - w.dropped_at_start : 0;
      const auto now = base::Clock::now();
      if (auto line = batch::answer_line(job->item, job->tries, ev, w.attempt, dropped, now)) {
        finish_line(*job, true, std::move(*line));
        return;
      }
      finish(*job, batch::answer(job->item, job->tries, ev, w.attempt, dropped, now));
      return;
    }
    if (ev.cancelled == acp::CancelCause::interrupt || stopping_) {
      ++cancelled_running_;
      finish(*job, failure(*job, error_object("cancelled", "tether was interrupted before the item finished")));
      return;
    }
    if (ev.during_setup && ev.cancelled == acp::CancelCause::none) {
      // The session could not be set up on this bridge (it is past its restart limit, or it does
      // not speak ACP): the item never reached the agent, so it goes to another bridge as it was.
      --job->tries.attempts;
      w.job = std::move(job);
      retire(w, ev.error, /*nothing_open=*/true);
      return;
    }
    bool crashed = code == "bridge_exited" || code == "bridge_hung" || code == "restart_limit";
    bool timed_out = ev.cancelled == acp::CancelCause::timeout;
    if (code == "restart_limit" || w.bridge->state() == supervisor::State::failed)
      retire(w, code == "restart_limit" ? ev.error : gave_up_error(w));
    if ((crashed || timed_out) && job->tries.attempts <= o_.common.retries && !no_bridges_) {
      if (!o_.common.quiet) {
        say("item " + job->item.id_text + ": " + (timed_out ? "timed out" : acp::message_with_tail(ev.error, 1)) +
            "; trying again (attempt " + std::to_string(job->tries.attempts + 1) + " of " +
            std::to_string(o_.common.retries + 1) + ")");
      }
      ready_.push_front(std::move(job));
      return;
    }
    json err = ev.kind == acp::TurnEvent::Kind::failed ? ev.error
                                                        : error_object("timeout", "the turn did not finish within the timeout");
    finish(*job, failure(*job, std::move(err)));
  }

  // --- results ---------------------------------------------------------------------------------

  ojson failure(const Job& job, const json& error) const {
    return batch::failure(job.item, job.tries, error, base::Clock::now());
  }

  // The item is done: its journal record goes into the next group commit, and its line is written
  // once that commit is durable.
  void finish(const Job& job, const ojson& result) {
    finish_line(job, result.value("ok", false), batch::dump_record(result, job.item.id_raw));
  }

  // The same with the record written already (batch::answer_line).
  void finish_line(const Job& job, bool ok, std::string line) {
    if (ok) ++ok_;
    else ++failed_;
    throughput_.completed(base::Clock::now());
    if (journal_) journal_batch_ += batch::journal_line(job.item, job.hash, ok, line);
    committing_.emplace_back(job.seq, std::move(line));
  }

  // Group commit, then every line whose turn has come. False when tether must stop (stdout or the
  // journal failed).
  bool flush() {
    if (io_error_) return false;
    if (!committing_.empty()) {
      if (journal_ && !journal_->append(journal_batch_)) {
        say(std::string("cannot write the journal ") + o_.journal + ": " + strerror(errno) +
            "; stopping (finished items not yet recorded are not written)");
        io_error_ = true;
        return false;
      }
      journal_batch_.clear();
      for (auto& [seq, line] : committing_) order_.put(seq, std::move(line));
      committing_.clear();
    }
    auto lines = order_.take();
    // On the terminal the progress line is drawn on, a result line would be glued to it: it is
    // erased first and drawn again below the lines.
    bool redraw = shared_terminal_ && !lines.empty() && progress_.shown();
    if (redraw) progress_.clear();
    for (auto& line : lines) {
      if (stdout_tty_) line = json_for_terminal(line);  // same JSON, nothing a terminal acts on
      line += '\n';
      if (!write_stdout(line)) {
        if (errno == EPIPE) {
          // The reader is gone (`| head`): end quietly, as SIGPIPE would have. Unless a stop
          // signal came first (Ctrl-C on `batch | tee`, where tee dies first): then the summary
          // and the resume hint still go to stderr, and the exit is the signal's.
          progress_.clear();
          if (stop_signal_) say_interrupted(stop_signal_, in_flight());
          shutdown_workers();
          reraise(stop_signal_ ? stop_signal_ : SIGPIPE);
        }
        say(std::string("cannot write to stdout: ") + strerror(errno));
        io_error_ = true;
        return false;
      }
    }
    // After a stop signal no frame is drawn: it would count the cancelled items as failed and
    // show a time left, under the summary that says otherwise.
    if (!stopping_) progress_.tick([this] { return progress_text(); }, redraw);
    return true;
  }

  bool finished() const {
    if (!input_done_ && !stopping_) return false;
    if (!ready_.empty() || !committing_.empty() || order_.window() > 0) return false;
    for (const auto& w : workers_)
      if (w.job) return false;
    return true;
  }

  // --- the loop --------------------------------------------------------------------------------

  void wait() {
    std::vector<pollfd>& fds = poll_fds_;  // kept: no allocation per wait
    fds.clear();
    fds.push_back({sig_.get(), POLLIN, 0});
    bool want_items = !input_done_ && order_.window() < window_limit_ &&
                      (no_bridges_ || ready_.size() < std::max<std::size_t>(1, live_workers()));
    // Beyond what admission needs, a pipe is read up to kReadAhead bytes so its end is seen early.
    bool want_stdin = !stdin_eof_ && !stopping_ && (want_items || reader_.buffered() < kReadAhead);
    if (want_stdin) fds.push_back({STDIN_FILENO, POLLIN, 0});
    bool drawing = progress_.enabled() && !stopping_;
    base::Deadline deadline = drawing ? base::Deadline::at(progress_.next_due()) : base::Deadline::never();
    if (count_.stepping()) deadline = base::Deadline::at(base::Clock::now());  // count on at once
    for (auto& w : workers_) {
      if (w.retired || !w.bridge) continue;
      // The session's fd: with --allow-terminal it also wakes for the agent's terminals.
      fds.push_back({w.session ? w.session->fd() : w.bridge->events()->fd(), POLLIN, 0});
      if (w.turn) deadline = base::Deadline::earliest(deadline, w.turn->next_deadline());
      else if (w.session) deadline = base::Deadline::earliest(deadline, w.session->next_deadline());
    }
    int r = ::poll(fds.data(), fds.size(), deadline.poll_timeout_ms());
    if (r < 0 && errno != EINTR) {
      say(std::string("poll: ") + strerror(errno));
      io_error_ = true;
      return;
    }
    if (r > 0 && fds[0].revents) on_signal(read_signal(sig_.get()));
    if (want_stdin && r > 0 && fds[1].revents) read_stdin();
    // Every worker, readable or not: a turn's timers (timeout, cancel grace) run in poll() too,
    // and draining an empty queue costs nothing.
    for (auto& w : workers_) service(w);
  }

  void on_signal(int sig) {
    if (sig != SIGINT && sig != SIGTERM && sig != SIGHUP) return;
    if (stopping_) {
      // A second signal: no more waiting for the agents. Their items get a cancelled line now,
      // so every item read still gets its line, and those finished behind them are written.
      stop_signal_ = sig;
      for (auto& w : workers_) {
        if (!w.job) continue;
        ++cancelled_running_;
        finish(*w.job, failure(*w.job, error_object("cancelled", "tether was interrupted again before the item finished")));
        w.job.reset();
      }
      flush();  // on EPIPE it ends the run itself, with this signal
      progress_.clear();
      say_interrupted(sig, 0);
      shutdown_workers();
      reraise(sig);
    }
    stopping_ = true;
    stop_signal_ = sig;
    for (auto& w : workers_)
      if (w.turn) w.turn->cancel(acp::CancelCause::interrupt);
  }

  // Every worker's last session is closed at its agent (which may keep a process per session),
  // all within one short wait.
  void close_sessions() {
    auto deadline = base::Deadline::after(kCloseWait);
    for (auto& w : workers_) {
      w.turn.reset();
      if (w.session && !w.retired && w.session->close(deadline) && w.bridge) w.bridge->stop(kClosedGrace);
    }
  }

  void shutdown_workers() {
    for (auto& w : workers_) {
      w.turn.reset();
      w.session.reset();
    }
    for (auto& w : workers_)
      if (w.bridge) w.bridge->stop();
  }

  std::uint64_t in_flight() const {
    std::uint64_t n = 0;
    for (const auto& w : workers_) n += w.job != nullptr;
    return n;
  }

  // --- progress --------------------------------------------------------------------------------

  // Every item of the input: exact once all of it was read, else counted (when progress is shown).
  std::optional<std::uint64_t> total() const { return total_ ? total_ : count_.total(); }

  // Items of the total that are not finished and will run: those the journal holds as ok further
  // on are re-emitted, not run, so they take no time (an estimate: a record made from another
  // input is only found out when its line is read).
  std::uint64_t to_run() const {
    auto all = total();
    if (!all) return 0;
    std::uint64_t finished = ok_ + failed_;
    std::uint64_t ahead = input_done_ ? 0 : journal_ok_total_ - std::min(journal_ok_total_, journal_ok_seen_);
    std::uint64_t left = *all > finished ? *all - finished : 0;
    return left > ahead ? left - ahead : 0;
  }

  std::string progress_text() const {
    batch::ProgressCounts c;
    c.done = order_.taken();
    c.ok = ok_;
    c.failed = failed_;
    c.from_journal = from_journal_;
    c.total = total();
    c.to_run = to_run();
    c.rate = throughput_.per_second(base::Clock::now());
    return batch::progress_text(c);
  }

  // Interrupted: what was done and what was not, and with --journal the command that resumes.
  // `abandoned`: items in flight given up without a line (a second signal).
  void say_interrupted(int sig, std::uint64_t abandoned) {
    if (o_.common.quiet) return;
    batch::InterruptCounts c;
    c.signal = sig;
    c.ok = ok_;
    c.failed = failed_ - std::min(failed_, cancelled_running_ + cancelled_queued_);
    c.cancelled_running = cancelled_running_ + abandoned;
    c.total = total();
    error_line(batch::interrupt_summary(c));
    if (journal_) batch::say_resume_hint(ok_, stdin_from_start_);
  }

  void summary() {
    batch::say_journal_warnings(journal_mismatches_, journal_unreadable_);
    if (o_.common.quiet) return;
    double secs = std::chrono::duration<double>(base::Clock::now() - start_).count();
    error_line(batch::run_summary({.items = order_.taken(), .ok = ok_, .failed = failed_, .from_journal = from_journal_,
                                   .seconds = secs, .no_bridges = no_bridges_}));
  }

  BatchOptions& o_;
  const LaunchPlan plan_;  // every worker's bridge and session options
  const batch::Shard shard_;
  std::unique_ptr<batch::Journal> journal_;
  base::UniqueFd sig_;

  batch::LineReader reader_;
  batch::InputCount count_;              // the input's items, for the total (when progress is shown)
  std::optional<std::uint64_t> total_;  // set once all input was read: then exact
  batch::IdRegistry ids_;
  batch::OrderBuffer order_;
  std::vector<pollfd> poll_fds_;  // wait()'s
  const bool per_item_;
  const bool logging_ = log_path(o_.common).has_value();  // the turn log is on
  const std::uint64_t window_limit_;

  std::vector<Worker> workers_;
  std::deque<std::unique_ptr<Job>> ready_;  // admitted, waiting for a bridge (retries first)
  std::vector<std::pair<std::uint64_t, std::string>> committing_;  // finished, not yet durable
  std::string journal_batch_;                                      // their journal lines

  bool stdin_eof_ = false;
  bool input_done_ = false;
  bool bridges_started_ = false;
  bool no_bridges_ = false;
  json last_bridge_error_;
  std::string last_server_trouble_;  // the last tether server trouble told (each connection hears it)
  bool stopping_ = false;
  int stop_signal_ = 0;
  bool io_error_ = false;

  std::uint64_t ok_ = 0, failed_ = 0, from_journal_ = 0;
  std::uint64_t cancelled_running_ = 0, cancelled_queued_ = 0;  // by a signal, of failed_
  std::uint64_t journal_ok_total_ = 0;  // records of ok items in the journal
  std::uint64_t journal_ok_seen_ = 0;   // ... whose line was read
  std::uint64_t journal_mismatches_ = 0, journal_unreadable_ = 0;

  base::TimePoint start_;
  batch::Throughput throughput_;
  batch::ProgressLine progress_;
  bool stdout_tty_ = false;
  bool shared_terminal_ = false;  // stdout is the terminal stderr is (the progress line's)
  bool stdin_from_start_ = false;  // stdin (a file) is read from its first byte: `< FILE` resumes
};

}  // namespace

int run_batch(BatchOptions& o) {
  if (o.jobs < 1) {
    error_line("--jobs must be at least 1");
    return kExitUsage;
  }
  if (o.session != "per-item" && o.session != "shared") {
    error_line("--session must be per-item or shared");
    return kExitUsage;
  }
  batch::Shard shard;
  if (!o.shard.empty()) {
    auto s = batch::parse_shard(o.shard);
    if (!s) {
      error_line("--shard must be K/N with 0 <= K < N (e.g. 0/4), not '" + o.shard + "'");
      return kExitUsage;
    }
    shard = *s;
  }
  auto planned = plan_launch(o.common, {.command = "batch", .asker = Asker::nobody});
  if (auto* err = std::get_if<SetupError>(&planned)) {
    error_line(err->message);
    return err->exit_code;
  }
  LaunchPlan& plan = std::get<LaunchPlan>(planned);
  start_turn_log(o.common);  // the log opens on its thread while the bridge starts
  plan.client.retries = 0;  // batch retries interrupted items itself, on whichever bridge is free
  std::unique_ptr<batch::Journal> journal;
  if (!o.journal.empty()) {
    std::string err;
    journal = batch::Journal::open(o.journal, err);
    if (!journal) {
      error_line(err);
      return kExitIoErr;
    }
    if (journal->index().bad_lines() > 0)
      error_line("warning: the journal has " + std::to_string(journal->index().bad_lines()) + " unreadable lines; they are ignored");
  }
  BatchRunner runner(o, std::move(plan), shard, std::move(journal));
  return runner.run();
}

std::function<int()> setup_batch(CLI::App& app, const std::vector<std::string>& bridge_argv) {
  auto o = std::make_shared<BatchOptions>();
  auto* sub = app.add_subcommand("batch", "Run many prompts: JSON lines in on stdin, one JSON result line per item out");
  sub->footer(
      "Each input line is a JSON object {\"prompt\":\"...\", \"id\":...} (id optional: default the line\n"
      "number; other keys come back under \"meta\") or, if it is not a JSON object, the prompt text\n"
      "itself. Blank lines are skipped. Only ids that lines give are checked for duplicates (the\n"
      "line-number default is not one). Exactly one output line per item, in input order:\n"
      "  {\"id\":...,\"index\":N,\"ok\":true,\"text\":\"...\",\"stopReason\":\"end_turn\",\"attempts\":1,\"elapsedMs\":5}\n"
      "or with \"ok\":false and an \"error\" object. An item interrupted by a bridge crash or --timeout is\n"
      "tried again (--retries). With --journal, finished items are recorded durably and a rerun skips\n"
      "them (re-emitting their lines), so an interrupted batch resumes without losing or repeating work.\n"
      "Exit status: 0 every item ok; 1 some items failed (bad input lines included); 64 usage error;\n"
      "69 no bridge left (restart limit); 74 cannot read stdin, write stdout or the journal.\n"
      "--connect[=NAME|PATH] runs the items through a running `tether serve` instead: --jobs connections,\n"
      "each item in a session of its own (--session per-item) or one session per connection.");
  // At most 1024 bridges: each is a process with its own pipes, and --jobs 100000 is a typo.
  expects(sub->add_option("-j,--jobs", o->jobs, "Bridges run in parallel, each with its own process and restart budget (at most 1024)"),
          count_value(1, 1024))
      ->capture_default_str();
  expects(sub->add_option("--session", o->session, "per-item: a fresh ACP session per item; shared: one session per bridge"),
          choice_value({"per-item", "shared"}))
      ->capture_default_str();
  expects(sub->add_option("--journal", o->journal, "Record finished items durably in FILE; a rerun with it skips and re-emits them"),
          file_value());
  sub->add_flag("--unordered", o->unordered, "Write results in completion order instead of input order");
  expects(sub->add_option("--shard", o->shard, "Run only shard K of N (0 <= K < N): items whose id hashes to K (FNV-1a 64 mod N)"),
          custom_value("K/N", "K/N with 0 ≤ K < N (e.g. 0/4)", [](std::string_view s) { return batch::parse_shard(s).has_value(); }));
  sub->add_flag("--progress", o->progress, "Progress lines on stderr even when it is not a terminal");
  // Batch writes no colour: its progress line is plain.
  add_common_options(*sub, o->common, {.color = false});
  add_session_options(*sub, o->common);
  add_connect_option(*sub, o->common);
  add_log_options(*sub, o->common);
  return [o, &bridge_argv] {
    o->common.bridge = bridge_argv;
    return run_batch(*o);
  };
}

}  // namespace tether::cli
